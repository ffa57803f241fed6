import TesseraCore

extension MapStore {
    /// Rows `y` of `level`, all columns: classes × y.count × width floats (C order),
    /// decoding only the chunk rows that `y` touches (an unfinished store's upper
    /// levels: the tiles' pieces). Integer stores read as
    /// probabilities (q / 255 or q / 65535), tiles never written as the fill value
    /// (NaN, for integer stores too where the map records them as not computed).
    /// For PNG or `.npy` writers: call it band by band, never for the whole map;
    /// bands of `layout.storedChunkSide(level)` rows starting at multiples of it decode
    /// each chunk exactly once (a chunk is always decoded whole).
    package func rows(level: Int = 0, y: Range<Int>) throws -> [Float] {
        let width = try levelSize(level).w
        return try region(level: level, rect: PixelRect(y: y.lowerBound, x: 0, height: y.count, width: width))
    }

    /// Any rectangle of `level` (inside it): classes × height × width floats, as `rows`.
    package func region(level: Int, rect: PixelRect) throws -> [Float] {
        try region(level: level, rect: rect, cache: ChunkCache(capacity: 0))
    }

    private func region(level: Int, rect: PixelRect, cache: ChunkCache) throws -> [Float] {
        let bytes = try regionBytes(level: level, rect: rect, cache: cache)
        let count = layout.classes * rect.height * rect.width
        var values = [Float](unsafeUninitializedCapacity: count) { values, initialized in
            bytes.withUnsafeBytes { layout.dtype.decode($0.baseAddress!, count: count, into: values.baseAddress!) }
            initialized = count
        }
        if !layout.dtype.isFloat { markNotComputed(&values, level: level, rect: rect) }
        return values
    }

    /// An integer map's pixels of `rect` (at `level`) in the level-0 tiles that `tessera.not_computed`
    /// records read NaN, as a float map's do: their fill, 0, went into the float32 `.npy` as a computed
    /// probability of 0 (output audit 39 F1). A level-0 tile covers T >> level pixels of `level` (the
    /// tile divides by 2^(levels−1)).
    private func markNotComputed(_ values: inout [Float], level: Int, rect: PixelRect) {
        guard !rect.isEmpty else { return }
        let flags = notComputedFlags(), grid = layout.tileGrid
        guard flags.count == grid.h * grid.w, flags.contains(true) else { return }
        let side = max(1, layout.tileSize >> level)
        for r in (rect.y / side)...((rect.y + rect.height - 1) / side) where r < grid.h {
            for c in (rect.x / side)...((rect.x + rect.width - 1) / side) where c < grid.w && flags[r * grid.w + c] {
                let y0 = max(rect.y, r * side), y1 = min(rect.y + rect.height, (r + 1) * side)
                let x0 = max(rect.x, c * side), x1 = min(rect.x + rect.width, (c + 1) * side)
                for plane in 0..<layout.classes {
                    for y in y0..<y1 {
                        let row = (plane * rect.height + y - rect.y) * rect.width - rect.x
                        for x in x0..<x1 { values[row + x] = .nan }
                    }
                }
            }
        }
    }

    /// One written tile at `level`: classes × h × w floats for its clipped rectangle
    /// (`layout.rect(of:level:)`), from the tile's piece, or once `finish()` has
    /// joined an upper level's pieces, from that level's chunks (where a tile never
    /// written reads as the fill value). Throws `.missingChunk` if the tile's piece
    /// was never written.
    package func readTile(_ tile: TileIndex, level: Int = 0) throws -> [Float] {
        guard layout.contains(tile), (0..<layout.levels).contains(level) else {
            throw MapStoreError(.invalidArgument, path: path, detail: "no tile \(tile) at level \(level)")
        }
        let rect = layout.rect(of: tile, level: level)
        if !layout.isTileLevel(level), !FileIO.exists(chunkPath(tile, level: level)), isFinished {
            return try region(level: level, rect: rect)
        }
        guard let piece = try piece(tile, level: level) else {
            throw MapStoreError(
                .missingChunk, path: chunkPath(tile, level: level),
                detail: "tile \(tile) was not written")
        }
        let count = layout.classes * rect.height * rect.width
        var bytes = [UInt8](repeating: 0, count: count * layout.dtype.size)
        Self.copy(
            piece, side: layout.chunkSide(level), origin: (rect.y, rect.x), into: &bytes, rect: rect,
            classes: layout.classes, sample: layout.dtype.size)
        return [Float](unsafeUninitializedCapacity: count) { values, initialized in
            bytes.withUnsafeBytes { layout.dtype.decode($0.baseAddress!, count: count, into: values.baseAddress!) }
            initialized = count
        }
    }

