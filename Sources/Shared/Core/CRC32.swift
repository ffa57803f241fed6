import CChecksum

/// CRC-32 (IEEE 802.3, the polynomial of zlib and PNG): the job store's check that a
/// tile, chunk or image read back is the one written (catches bit rot and truncation;
/// not a defence against tampering).
///
/// Computed by `CChecksum`: carry-less multiplication folds 64 bytes per step where
/// the CPU has it (x86-64 PCLMULQDQ, about 5× zlib's tables here), slicing-by-8
/// tables elsewhere. Every upload part, result chunk and stored tile the coordinator
/// keeps is checksummed once, so this was a fifth of an upload job's CPU with tables.
package enum CRC32 {
    /// Continues `crc` (start with 0) over `bytes`.
    package static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return tessera_crc32(crc, base, bytes.count)
    }

    /// `update` by tables only (what CPUs without carry-less multiplication run).
    package static func updateByTables(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return tessera_crc32_tables(crc, base, bytes.count)
    }

    /// Whether `update` folds with carry-less multiplication on this CPU.
    package static var folds: Bool { tessera_crc32_folds() != 0 }

    /// The CRC of A followed by B from `crcA`, `crcB` and B's length, without B's bytes:
    /// crcA's register carried over `lengthB` zero bytes (multiplied by x^(8·lengthB)
    /// modulo the polynomial), then xored with crcB — CRC-32 is linear. Lets a stream's
    /// running CRC follow from each piece's own CRC, checked once.
    package static func combine(_ crcA: UInt32, _ crcB: UInt32, lengthB: Int) -> UInt32 {
        guard lengthB > 0 else { return crcA }
        // x^(8·n) = product of x^(2^k) for the set bits k of 8·n (n·8: shift by 3).
        var product: UInt32 = 0x8000_0000  // x^0, reflected
        var n = UInt64(lengthB) << 3
        var k = 0
        while n != 0 {
            if n & 1 != 0 { product = multiply(powers[k], product) }
            n >>= 1
            k += 1
        }
        return multiply(product, crcA) ^ crcB
    }

    /// x^(2^k) modulo the polynomial, k = 0…63 (reflected bit order).
    private static let powers: [UInt32] = {
        var p: [UInt32] = [0x4000_0000]  // x^1
        for _ in 1..<64 { p.append(multiply(p[p.count - 1], p[p.count - 1])) }
        return p
    }()

    /// a·b modulo the polynomial, both reflected (bit 31 is x^0).
    private static func multiply(_ a: UInt32, _ b: UInt32) -> UInt32 {
        var (a, b, product) = (a, b, UInt32(0))
        var bit: UInt32 = 0x8000_0000
        while a != 0 {
            if a & bit != 0 {
                product ^= b
                a &= ~bit
            }
            bit >>= 1
            b = b & 1 != 0 ? (b >> 1) ^ 0xEDB8_8320 : b >> 1
        }
        return product
    }

    package static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0) }
    }
}
