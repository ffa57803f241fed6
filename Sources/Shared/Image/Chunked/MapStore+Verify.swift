import Foundation
import TesseraCore

extension MapStore {
    /// The tiles whose pieces exist at every level, in row-major order (what a
    /// resumed job need not compute again); in a finished store, at every tile level
    /// (the upper levels' pieces are joined and gone). Temporary files are ignored.
    package func presentTiles() -> [TileIndex] {
        var present: Set<TileIndex>?
        let levels = isFinished ? layout.tileLevels : layout.levels
        for level in 0..<levels {
            var found = Set<TileIndex>()
            for row in 0..<layout.tileGrid.h {
                for name in FileIO.list("\(path)/\(layout.pieceFolder(level))/\(row)") ?? [] {
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

    /// Removes the temporary files of piece writes that never finished (a writer
    /// killed mid-write): names starting with "." in the piece folders, which no
    /// reader ever opens. Returns how many were removed. Call when no writer is left.
    @discardableResult
    package func removeInterruptedWrites() -> Int {
        var removed = 0
        // The pieces' folders, and the upper levels' chunk rows (a join killed half-way).
        let folders =
            (0..<layout.levels).flatMap { level in
                (0..<layout.tileGrid.h).map { "\(path)/\(layout.pieceFolder(level))/\($0)" }
            }
            + (layout.tileLevels..<layout.levels).flatMap { level in
                (0..<layout.storedChunkGrid(level).h).map { "\(path)/\(level)/0/\($0)" }
            }
        for dir in folders {
            for name in FileIO.list(dir) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
                if unlink("\(dir)/\(name)") == 0 { removed += 1 }
            }
        }
        return removed
    }

    /// Checks the chunk files of `receipt`'s tile against it: each must exist
    /// (`.missingChunk`), have the recorded size (`.truncated` if shorter,
    /// `.corrupt` if longer) and CRC-32 (`.checksumMismatch`). In a finished store
    /// the upper levels' pieces are joined into chunks and gone, so only the tile
    /// levels' are checked.
    /// The receipt must name the tile's own chunks, level by level: a journal line whose tile index was damaged
    /// (one bit: 42 → 52) named another tile's chunks, and counted that tile as done (ops audit: a NaN hole).
    package func verify(_ receipt: TileReceipt) throws {
        let own = (0..<receipt.chunks.count).map { layout.chunkKey(receipt.tile, level: $0) }
        guard receipt.chunks.count <= layout.levels, receipt.chunks.map(\.key) == own else {
            throw MapStoreError(
                .corrupt, path: path,
                detail: "the receipt of tile \(receipt.tile) names the chunks "
                    + "\(receipt.chunks.map(\.key).joined(separator: ", ")), not the tile's (a damaged journal line)")
        }
        let joined =
            layout.tileLevels < layout.levels && isFinished
            ? Set((layout.tileLevels..<layout.levels).map { layout.chunkKey(receipt.tile, level: $0) }) : []
        for record in receipt.chunks where !joined.contains(record.key) {
            let file = "\(path)/\(record.key)"
            // No more than the receipt's size is read: a larger file fails as one of another size would.
            guard let bytes = try FileIO.read(file, limit: record.size) else {
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

    /// Why the chunk a worker's receipt names is not in this store as the receipt says (missing, or of another
    /// size), or nil. Only the file's size is looked at (one `stat`): the coordinator does not read the map's
    /// data. (Ops audit: a worker that wrote nothing, or to another storage mounted at the same path, had its
    /// receipts accepted and the job ended "done" with a NaN map.)
    package func writtenProblem(_ record: TileReceipt.Chunk) -> String? {
        let file = "\(path)/\(record.key)"
        var info = stat()
        guard stat(file, &info) == 0 else {
            return "\(file) does not exist here (\(String(cString: strerror(errno))))"
        }
        guard Int(info.st_size) == record.size else {
            return "\(file) has \(info.st_size) bytes, the receipt says \(record.size)"
        }
        return nil
    }

    /// Checks `tile` without a receipt: every level's piece must exist and
    /// decompress to exactly one piece (catches truncated and garbled files); in a
    /// finished store, every tile level's (the upper levels' pieces are joined and gone).
    package func verify(tile: TileIndex) throws {
        let levels = isFinished ? layout.tileLevels : layout.levels
        for level in 0..<levels where try piece(tile, level: level) == nil {
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
