import Foundation
import TesseraCore

extension MapStore {
    /// The tiles whose chunks exist at every level, in row-major order (what a
    /// resumed job need not compute again). Temporary files are ignored.
    package func presentTiles() -> [TileIndex] {
        var present: Set<TileIndex>?
        for level in 0..<layout.levels {
            var found = Set<TileIndex>()
            for row in 0..<layout.tileGrid.h {
                for name in FileIO.list("\(path)/\(level)/0/\(row)") ?? [] {
                    // Chunk names are decimal digits only; temporary files start with ".".
                    guard name.utf8.allSatisfy({ (48...57).contains($0) }), let column = Int(name) else { continue }
                    if layout.contains(TileIndex(row: row, column: column)) {
                        found.insert(TileIndex(row: row, column: column))
                    }
                }
            }
            present = present.map { $0.intersection(found) } ?? found
        }
        return (present ?? []).sorted()
    }

    /// Removes the temporary files of chunk writes that never finished (a writer
    /// killed mid-write): names starting with "." in the chunk folders, which no
    /// reader ever opens. Returns how many were removed. Call when no writer is left.
    @discardableResult
    package func removeInterruptedWrites() -> Int {
        var removed = 0
        for level in 0..<layout.levels {
            for row in 0..<layout.tileGrid.h {
                let dir = "\(path)/\(level)/0/\(row)"
                for name in FileIO.list(dir) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
                    if unlink("\(dir)/\(name)") == 0 { removed += 1 }
                }
            }
        }
        return removed
    }

    /// Checks the chunk files of `receipt`'s tile against it: each must exist
    /// (`.missingChunk`), have the recorded size (`.truncated` if shorter,
    /// `.corrupt` if longer) and CRC-32 (`.checksumMismatch`).
    package func verify(_ receipt: TileReceipt) throws {
        for record in receipt.chunks {
            let file = "\(path)/\(record.key)"
            guard let bytes = try FileIO.read(file) else {
                throw MapStoreError(.missingChunk, path: file, detail: "tile \(receipt.tile) has no chunk here")
            }
            guard bytes.count == record.size else {
                throw MapStoreError(
                    bytes.count < record.size ? .truncated : .corrupt, path: file,
                    detail: "\(bytes.count) bytes, the receipt says \(record.size)")
            }
            let crc = CRC32.checksum(bytes)
            guard crc == record.crc32 else {
                throw MapStoreError(
                    .checksumMismatch, path: file,
                    detail: "CRC-32 \(hex(crc)), the receipt says \(hex(record.crc32))")
            }
        }
    }

    /// Checks `tile` without a receipt: every level's chunk must exist and
    /// decompress to exactly one chunk (catches truncated and garbled files).
    package func verify(tile: TileIndex) throws {
        for level in 0..<layout.levels where try chunk(tile, level: level) == nil {
            throw MapStoreError(
                .missingChunk, path: chunkPath(tile, level: level),
                detail: "tile \(tile) was not written")
        }
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
}
