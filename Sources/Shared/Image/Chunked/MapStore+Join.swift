import Foundation
import TesseraCore

extension MapStore {
    /// Joins the staged pieces of every level above the tile levels into that
    /// level's T × T chunks: each piece is copied (already quantised, never
    /// averaged again) to its place, a tile never written reads as the fill value,
    /// and a chunk no tile touched is not written at all. Reads about
    /// 1/(3·4^(tileLevels−1)) of level 0's bytes. Chunks are built on several
    /// threads, each holding one chunk, and written durably.
    @discardableResult
    func joinUpperLevels() throws -> JoinSummary? {
        guard layout.tileLevels < layout.levels else { return nil }
        let started = monotonicSeconds()
        let pieces = Counter(), chunks = Counter()
        let chunkBytes = layout.storedChunkBytes(layout.tileLevels)
        let threads = max(1, min(ProcessInfo.processInfo.activeProcessorCount, (512 << 20) / max(1, chunkBytes)))
        for level in layout.tileLevels..<layout.levels {
            let grid = layout.storedChunkGrid(level)
            let next = Counter(), failures = FirstError()
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                while failures.error == nil, let i = next.take(below: grid.h * grid.w) {
                    do {
                        let joined = try joinChunk(row: i / grid.w, column: i % grid.w, level: level)
                        pieces.add(joined)
                        if joined > 0 { chunks.add(1) }
                    } catch {
                        failures.record(error)
                    }
                }
            }
            if let error = failures.error { throw error }
        }
        return JoinSummary(
            levels: layout.tileLevels..<layout.levels, pieces: pieces.total, chunks: chunks.total,
            seconds: monotonicSeconds() - started)
    }

    /// Builds chunk (row, column) of upper `level` from the pieces of the tiles it
    /// covers; returns how many pieces it found (0: no chunk written).
    private func joinChunk(row: Int, column: Int, level: Int) throws -> Int {
        let side = layout.storedChunkSide(level), pieceSide = layout.chunkSide(level)
        let perChunk = side / pieceSide  // tiles per chunk side
        let grid = layout.tileGrid, sample = layout.dtype.size, classes = layout.classes
        let origin = (y: row * side, x: column * side)
        let whole = PixelRect(y: origin.y, x: origin.x, height: side, width: side)
        var chunk: [UInt8]?
        var found = 0
        for tileRow in (row * perChunk)..<min((row + 1) * perChunk, grid.h) {
            for tileColumn in (column * perChunk)..<min((column + 1) * perChunk, grid.w) {
                let tile = TileIndex(row: tileRow, column: tileColumn)
                guard let piece = try piece(tile, level: level) else { continue }
                if chunk == nil { chunk = filled(count: classes * side * side) }
                found += 1
                Self.copy(
                    piece, side: pieceSide, origin: (tileRow * pieceSide, tileColumn * pieceSide), into: &chunk!,
                    rect: whole, classes: classes, sample: sample)
            }
        }
        guard let chunk else { return 0 }
        let stored =
            layout.compression == .none
            ? chunk : try chunk.withUnsafeBytes { try layout.compression.compress($0, sampleSize: sample) }
        try AtomicFile.write(
            stored, to: storedChunkPath(row: row, column: column, level: level), durable: true, within: path)
        return found
    }

    /// Removes the folders of joined pieces, trying again when a straggler's late
    /// piece lands meanwhile (the removal then finds the folder not empty). A folder
    /// that still cannot go stays: Zarr readers ignore it (its name starts with ".").
    func removePieceFolders() {
        for level in layout.tileLevels..<layout.levels {
            let folder = "\(path)/\(layout.pieceFolder(level))"
            for _ in 0..<3 where FileIO.exists(folder) { try? FileManager.default.removeItem(atPath: folder) }
        }
    }
}

/// What `finish()` did to the upper levels: for its log line.
package struct JoinSummary: Sendable, CustomStringConvertible {
    package let levels: Range<Int>
    package let pieces: Int
    package let chunks: Int
    package let seconds: Double
    package var description: String {
        (levels.count == 1 ? "level \(levels.lowerBound)" : "levels \(levels.lowerBound)–\(levels.upperBound - 1)")
            + ": \(pieces) tile pieces joined into \(chunks) chunk\(chunks == 1 ? "" : "s") in "
            + String(format: "%.2f s", seconds)
    }
}

/// Hands out 0, 1, 2, … to threads; or sums what threads add.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    var total: Int { lock.lock(); defer { lock.unlock() }; return value }
    func add(_ n: Int) { lock.lock(); value += n; lock.unlock() }
    func take(below end: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard value < end else { return nil }
        value += 1
        return value - 1
    }
}

/// The first error of concurrent work.
private final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
    func record(_ error: Error) { lock.lock(); if first == nil { first = error }; lock.unlock() }
}
