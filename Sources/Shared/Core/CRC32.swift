/// CRC-32 (IEEE 802.3, the polynomial of zlib and PNG): the job store's check that a
/// tile, chunk or image read back is the one written (catches bit rot and truncation;
/// not a defence against tampering).
///
/// Slicing-by-8: eight 256-entry tables let the loop fold eight bytes per step with
/// independent lookups, about 8× the throughput of the byte-at-a-time table (which
/// the coordinator's profile showed at the top of an upload job: every result's
/// bytes are checksummed once).
package enum CRC32 {
    /// `tables[k][n]`: the CRC register after feeding byte `n` followed by `k` zero bytes.
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for n in 0..<256 {
            var c = UInt32(n)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[n] = c
        }
        for k in 1..<8 {
            for n in 0..<256 {
                let prev = t[(k - 1) * 256 + n]
                t[k * 256 + n] = t[Int(prev & 0xFF)] ^ (prev >> 8)
            }
        }
        return t
    }()

    /// Continues `crc` (start with 0) over `bytes`.
    package static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        guard let base = bytes.baseAddress else { return crc }
        let count = bytes.count
        tables.withUnsafeBufferPointer { t in
            var i = 0
            while i + 8 <= count {
                // Little-endian: the first byte of the block is the low byte.
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let lo = UInt32(truncatingIfNeeded: word) ^ c
                let hi = UInt32(truncatingIfNeeded: word >> 32)
                c =
                    t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < count {
                c = t[Int((c ^ UInt32(base.load(fromByteOffset: i, as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                i += 1
            }
        }
        return ~c
    }

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