    func levelSize(_ level: Int) throws -> Size2 {
        guard (0..<layout.levels).contains(level) else {
            throw MapStoreError(.invalidArgument, path: path, detail: "level \(level) (the store has \(layout.levels))")
        }
        return layout.levelSize(level)
    }

    /// The decompressed (raw dtype bytes, padded) piece of `tile` at `level`,
    /// or nil when the file does not exist. Throws on a short or corrupt piece.
    func piece(_ tile: TileIndex, level: Int) throws -> [UInt8]? {
        let file = chunkPath(tile, level: level)
        guard let stored = try FileIO.read(file, limit: FileIO.chunkLimit(raw: layout.chunkBytes(level))) else {
            return nil
        }
        return try layout.compression.decompress(stored, expected: layout.chunkBytes(level), path: file)
    }

    /// The decompressed chunk (row, column) of `level` in the Zarr array, or nil when absent.
    func storedChunk(row: Int, column: Int, level: Int) throws -> [UInt8]? {
        let file = storedChunkPath(row: row, column: column, level: level)
        guard let stored = try FileIO.read(file, limit: FileIO.chunkLimit(raw: layout.storedChunkBytes(level))) else {
            return nil
        }
        return try layout.compression.decompress(stored, expected: layout.storedChunkBytes(level), path: file)
    }

