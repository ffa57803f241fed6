import Foundation
import TesseraImage

/// A fresh empty directory under the system's temporary directory, removed by `cleanup()`.
struct TemporaryDirectory {
    let path: String

    init(under parent: String? = nil) throws {
        path =
            (parent.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory)
            .appendingPathComponent("tessera-image-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func contents() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// A deterministic pseudo-random generator (xorshift64*), so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}

/// PNG's CRC-32 (ISO 3309, as zlib's crc32), for hand-made chunks.
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

func bigEndian(_ value: UInt32) -> [UInt8] {
    [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
}

/// A PNG chunk: length, type, data, CRC.
func pngChunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
    let typed = Array(type.utf8) + data
    return bigEndian(UInt32(data.count)) + typed + bigEndian(crc32(typed))
}

let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

/// Signature + IHDR (+ IEND): a file whose header claims anything.
func handMadePNG(width: UInt32, height: UInt32, bitDepth: UInt8 = 8, colorType: UInt8 = 2) -> [UInt8] {
    let ihdr = bigEndian(width) + bigEndian(height) + [bitDepth, colorType, 0, 0, 0]
    return pngSignature + pngChunk("IHDR", ihdr) + pngChunk("IEND", [])
}

/// Packs samples (each < 2^bitDepth) into PNG row bytes: sub-byte samples MSB first, 16-bit big-endian.
func packRow(_ samples: [Int], bitDepth: Int) -> [UInt8] {
    switch bitDepth {
    case 16: return samples.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    case 8: return samples.map { UInt8($0) }
    default:
        var bytes = [UInt8](repeating: 0, count: (samples.count * bitDepth + 7) / 8)
        for (i, sample) in samples.enumerated() {
            let bit = i * bitDepth
            bytes[bit / 8] |= UInt8(sample << (8 - bitDepth - bit % 8))
        }
        return bytes
    }
}

extension PixelImage {
    /// All samples as Ints, for comparisons.
    var allSamples: [Int] {
        switch samples {
        case .uint8(let values): return values.map(Int.init)
        case .uint16(let values): return values.map(Int.init)
        }
    }

    /// Raw samples as `PNGReader.readBands` hands them over (UInt8, or UInt16 in host order), as Ints.
    static func samples(_ bytes: [UInt8], bitDepth: Int) -> [Int] {
        guard bitDepth == 16 else { return bytes.map(Int.init) }
        return bytes.withUnsafeBytes { raw in
            (0..<bytes.count / 2).map { Int(raw.load(fromByteOffset: 2 * $0, as: UInt16.self)) }
        }
    }
}

/// Writes a `width`×`height` RGB PNG of random samples (no two runs of zlib alike, so its image data spans the
/// file) and zeroes 64 bytes in its middle: the rows before the damage decode, the rest fail.
package func writeDamagedPNG(to path: String, width: Int, height: Int, seed: UInt64) throws {
    var random = SeededGenerator(seed: seed)
    let values = (0..<(width * height * 3)).map { _ in UInt8.random(in: 0...255, using: &random) }
    try writePNG(PixelImage(width: width, height: height, channels: 3, samples: .uint8(values)), to: path)
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    for i in (bytes.count / 2)..<(bytes.count / 2 + 64) { bytes[i] = 0 }
    try bytes.write(to: URL(fileURLWithPath: path))
}
