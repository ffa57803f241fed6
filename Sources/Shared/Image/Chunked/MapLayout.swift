import TesseraCore

/// The shape of a map store: what `MapStore.create` is given and `MapStore.open`
/// reads back. Level k is ceil(H/2^k) × ceil(W/2^k). Each tile computes its own
/// T>>k × T>>k piece of every level. The first `tileLevels` levels are chunked
/// on the tile grid: a tile's piece is its chunk (written once, never merged).
/// Above them a piece would be a tiny chunk (T>>7 is 5 pixels for T = 640), so the
/// pieces are staged under `K/.tiles/ROW/COLUMN` and `MapStore.finish()` joins
/// them into chunks of T × T: a viewer reads a few chunks for an overview, not one
/// file per tile.
/// What a map was computed from: the image file's name (not its path), the image of a
/// multi-image file (`--image`) and its pyramid level, recorded so a map tells which it is.
package struct MapSource: Sendable, Equatable, Codable {
    package let file: String
    package let image: Int
    package let level: Int
    /// Where the level sits in its slide (a level above 0 only), so that a map of a slide without µm/px can still be
    /// laid over level 0 (output audit 39 F7b: only the level's number was recorded).
    package let scale: LevelScale?
    package init(file: String, image: Int, level: Int, scale: LevelScale? = nil) {
        self.file = file.split(separator: "/").last.map(String.init) ?? file
        self.image = image
        self.level = level
        self.scale = level > 0 ? scale : nil
    }
}

/// A pyramid level's place in its slide: level 0's size and the level's downsample (level-0 pixels per pixel of
/// the level, as the file's reader gives it: OpenSlide's, or for TIFF the mean of both axes' ratios).
package struct LevelScale: Sendable, Equatable, Codable {
    package let levelZeroHeight: Int
    package let levelZeroWidth: Int
    package let downsample: Double
    package init(levelZeroHeight: Int, levelZeroWidth: Int, downsample: Double) {
        self.levelZeroHeight = levelZeroHeight
        self.levelZeroWidth = levelZeroWidth
        self.downsample = downsample
    }
}

