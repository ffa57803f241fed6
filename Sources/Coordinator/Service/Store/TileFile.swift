import Foundation
import TesseraCore
import TesseraPlan

/// One completed tile in the job store (`jobs/<id>/tiles/<task>.tile`), self-checking:
///
/// | bytes | content |
/// |---|---|
/// | 8 | magic `TSRTILE1` |
/// | 9 × u32 LE | task index, rect y, x, height, width, displacement y, x, classes, map height |
/// | u32 LE | map width |
/// | classes × height × width × f32 LE | the values, as the worker sent them |
/// | u32 LE | CRC-32 of everything before |
///
/// The header repeats the task's geometry so a tile is never placed where it does not
/// belong (a store written by another plan, a renamed file); the CRC catches bit rot
/// and truncation. Files appear only whole (`DurableFile`).
struct TileFile: Equatable {
    static let magic = Array("TSRTILE1".utf8)
    static let headerBytes = 8 + 10 * 4

    var index: Int
    var task: TileTask
    var classes: Int
    var height: Int
    var width: Int
    var values: [Float]

    /// The file's bytes.
    func encoded() -> [UInt8] {
        var out = Self.magic
        out.reserveCapacity(Self.headerBytes + values.count * 4 + 4)
        for v in [
            index, task.rect.y, task.rect.x, task.rect.height, task.rect.width,
            task.displacement.h, task.displacement.w, classes, height, width,
        ] {
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { out += $0 }
        }
        values.withUnsafeBytes { raw in
            // Floats are little-endian on every platform we build for.
            out += raw
        }
        withUnsafeBytes(of: CRC32.checksum(out).littleEndian) { out += $0 }
        return out
    }

    /// Why a stored tile cannot be used.
    struct Unusable: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// Parses and checks a tile file against the task it must hold and the map shape
    /// the job expects. Throws `Unusable` naming what is wrong.
    static func decode(
        _ bytes: [UInt8], index: Int, task: TileTask, classes: Int, height: Int,
        width: Int
    ) throws -> [Float] {
        let count = classes * height * width
        let expected = headerBytes + count * 4 + 4
        guard bytes.count == expected else {
            throw Unusable("\(bytes.count) bytes, expected \(expected) (truncated or not a tile of this job)")
        }
        guard Array(bytes[0..<8]) == magic else { throw Unusable("bad magic (not a Tessera tile file)") }
        let stored = bytes.withUnsafeBytes {
            UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: expected - 4, as: UInt32.self))
        }
        let actual = bytes.withUnsafeBytes { CRC32.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<(expected - 4)])) }
        guard stored == actual else {
            throw Unusable(String(format: "checksum mismatch (stored %08x, computed %08x): corrupt", stored, actual))
        }
        let header = (0..<10).map { i in
            bytes.withUnsafeBytes {
                Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8 + 4 * i, as: UInt32.self)))
            }
        }
        let want = [
            index, task.rect.y, task.rect.x, task.rect.height, task.rect.width,
            task.displacement.h, task.displacement.w, classes, height, width,
        ]
        guard header == want else {
            throw Unusable(
                "holds task \(header[0]) rect \(header[1...4]) shape \(header[7...9]), "
                    + "the plan says task \(index) rect \(want[1...4]) shape \(want[7...9])")
        }
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBytes { dst in
            bytes.withUnsafeBytes { src in
                dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[headerBytes..<(headerBytes + count * 4)]))
            }
        }
        return values
    }
}