    /// Copies the part of a chunk (raw bytes, classes × side × side samples, its
    /// pixel (0, 0) at `origin` of the level) inside `rect` into `out` (classes ×
    /// rect.height × rect.width samples) at the same level positions.
    static func copy(
        _ chunk: [UInt8], side: Int, origin: (y: Int, x: Int), into out: inout [UInt8], rect: PixelRect,
        classes: Int, sample: Int
    ) {
        let y0 = max(rect.y, origin.y), y1 = min(rect.y + rect.height, origin.y + side)
        let x0 = max(rect.x, origin.x), x1 = min(rect.x + rect.width, origin.x + side)
        guard y0 < y1, x0 < x1 else { return }
        let runBytes = (x1 - x0) * sample
        chunk.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                for c in 0..<classes {
                    for y in y0..<y1 {
                        let from = ((c * side + y - origin.y) * side + x0 - origin.x) * sample
                        let to = ((c * rect.height + y - rect.y) * rect.width + x0 - rect.x) * sample
                        (dst.baseAddress! + to).copyMemory(from: src.baseAddress! + from, byteCount: runBytes)
                    }
                }
            }
        }
    }

    /// A rectangle of `level` as the store's dtype bytes (classes × height × width
    /// samples, little-endian), missing chunks as the fill value. `cache` keeps the
    /// last chunks decoded, for callers that read neighbouring rectangles.
    func regionBytes(level: Int, rect: PixelRect, cache: ChunkCache) throws -> [UInt8] {
        let size = try levelSize(level)
        guard rect.y >= 0, rect.x >= 0, rect.height >= 0, rect.width >= 0,
            rect.y + rect.height <= size.h, rect.x + rect.width <= size.w
        else {
            throw MapStoreError(.invalidArgument, path: path, detail: "\(rect) is outside level \(level) (\(size))")
        }
        let classes = layout.classes, sample = layout.dtype.size
        var out = filled(count: classes * rect.height * rect.width)
        guard !rect.isEmpty else { return out }
        // An upper level of an unfinished store is read from the tiles' pieces (`allowUnfinished` exports).
        let finished = isFinished
        let pieces = !layout.isTileLevel(level) && !finished
        let side = pieces ? layout.chunkSide(level) : layout.storedChunkSide(level)
        // In a finished map a chunk is missing only where the map records no value computed in it
        // (`tessera.not_computed`, per level-0 tile; a chunk of level L covers k × k of them): elsewhere it
        // was lost, and reading it as the fill value made an export of a damaged map succeed, silently, with
        // a hole (hostile-input audit 27; at the upper levels, verification audit 29). Read from `.zattrs` at the
        // first missing chunk only: TIFF export calls this once per TIFF tile.
        var gaps: [Bool]?
        let k = max(1, (side << level) / layout.tileSize)
        let grid = layout.tileGrid
        /// Whether chunk (row, column) may be missing: every level-0 tile it covers was never computed.
        func mayBeMissing(_ row: Int, _ column: Int) -> Bool {
            if gaps == nil { gaps = notComputedFlags() }
            guard let gaps, gaps.count == grid.h * grid.w else { return false }
            for r in (row * k)..<min(grid.h, (row + 1) * k) {
                for c in (column * k)..<min(grid.w, (column + 1) * k) where !gaps[r * grid.w + c] { return false }
            }
            return true
        }
        for row in (rect.y / side)...((rect.y + rect.height - 1) / side) {
            for column in (rect.x / side)...((rect.x + rect.width - 1) / side) {
                let load = {
                    pieces
                        ? try self.piece(TileIndex(row: row, column: column), level: level)
                        : try self.storedChunk(row: row, column: column, level: level)
                }
                guard let chunk = try cache.chunk(TileIndex(row: row, column: column), level: level, load: load)
                else {
                    if finished, !mayBeMissing(row, column) {
                        throw MapStoreError(
                            .missingChunk, path: storedChunkPath(row: row, column: column, level: level),
                            detail: "chunk (\(row), \(column)) of level \(level) holds computed values (the map "
                                + "records no gap there, tessera.not_computed) but it is gone: the map is damaged")
                    }
                    continue
                }
                Self.copy(
                    chunk, side: side, origin: (row * side, column * side), into: &out, rect: rect,
                    classes: classes, sample: sample)
            }
        }
        return out
    }

    /// `count` samples of the fill value, encoded.
    func filled(count: Int) -> [UInt8] {
        let fill = layout.dtype.fillBytes
        if fill.allSatisfy({ $0 == 0 }) { return [UInt8](repeating: 0, count: count * fill.count) }
        var out = [UInt8](repeating: 0, count: count * fill.count)
        for i in 0..<count { for b in 0..<fill.count { out[i * fill.count + b] = fill[b] } }
        return out
    }
}

/// The last few decoded chunks used, by chunk index and level (nil: the chunk is absent); the least recently
/// used goes first. One per reader; not shared between threads.
final class ChunkCache {
    private let capacity: Int
    private var entries: [(key: ChunkKey, bytes: [UInt8]?)] = []

    private struct ChunkKey: Equatable {
        let tile: TileIndex
        let level: Int
    }

    init(capacity: Int) { self.capacity = capacity }

    func chunk(_ tile: TileIndex, level: Int, load: () throws -> [UInt8]?) throws -> [UInt8]? {
        let key = ChunkKey(tile: tile, level: level)
        if let index = entries.firstIndex(where: { $0.key == key }) {
            let entry = entries.remove(at: index)
            entries.append(entry)
            return entry.bytes
        }
        let bytes = try load()
        if capacity > 0 {
            if entries.count >= capacity { entries.removeFirst() }
            entries.append((key, bytes))
        }
        return bytes
    }
}
