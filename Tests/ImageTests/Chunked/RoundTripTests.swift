import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage

/// One map shape written through the store and checked by the reference readers.
struct MapCase: Sendable, CustomStringConvertible {
    let classes: Int, height: Int, width: Int, tile: Int
    let dtype: MapDType
    let levels: Int
    /// Tiles left out, as tissue detection would.
    let skipped: [TileIndex]
    /// TIFF export tile side.
    let tiffTile: Int
    /// zlib: a store written before Blosc, which must still read and export.
    var compression: ChunkCompression = .blosc

    var description: String {
        "\(classes)×\(height)×\(width) T\(tile) \(dtype) L\(levels) skip \(skipped.count) \(compression.rawValue)"
    }
}

@Suite("Store round trip through zarr, ome_zarr and tifffile")
struct RoundTripTests {
    static let cases: [MapCase] = [
        MapCase(classes: 1, height: 100, width: 130, tile: 32, dtype: .float32, levels: 1, skipped: [], tiffTile: 32),
        MapCase(
            classes: 3, height: 100, width: 130, tile: 32, dtype: .float32, levels: 3,
            skipped: [TileIndex(row: 0, column: 1), TileIndex(row: 3, column: 4)], tiffTile: 16),
        MapCase(
            classes: 2, height: 257, width: 300, tile: 64, dtype: .float16, levels: 4,
            skipped: [TileIndex(row: 4, column: 0), TileIndex(row: 1, column: 2)], tiffTile: 32),
        MapCase(
            classes: 1, height: 61, width: 45, tile: 16, dtype: .uint8, levels: 2,
            skipped: [TileIndex(row: 3, column: 2)], tiffTile: 16),
        MapCase(
            classes: 3, height: 130, width: 97, tile: 32, dtype: .uint16, levels: 3,
            skipped: [TileIndex(row: 0, column: 0)], tiffTile: 48),
        MapCase(classes: 2, height: 200, width: 200, tile: 64, dtype: .uint8, levels: 4, skipped: [], tiffTile: 256),
        MapCase(
            classes: 1, height: 300, width: 257, tile: 64, dtype: .uint8, levels: 3,
            skipped: [TileIndex(row: 1, column: 1)], tiffTile: 256),  // levels below 256: smaller TIFF tiles
        MapCase(classes: 1, height: 1, width: 1, tile: 8, dtype: .uint16, levels: 4, skipped: [], tiffTile: 16),
        // Under 16 px on a side: strips, which OpenSlide refuses rather than misreads (verification audit 40 N4).
        MapCase(classes: 1, height: 15, width: 300, tile: 64, dtype: .uint8, levels: 2, skipped: [], tiffTile: 256),
        // One row: its levels do not shrink in height, and tifffile took them for 3 series (output audit 39 F5).
        MapCase(classes: 2, height: 1, width: 300, tile: 64, dtype: .uint8, levels: 3, skipped: [], tiffTile: 16),
        MapCase(
            classes: 3, height: 300, width: 520, tile: 128, dtype: .float16, levels: 2,
            skipped: [TileIndex(row: 2, column: 4)], tiffTile: 256),
        MapCase(
            classes: 1, height: 513, width: 257, tile: 256, dtype: .float32, levels: 2,
            skipped: [TileIndex(row: 1, column: 0)], tiffTile: 256),
        // Map tiles of several TIFF tiles, not a multiple of them: the TIFF is written in blocks (memory audit 50 F1).
        MapCase(
            classes: 2, height: 300, width: 257, tile: 100, dtype: .float32, levels: 2,
            skipped: [TileIndex(row: 1, column: 1)], tiffTile: 32),
        MapCase(
            classes: 2, height: 100, width: 130, tile: 32, dtype: .float32, levels: 3,
            skipped: [TileIndex(row: 1, column: 1)], tiffTile: 32, compression: .zlib),
        MapCase(
            classes: 3, height: 61, width: 45, tile: 16, dtype: .uint16, levels: 2, skipped: [], tiffTile: 16,
            compression: .zlib),
    ]