package struct MapLayout: Sendable, Equatable, Codable {
    package let classes: Int
    package let height: Int
    package let width: Int
    /// T: the tile (and level-0 chunk) side.
    package let tileSize: Int
    package let dtype: MapDType
    /// Pyramid levels, level 0 included.
    package let levels: Int
    /// The levels chunked on the tile grid (1…levels); the rest are joined by `finish()`.
    package let tileLevels: Int
    /// One label per class (OME `omero.channels`), or nil.
    package let classNames: [String]?
    /// How chunks are compressed (`.none`: a store that only feeds other outputs).
    package let compression: ChunkCompression
    /// The net's classes the planes hold when not all of them (`--keep-classes`):
    /// writers pass all `netClasses` planes and the store keeps these. Nil: every class.
    package let kept: [Int]?
    /// How many classes the net has (what a writer passes per pixel).
    package let netClasses: Int
    /// Microns per pixel of level 0 (the mapped image level's), when the image says:
    /// written as the OME axes' unit and scale and as the TIFF's resolution, so a map
    /// made at `--mpp 1` overlays its slide in napari and QuPath.
    package let micronsPerPixel: Double?
    /// Microns per pixel of level 0 along y when it differs from `micronsPerPixel` (non-square pixels); nil:
    /// square. Written as the OME y scale and the TIFF's YResolution.
    package let micronsPerPixelY: Double?
    /// The image and level mapped, when known (stores written before it say nothing).
    package let source: MapSource?

    /// Throws `.invalidArgument` unless every count is positive, T is divisible
    /// by 2^(levels−1) (so tiles stay aligned at every level) and there are as
    /// many names as classes.
    package init(
        classes: Int, height: Int, width: Int, tileSize: Int, dtype: MapDType = .float32, levels: Int = 1,
        classNames: [String]? = nil, compression: ChunkCompression = .blosc, kept: [Int]? = nil,
        netClasses: Int? = nil, micronsPerPixel: Double? = nil, micronsPerPixelY: Double? = nil,
        tileLevels: Int? = nil, source: MapSource? = nil
    ) throws {
        func fail(_ detail: String) -> MapStoreError { MapStoreError(.invalidArgument, path: "", detail: detail) }
        guard classes > 0, height > 0, width > 0 else { throw fail("empty map \(classes)×\(height)×\(width)") }
        guard tileSize > 0 else { throw fail("tile size \(tileSize)") }
        guard (1...30).contains(levels) else { throw fail("\(levels) pyramid levels") }
        guard tileSize % (1 << (levels - 1)) == 0 else {
            throw fail("tile size \(tileSize) is not divisible by 2^\(levels - 1), as \(levels) levels need")
        }
        let tileLevels = tileLevels ?? Self.tileLevels(tileSize: tileSize, levels: levels)
        guard (1...levels).contains(tileLevels) else {
            throw fail("\(tileLevels) levels chunked by tile, of \(levels)")
        }
        self.tileLevels = tileLevels
        if let classNames, classNames.count != classes {
            throw fail("\(classNames.count) class names for \(classes) classes")
        }
        let net = netClasses ?? classes
        if let kept {
            guard kept.count == classes, kept == Array(Set(kept)).sorted(), kept.allSatisfy({ (0..<net).contains($0) })
            else {
                throw fail("kept classes \(kept) are not \(classes) distinct ascending classes of a \(net)-class net")
            }
        } else if net != classes {
            throw fail("\(classes) stored classes of a \(net)-class net, but no kept classes named")
        }
        self.kept = kept
        self.netClasses = net
        self.classes = classes
        self.height = height
        self.width = width
        self.tileSize = tileSize
        self.dtype = dtype
        self.levels = levels
        self.classNames = classNames
        self.compression = compression
        if let mpp = micronsPerPixel, !(mpp > 0 && mpp.isFinite) { throw fail("\(mpp) microns per pixel") }
        self.micronsPerPixel = micronsPerPixel
        if let y = micronsPerPixelY, !(y > 0 && y.isFinite) { throw fail("\(y) microns per pixel along y") }
        self.micronsPerPixelY = micronsPerPixel != nil && micronsPerPixelY != micronsPerPixel ? micronsPerPixelY : nil
        self.source = source
        if compression == .blosc, chunkBytes(0) > BloscCodec.maxBytes {
            throw fail(
                "a chunk of \(classes) classes × \(tileSize)² \(dtype.rawValue) samples is \(chunkBytes(0)) bytes, "
                    + "over Blosc's \(BloscCodec.maxBytes): use a smaller tile, fewer classes or a smaller dtype")
        }
    }

    private enum CodingKeys: String, CodingKey {
        case classes, height, width, tileSize, dtype, levels, classNames, compression, compressed, kept, netClasses
        case micronsPerPixel, micronsPerPixelY, tileLevels, source
    }

    /// Decodes through the validating initialiser: a stored layout is checked like a new one.
    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            classes: c.decode(Int.self, forKey: .classes), height: c.decode(Int.self, forKey: .height),
            width: c.decode(Int.self, forKey: .width), tileSize: c.decode(Int.self, forKey: .tileSize),
            dtype: c.decode(MapDType.self, forKey: .dtype), levels: c.decode(Int.self, forKey: .levels),
            classNames: c.decodeIfPresent([String].self, forKey: .classNames),
            compression: c.decodeIfPresent(ChunkCompression.self, forKey: .compression)
                ?? (c.decodeIfPresent(Bool.self, forKey: .compressed) == false ? .none : .zlib),
            kept: c.decodeIfPresent([Int].self, forKey: .kept),
            netClasses: c.decodeIfPresent(Int.self, forKey: .netClasses),
            micronsPerPixel: c.decodeIfPresent(Double.self, forKey: .micronsPerPixel),
            micronsPerPixelY: c.decodeIfPresent(Double.self, forKey: .micronsPerPixelY),
            // Layouts recorded before levels were joined chunked every level by tile.
            tileLevels: c.decodeIfPresent(Int.self, forKey: .tileLevels) ?? c.decode(Int.self, forKey: .levels),
            source: c.decodeIfPresent(MapSource.self, forKey: .source))
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(classes, forKey: .classes)
        try c.encode(height, forKey: .height)
        try c.encode(width, forKey: .width)
        try c.encode(tileSize, forKey: .tileSize)
        try c.encode(dtype, forKey: .dtype)
        try c.encode(levels, forKey: .levels)
        try c.encodeIfPresent(classNames, forKey: .classNames)
        try c.encode(compression, forKey: .compression)
        try c.encodeIfPresent(kept, forKey: .kept)
        try c.encode(netClasses, forKey: .netClasses)
        try c.encodeIfPresent(micronsPerPixel, forKey: .micronsPerPixel)
        try c.encodeIfPresent(micronsPerPixelY, forKey: .micronsPerPixelY)
        try c.encode(tileLevels, forKey: .tileLevels)
        try c.encodeIfPresent(source, forKey: .source)
    }

    /// The smallest piece side that stays a chunk of its own (see the type's comment).
    package static let smallestTileChunk = 128

    /// The levels chunked by tile for a new store: those whose piece is at least
    /// `smallestTileChunk` pixels on a side, and always level 0.
    package static func tileLevels(tileSize: Int, levels: Int) -> Int {
        var n = 1
        while n < levels && (tileSize >> n) >= smallestTileChunk { n += 1 }
        return n
    }

    /// Net class `c`'s plane in the store, or nil if the store does not keep it.
    package func plane(ofClass c: Int) -> Int? {
        guard let kept else { return (0..<classes).contains(c) ? c : nil }
        return kept.firstIndex(of: c)
    }

    /// Tile rows × tile columns (the same at every level).
    package var tileGrid: Size2 { Size2((height + tileSize - 1) / tileSize, (width + tileSize - 1) / tileSize) }

    /// Height × width of level `level`.
    package func levelSize(_ level: Int) -> Size2 {
        let f = 1 << level
        return Size2((height + f - 1) / f, (width + f - 1) / f)
    }

    /// The side of one tile's piece of `level` (T >> level).
    /// The chunk side for a map of `height × width` mapped in `tile`-pixel tiles with `levels` pyramid levels:
    /// the tile, unless one tile covers the image, whose size then suffices (rounded up for the pyramid's
    /// halvings). A 128² PNG with --tile 32768 allocated 8 GiB chunks (hostile-input audit 27).
    package static func chunkSide(tile: Int, height: Int, width: Int, levels: Int) -> Int {
        let largest = max(height, width), step = 1 << max(0, levels - 1)
        return tile <= largest ? tile : min(tile, (largest + step - 1) / step * step)
    }

    package func chunkSide(_ level: Int) -> Int { tileSize >> level }

    /// Whether `level` is chunked by tile (else its chunks are joined by `finish()`).
    package func isTileLevel(_ level: Int) -> Bool { level < tileLevels }

    /// The side of `level`'s chunks in the Zarr array: the piece's on a tile level, T above.
    package func storedChunkSide(_ level: Int) -> Int { isTileLevel(level) ? chunkSide(level) : tileSize }

    /// Chunk rows × columns of `level` in the Zarr array (the tile grid on a tile level).
    package func storedChunkGrid(_ level: Int) -> Size2 {
        let size = levelSize(level), side = storedChunkSide(level)
        return Size2((size.h + side - 1) / side, (size.w + side - 1) / side)
    }

    /// The pixels of `tile` at level 0, clipped to the image.
    package func rect(of tile: TileIndex) -> PixelRect { rect(of: tile, level: 0) }

    /// The pixels of `tile` at `level`, clipped to that level.
    package func rect(of tile: TileIndex, level: Int) -> PixelRect {
        let side = chunkSide(level), size = levelSize(level)
        let y = tile.row * side, x = tile.column * side
        return PixelRect(y: y, x: x, height: min(side, size.h - y), width: min(side, size.w - x))
    }

    /// The tile whose level-0 rectangle is exactly `rect`, or nil.
    package func tile(for rect: PixelRect) -> TileIndex? {
        guard rect.y >= 0, rect.x >= 0, rect.y % tileSize == 0, rect.x % tileSize == 0 else { return nil }
        let tile = TileIndex(row: rect.y / tileSize, column: rect.x / tileSize)
        guard contains(tile), self.rect(of: tile) == rect else { return nil }
        return tile
    }

    package func contains(_ tile: TileIndex) -> Bool {
        let grid = tileGrid
        return (0..<grid.h).contains(tile.row) && (0..<grid.w).contains(tile.column)
    }

    /// Bytes of one tile's (padded) piece of `level`.
    func chunkBytes(_ level: Int) -> Int { classes * chunkSide(level) * chunkSide(level) * dtype.size }

    /// Bytes of level 0 stored uncompressed: every tile's chunk, edge chunks padded.
    package var levelZeroBytes: UInt64 { UInt64(tileGrid.h) * UInt64(tileGrid.w) * UInt64(chunkBytes(0)) }

    /// Bytes of one (padded) chunk of `level` in the Zarr array.
    func storedChunkBytes(_ level: Int) -> Int {
        classes * storedChunkSide(level) * storedChunkSide(level) * dtype.size
    }

    /// The path, relative to the store, of `tile`'s piece of `level`: its chunk
    /// (a v2 key with "/" separator: level/c/y/x) on a tile level, else where it is staged.
    package func chunkKey(_ tile: TileIndex, level: Int) -> String {
        "\(pieceFolder(level))/\(tile.row)/\(tile.column)"
    }

    /// The folder, relative to the store, of `level`'s pieces (one sub-folder per tile row).
    package func pieceFolder(_ level: Int) -> String { isTileLevel(level) ? "\(level)/0" : "\(level)/.tiles" }

    /// The Zarr key of chunk (row, column) of `level`.
    package func storedChunkKey(row: Int, column: Int, level: Int) -> String { "\(level)/0/\(row)/\(column)" }
}

/// A tile's position in the tile grid (row, column), counted from 0.
package struct TileIndex: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    package var row: Int
    package var column: Int
    package init(row: Int, column: Int) { self.row = row; self.column = column }
    package static func < (a: TileIndex, b: TileIndex) -> Bool { (a.row, a.column) < (b.row, b.column) }
    package var description: String { "(\(row), \(column))" }
}
