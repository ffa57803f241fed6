import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage

/// The upper pyramid levels: pieces staged per tile, joined by `finish()` into T × T
/// chunks, checked against NumPy through zarr (the reference script).
@Suite("Upper pyramid levels joined into tile-sized chunks")
struct JoinedLevelsTests {
    @Test func whichLevelsAreChunkedByTile() throws {
        #expect(MapLayout.tileLevels(tileSize: 640, levels: 8) == 3)
        #expect(MapLayout.tileLevels(tileSize: 1024, levels: 8) == 4)
        #expect(MapLayout.tileLevels(tileSize: 256, levels: 2) == 2)
        #expect(MapLayout.tileLevels(tileSize: 64, levels: 4) == 1)
        // A 100 000 × 80 000 slide: its overview (level 7, 782 × 625) is 2 chunks, not 157 × 125 of 5².
        let layout = try MapLayout(classes: 1, height: 100_000, width: 80_000, tileSize: 640, levels: 8)
        #expect((0..<8).map(layout.storedChunkSide) == [640, 320, 160, 640, 640, 640, 640, 640])
        #expect(layout.storedChunkGrid(7) == Size2(2, 1))
        #expect(layout.storedChunkGrid(2) == layout.tileGrid)
        #expect(throws: MapStoreError.self) {
            try MapLayout(classes: 1, height: 9, width: 9, tileSize: 8, levels: 2, tileLevels: 3)
        }
    }

    /// Writes every tile of `layout` but `skipped` from a random map; returns the map.
    private func fill(_ store: MapStore, skipped: Set<TileIndex>, seed: UInt64) throws -> [Float] {
        let layout = store.layout
        let map = randomMap(classes: layout.classes, height: layout.height, width: layout.width, seed: seed)
        for row in 0..<layout.tileGrid.h {
            for column in 0..<layout.tileGrid.w where !skipped.contains(TileIndex(row: row, column: column)) {
                let rect = layout.rect(of: TileIndex(row: row, column: column))
                let values = crop(map, classes: layout.classes, height: layout.height, width: layout.width, rect)
                _ = try values.withUnsafeBufferPointer { try store.write(rect: rect, values: $0) }
            }
        }
        return map
    }

    private func reference(_ store: MapStore, map: [Float], skipped: Set<TileIndex>, dir: String) throws {
        let layout = store.layout
        try writeRaw(map, to: dir + "/input.f32")
        let spec: [String: Any] = [
            "mode": "full", "store": store.path, "input": dir + "/input.f32",
            "shape": [layout.classes, layout.height, layout.width], "tile": layout.tileSize,
            "levels": layout.levels, "dtype": layout.dtype.rawValue,
            "skipped": skipped.sorted().map { [$0.row, $0.column] },
        ]
        let (status, output) = try runReference(spec, in: dir)
        #expect(status == 0, "\(output)")
    }

    private func chunkShape(_ store: MapStore, level: Int) throws -> [Int] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(store.path)/\(level)/.zarray"))
        return try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["chunks"] as? [Int])
    }

    @Test func sparseTissueGivesFewChunksAndExactValues() throws {
        let dir = try temporaryDirectory("joined")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try MapLayout(classes: 2, height: 200, width: 260, tileSize: 32, dtype: .uint8, levels: 4)
        #expect(layout.tileLevels == 1)
        let store = try MapStore.create(at: dir + "/map.zarr", layout: layout)
        // No tissue in the 2 × 2 tiles of level 1's first chunk, nor in one more tile.
        let skipped: Set<TileIndex> = [
            TileIndex(row: 0, column: 0), TileIndex(row: 0, column: 1), TileIndex(row: 1, column: 0),
            TileIndex(row: 1, column: 1), TileIndex(row: 4, column: 5),
        ]
        let map = try fill(store, skipped: skipped, seed: 3)
        try store.finish()
        for level in 1..<4 {
            #expect(try chunkShape(store, level: level) == [2, 32, 32], "level \(level)")
            #expect(!FileManager.default.fileExists(atPath: "\(store.path)/\(level)/.tiles"), "level \(level)")
            // Exactly the chunks some written tile falls in exist.
            let per = 1 << level, grid = layout.storedChunkGrid(level)
            var expected: [String] = []
            for r in 0..<grid.h {
                for c in 0..<grid.w {
                    let covered = (r * per..<min((r + 1) * per, layout.tileGrid.h)).contains { tr in
                        (c * per..<min((c + 1) * per, layout.tileGrid.w)).contains {
                            !skipped.contains(TileIndex(row: tr, column: $0))
                        }
                    }
                    if covered { expected.append("\(r)/\(c)") }
                }
            }
            var found: [String] = []
            for r in 0..<grid.h {
                for name in FileIO.list("\(store.path)/\(level)/0/\(r)") ?? [] { found.append("\(r)/\(name)") }
            }
            #expect(found.sorted() == expected.sorted(), "level \(level)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(store.path)/1/0/0/0"))
        try reference(store, map: map, skipped: skipped, dir: dir)
        // readTile reads an upper level from the joined chunks.
        let tile = TileIndex(row: 3, column: 4)
        let want = try store.region(level: 2, rect: layout.rect(of: tile, level: 2))
        #expect(try store.readTile(tile, level: 2) == want)
    }

    @Test func finishingAgainAfterACrashGivesTheSameStore() throws {
        let dir = try temporaryDirectory("rejoin")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try MapLayout(classes: 3, height: 90, width: 70, tileSize: 16, dtype: .float16, levels: 3)
        let store = try MapStore.create(at: dir + "/map.zarr", layout: layout)
        let skipped: Set<TileIndex> = [TileIndex(row: 2, column: 1)]
        let map = try fill(store, skipped: skipped, seed: 8)
        let tile = TileIndex(row: 0, column: 0), rect = layout.rect(of: tile)
        let values = crop(map, classes: 3, height: 90, width: 70, rect)
        let receipt = try values.withUnsafeBufferPointer { try MapStore.encode(tile: tile, values: $0, layout: layout) }
            .receipt
        // Killed after joining, before the store was marked complete: the pieces are still there.
        try store.joinUpperLevels()
        #expect(!store.isFinished)
        let reopened = try MapStore.open(at: store.path)
        try reopened.verify(receipt)
        try reopened.finish()
        #expect(reopened.isFinished)
        // Once finished, the joined pieces are gone: receipts check the tile levels only.
        try reopened.verify(receipt)
        #expect(reopened.presentTiles().count == layout.tileGrid.h * layout.tileGrid.w - 1)
        // A straggler's late piece (here garbage) is not joined again, only removed.
        try FileIO.makeDirectories(store.path + "/1/.tiles/0")
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: store.path + "/1/.tiles/0/0"))
        try reopened.finish()
        #expect(!FileManager.default.fileExists(atPath: store.path + "/1/.tiles"))
        try reference(reopened, map: map, skipped: skipped, dir: dir)
    }

    /// A store written before levels were joined (format 1: every level chunked by tile) resumes and reads.
    @Test func olderStoresKeepTheirChunks() throws {
        let dir = try temporaryDirectory("format1")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try MapLayout(
            classes: 2, height: 70, width: 90, tileSize: 32, dtype: .uint16, levels: 3, tileLevels: 3)
        let store = try MapStore.create(at: dir + "/map.zarr", layout: layout)
        let attributes = store.path + "/.zattrs"
        var root = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: attributes)))
                as? [String: Any])
        var tessera = try #require(root["tessera"] as? [String: Any])
        tessera["format"] = 1
        tessera.removeValue(forKey: "tile_levels")
        root["tessera"] = tessera
        try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: attributes))
        let reopened = try MapStore.open(at: store.path)
        #expect(reopened.layout == layout)
        let map = try fill(reopened, skipped: [], seed: 4)
        try reopened.finish()
        #expect(try chunkShape(reopened, level: 2) == [2, 8, 8])
        try reference(reopened, map: map, skipped: [], dir: dir)
        // A store of a format this build does not know is refused, naming it.
        tessera["format"] = 9
        root["tessera"] = tessera
        try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: attributes))
        #expect { try MapStore.open(at: store.path) } throws: { "\($0)".contains("format 9") }
    }

    /// Kept classes on a store whose levels are all chunked by tile (a format-1 store):
    /// the planes are selected under the store's own chunking.
    @Test func keptClassesKeepTheStoresChunking() throws {
        let dir = try temporaryDirectory("kept1")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try MapLayout(
            classes: 1, height: 40, width: 50, tileSize: 16, levels: 3, kept: [1], netClasses: 2, tileLevels: 3)
        let store = try MapStore.create(at: dir + "/map.zarr", layout: layout)
        let tile = TileIndex(row: 1, column: 2), rect = layout.rect(of: tile)
        let values = randomMap(classes: 2, height: rect.height, width: rect.width, seed: 2)
        let receipt = try values.withUnsafeBufferPointer { try store.write(tile: tile, values: $0) }
        #expect(receipt.chunks.map(\.key) == ["0/0/1/2", "1/0/1/2", "2/0/1/2"])
        #expect(try store.readTile(tile) == Array(values[(rect.height * rect.width)...]))
    }
}