    @Test(arguments: cases)
    func roundTrip(_ c: MapCase) throws {
        let dir = try temporaryDirectory("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let storePath = dir + "/map.zarr", tiffPath = dir + "/map.tif"
        let names = c.classes == 1 ? nil : (0..<c.classes).map { "class \($0)" }
        let layout = try MapLayout(
            classes: c.classes, height: c.height, width: c.width, tileSize: c.tile,
            dtype: c.dtype, levels: c.levels, classNames: names, compression: c.compression)
        let map = randomMap(classes: c.classes, height: c.height, width: c.width, seed: UInt64(c.height * 7 + c.width))
        let store = try MapStore.create(at: storePath, layout: layout)
        let grid = layout.tileGrid
        let tiles = (0..<(grid.h * grid.w)).map { TileIndex(row: $0 / grid.w, column: $0 % grid.w) }
            .filter { !c.skipped.contains($0) }
        // Several threads at once, as the engine writes them.
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: tiles.count) { i in
            let values = crop(map, classes: c.classes, height: c.height, width: c.width, layout.rect(of: tiles[i]))
            do {
                let receipt = try values.withUnsafeBufferPointer { try store.write(tile: tiles[i], values: $0) }
                try store.verify(receipt)
            } catch { failures.add("\(error)") }
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(!store.isFinished)
        try store.finish()

        let reopened = try MapStore.open(at: storePath)
        #expect(reopened.isFinished)
        #expect(reopened.layout == layout)
        #expect(reopened.presentTiles() == tiles)

        // The streaming reader, band by band, against quantise-then-decode of the input.
        let expected = expectedLevel0(map, layout: layout, skipped: c.skipped)
        var y = 0
        while y < c.height {
            let band = y..<min(c.height, y + 23)
            let rows = try reopened.rows(y: band)
            let want = crop(
                expected, classes: c.classes, height: c.height, width: c.width,
                PixelRect(y: band.lowerBound, x: 0, height: band.count, width: c.width))
            #expect(sameValues(rows, want), "rows \(band)")
            y = band.upperBound
        }
        if let first = tiles.first {
            let tile = try reopened.readTile(first)
            #expect(
                sameValues(
                    tile,
                    crop(
                        expected, classes: c.classes, height: c.height, width: c.width,
                        layout.rect(of: first))))
        }

        try TIFFMapExport.write(store: reopened, to: tiffPath, tileSize: c.tiffTile)
        try writeRaw(map, to: dir + "/input.f32")
        let spec: [String: Any] = [
            "mode": "full", "store": storePath, "tiff": tiffPath, "input": dir + "/input.f32",
            "shape": [c.classes, c.height, c.width], "tile": c.tile, "levels": c.levels, "dtype": c.dtype.rawValue,
            "tiff_levels": TIFFMapExport.levelCount(layout),
            // OpenSlide: the levels of 8-bit maps, and the pixels of one-class ones (as R = G = B).
            "openslide": c.dtype == .uint8,
            "skipped": c.skipped.map { [$0.row, $0.column] },
            "compressor": c.compression == .blosc ? "blosc" : "zlib",
        ]
        let (status, output) = try runReference(spec, in: dir)
        #expect(status == 0, "\(output)")
    }

    /// Level 0 as the store should return it: each value quantised and decoded, skipped tiles as NaN
    /// (an integer map's fill, 0, is read as NaN where the map records its tile as not computed).
    private func expectedLevel0(_ map: [Float], layout: MapLayout, skipped: [TileIndex]) -> [Float] {
        var out = [Float](repeating: 0, count: map.count)
        let scale: Float = layout.dtype == .uint8 ? 255 : 65535
        for i in map.indices {
            let x = (i % layout.width) / layout.tileSize, y = (i / layout.width % layout.height) / layout.tileSize
            if skipped.contains(TileIndex(row: y, column: x)) {
                out[i] = .nan
                continue
            }
            switch layout.dtype {
            case .float32: out[i] = map[i]
            case .float16: out[i] = Float(Float16(map[i]))
            case .uint8, .uint16:
                let p = map[i]
                out[i] = (p > 0 ? (min(p, 1) * scale).rounded() : 0) / scale
            }
        }
        return out
    }
}

/// Error messages collected from concurrent work.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []
    func add(_ message: String) { lock.lock(); messages.append(message); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return messages }
}
