import Testing

@testable import TesseraCore

@Suite("CRC-32 (carry-less folding and slicing-by-8 against the bit-at-a-time definition)")
struct CRC32Tests {
    /// The polynomial division one bit at a time: the definition, no tables.
    static func reference(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return ~c
    }

    @Test("Published check values (zlib, PNG)")
    func vectors() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([]) == 0)
        #expect(CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
    }

    @Test("Every length 0…300 at every alignment 0…7 equals the definition")
    func lengthsAndAlignments() {
        var rng = SplitMix64(seed: 11)
        let data = (0..<320).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for offset in 0..<8 {
            for length in 0...300 {
                let slice = data[offset..<(offset + length)]
                let fast = slice.withUnsafeBytes { CRC32.update(0, $0) }
                let want = Self.reference(slice)
                #expect(fast == want, "offset \(offset) length \(length): \(fast) expected \(want)")
                if fast != want { return }
            }
        }
    }

    @Test("Folding, tables and the definition agree on long inputs, any start register and alignment")
    func foldingAgainstDefinition() {
        #if arch(x86_64)
        // Every x86-64 machine this project runs on has PCLMULQDQ: a silent fall-back fails here.
        #expect(CRC32.folds)
        #endif
        var rng = SplitMix64(seed: 23)
        let data = (0..<9000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let lengths =
            [127, 128, 129, 143, 144, 191, 192, 255, 256, 1000, 4096, 8191]
            + (0..<30).map { _ in
                Int(rng.next() % 8900)
            }
        for length in lengths {
            let offset = Int(rng.next() % 16)
            let slice = data[offset..<(offset + length)]
            let start = UInt32(truncatingIfNeeded: rng.next())
            // The definition continued from `start`: its register is ~start.
            var c = ~start
            for b in slice {
                c ^= UInt32(b)
                for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            }
            let want = ~c
            let folded = slice.withUnsafeBytes { CRC32.update(start, $0) }
            let tabled = slice.withUnsafeBytes { CRC32.updateByTables(start, $0) }
            #expect(folded == want && tabled == want, "length \(length) at \(offset) from \(start)")
        }
    }

    @Test("Continuing a CRC over pieces equals one pass over the whole")
    func pieces() {
        var rng = SplitMix64(seed: 5)
        let data = (0..<100_003).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let whole = CRC32.checksum(data)
        #expect(whole == Self.reference(data[...]))
        var crc: UInt32 = 0
        var i = 0
        while i < data.count {
            let n = min(Int.random(in: 1...4099, using: &rng), data.count - i)
            crc = data[i..<(i + n)].withUnsafeBytes { CRC32.update(crc, $0) }
            i += n
        }
        #expect(crc == whole)
    }

    @Test("combine(crc(A), crc(B), |B|) equals crc(A + B) for any split, empty parts included")
    func combine() {
        var rng = SplitMix64(seed: 5)
        let data = (0..<5000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for split in [0, 1, 7, 8, 100, 2500, 4999, 5000] + (0..<40).map({ _ in Int(rng.next() % 5001) }) {
            let a = data[0..<split], b = data[split...]
            let combined = CRC32.combine(
                a.withUnsafeBytes { CRC32.update(0, $0) }, b.withUnsafeBytes { CRC32.update(0, $0) },
                lengthB: b.count)
            #expect(combined == CRC32.checksum(data), "split at \(split)")
        }
        // Lengths past 2^32 bits (512 MiB): only the powers table's later entries.
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var viaPieces: UInt32 = 0x1234_5678
        for _ in 0..<513 { viaPieces = zeros.withUnsafeBytes { CRC32.update(viaPieces, $0) } }
        let zeroCRC = zeros.withUnsafeBytes { z in (0..<513).reduce(UInt32(0)) { c, _ in CRC32.update(c, z) } }
        #expect(CRC32.combine(0x1234_5678, zeroCRC, lengthB: 513 << 20) == viaPieces)
    }
}
