import TesseraCore

extension MapStore {
    /// Writes one tile: `values` are classes × h × w floats (C order) for the
    /// tile's rectangle clipped to the image (`layout.rect(of:)`). Computes the
    /// tile's pyramid, quantises each level and writes the tile's piece of each
    /// level (its chunk on a tile level, staged above), atomically. Rewriting a tile replaces it. Safe to call concurrently for different tiles.
    @discardableResult
    package func write(tile: TileIndex, values: UnsafeBufferPointer<Float>) throws -> TileReceipt {
        if writesRawValues { return try writeRaw(tile: tile, values: values) }
        return try write(MapStore.encode(tile: tile, values: values, layout: layout, path: path))
    }

    /// `write(tile:values:)` for the tile whose rectangle is `rect` (aligned to T and clipped to the image).
    @discardableResult
    package func write(rect: PixelRect, values: UnsafeBufferPointer<Float>) throws -> TileReceipt {
        guard let tile = layout.tile(for: rect) else {
            throw MapStoreError(
                .invalidArgument, path: path,
                detail: "\(rect) is not one of the \(layout.tileSize)² tiles")
        }
        return try write(tile: tile, values: values)
    }

    /// Writes a tile encoded by `encode` (coarsest level first, level 0 last).
    @discardableResult
    package func write(_ encoded: EncodedTile) throws -> TileReceipt {
        let keys = (0..<layout.levels).map { layout.chunkKey(encoded.tile, level: $0) }
        guard encoded.chunks.count == layout.levels, layout.contains(encoded.tile),
            encoded.receipt.chunks.map(\.key) == keys
        else {
            throw MapStoreError(.invalidArgument, path: path, detail: "the encoded tile does not fit this store")
        }
        for level in (0..<layout.levels).reversed() {
            try AtomicFile.write(
                encoded.chunks[level], to: chunkPath(encoded.tile, level: level), durable: durable, within: path)
        }
        return encoded.receipt
    }

    /// Encodes a tile for a store of `layout` without touching any file (see `write(tile:values:)`).
    package static func encode(
        tile: TileIndex, values: UnsafeBufferPointer<Float>, layout: MapLayout,
        path: String = ""
    ) throws -> EncodedTile {
        guard layout.contains(tile) else {
            throw MapStoreError(
                .invalidArgument, path: path,
                detail: "tile \(tile) is outside the \(layout.tileGrid) tile grid")
        }
        let rect = layout.rect(of: tile)
        let expected = layout.netClasses * rect.height * rect.width
        guard values.count == expected else {
            throw MapStoreError(
                .invalidArgument, path: path,
                detail: "tile \(tile) needs \(expected) values "
                    + "(\(layout.netClasses)×\(rect.height)×\(rect.width)), got \(values.count)")
        }
        if let kept = layout.kept {
            // Only the kept classes' planes are stored (planes are contiguous: C order).
            let plane = rect.height * rect.width
            var selected = [Float](repeating: 0, count: kept.count * plane)
            selected.withUnsafeMutableBufferPointer { dst in
                for (i, c) in kept.enumerated() {
                    (dst.baseAddress! + i * plane).update(from: values.baseAddress! + c * plane, count: plane)
                }
            }
            let unselected = try MapLayout(
                classes: layout.classes, height: layout.height, width: layout.width, tileSize: layout.tileSize,
                dtype: layout.dtype, levels: layout.levels, classNames: layout.classNames,
                compression: layout.compression, tileLevels: layout.tileLevels)
            return try selected.withUnsafeBufferPointer {
                try encode(tile: tile, values: $0, layout: unselected, path: path)
            }
        }
        var chunks: [[UInt8]] = []
        var records: [TileReceipt.Chunk] = []
        var previous: [Float] = []  // the last level computed (from level 1 on)
        var h = rect.height, w = rect.width
        for k in 0..<layout.levels {
            let chunk: [UInt8]
            if k == 0 {
                chunk = try encodeChunk(values, height: h, width: w, side: layout.tileSize, layout: layout)
            } else {
                previous =
                    k == 1
                    ? downsample(values, classes: layout.classes, height: h, width: w)
                    : previous.withUnsafeBufferPointer { downsample($0, classes: layout.classes, height: h, width: w) }
                h = (h + 1) / 2
                w = (w + 1) / 2
                chunk = try previous.withUnsafeBufferPointer {
                    try encodeChunk($0, height: h, width: w, side: layout.chunkSide(k), layout: layout)
                }
            }
            chunks.append(chunk)
            records.append(.init(key: layout.chunkKey(tile, level: k), size: chunk.count, crc32: CRC32.checksum(chunk)))
        }
        return EncodedTile(tile: tile, chunks: chunks, receipt: TileReceipt(tile: tile, chunks: records))
    }

    /// One compressed chunk: the h × w values of each class quantised into the
    /// top-left of a side × side plane (edge chunks are stored full size; the
    /// padding is zero bytes, which readers never see).
    private static func encodeChunk(
        _ values: UnsafeBufferPointer<Float>, height h: Int, width w: Int, side: Int,
        layout: MapLayout
    ) throws -> [UInt8] {
        let size = layout.dtype.size
        var raw = [UInt8](repeating: 0, count: layout.classes * side * side * size)
        raw.withUnsafeMutableBytes { out in
            for c in 0..<layout.classes {
                for y in 0..<h {
                    let row = UnsafeBufferPointer(rebasing: values[((c * h + y) * w)..<((c * h + y) * w + w)])
                    layout.dtype.encode(row, into: out.baseAddress! + ((c * side + y) * side) * size)
                }
            }
        }
        return layout.compression == .none
            ? raw : try raw.withUnsafeBytes { try layout.compression.compress($0, sampleSize: size) }
    }
}
