import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// The raw float32 store of an upload job on the coordinator: tiles written straight
/// from their values, uncached (`DirectIO`), `.npy` copied from its chunks and
/// the `.npy` served from them must give exactly the bytes of the general encoder and
/// of an in-memory map.
@Suite("Raw float32 stores")
struct RawStoreTests {
    /// 2 classes, 70 × 90, 32² tiles: interior, right, bottom and corner tiles.
    private let layout = try! MapLayout(classes: 2, height: 70, width: 90, tileSize: 32, compression: .none)

    @Test func directWritesEqualTheEncodedChunks() throws {
        let dir = try temporaryDirectory("raw-write")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try MapStore.create(at: dir + "/map.chunks", layout: layout)
        #expect(store.writesRawValues)
        let grid = layout.tileGrid
        for row in 0..<grid.h {
            for column in 0..<grid.w {
                let tile = TileIndex(row: row, column: column), rect = layout.rect(of: tile)
                let values = randomMap(
                    classes: 2, height: rect.height, width: rect.width, seed: UInt64(row * 7 + column))
                let receipt = try values.withUnsafeBufferPointer { try store.write(tile: tile, values: $0) }
                let encoded = try values.withUnsafeBufferPointer {
                    try MapStore.encode(tile: tile, values: $0, layout: layout)
                }
                #expect(receipt == encoded.receipt, "tile \(tile)")
                #expect(try FileIO.read(store.chunkPath(tile, level: 0)) == encoded.chunks[0], "tile \(tile)")
                try store.verify(receipt)
                #expect(store.writtenProblem(receipt.chunks[0]) == nil)
                #expect(sameValues(try store.readTile(tile), values))
            }
        }
        // Ops audit: a journal line whose tile index was damaged (42 → 52) named another tile's chunks, all
        // present and matching: that tile counted as done and was never computed. The keys must be the tile's.
        let first = try [Float](repeating: 0.5, count: 2 * 32 * 32).withUnsafeBufferPointer {
            try store.write(tile: TileIndex(row: 0, column: 0), values: $0)
        }
        let moved = TileReceipt(tile: TileIndex(row: 1, column: 1), chunks: first.chunks)
        #expect(throws: MapStoreError.self) { try store.verify(moved) }
        // A receipt's chunk must be there with its size (one stat).
        let wrongSize = TileReceipt.Chunk(key: first.chunks[0].key, size: first.chunks[0].size + 4, crc32: 0)
        #expect(store.writtenProblem(wrongSize)?.contains("the receipt says") == true)
        let missing = TileReceipt.Chunk(key: layout.chunkKey(TileIndex(row: 9, column: 9), level: 0), size: 4, crc32: 0)
        #expect(store.writtenProblem(missing)?.contains("does not exist") == true)
    }

    /// Writes every tile of the 2 × 70 × 90 map `full` into `store`, but `except`.
    private func write(_ full: [Float], into store: MapStore, except: TileIndex? = nil) throws {
        let grid = layout.tileGrid
        for row in 0..<grid.h {
            for column in 0..<grid.w where TileIndex(row: row, column: column) != except {
                let tile = TileIndex(row: row, column: column)
                let values = crop(full, classes: 2, height: 70, width: 90, layout.rect(of: tile))
                try values.withUnsafeBufferPointer { _ = try store.write(tile: tile, values: $0) }
            }
        }
    }

    @Test func npyCopiedFromChunksEqualsTheMapInMemory() throws {
        let dir = try temporaryDirectory("raw-npy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try MapStore.create(at: dir + "/map.chunks", layout: layout)
        let full = randomMap(classes: 2, height: 70, width: 90, seed: 11)
        try write(full, into: store)
        #expect(NPY.copyable(store) == (1.littleEndian == 1))
        #expect(throws: MapStoreError.self) { try NPYStoreView(store) }  // not finished yet
        try store.finish()
        try NPY.write(store, to: dir + "/copied.npy")
        try NPY.write(ProbabilityMap(classes: 2, height: 70, width: 90, data: full), to: dir + "/memory.npy")
        #expect(try FileIO.read(dir + "/copied.npy") == FileIO.read(dir + "/memory.npy"))
        // The served view: the written file's bytes at any offset and length.
        let file = try #require(try FileIO.read(dir + "/copied.npy"))
        let view = try NPYStoreView(store)
        #expect(view.size == file.count)
        #expect(try view.read(offset: 0, count: view.size + 100) == file)
        var random = SplitMix64(seed: 3)
        for (offset, count) in [(0, 5), (100, 60), (127, 1), (128, 4), (130, 7), (90 * 4 + 128 - 3, 1000)]
            + (0..<20).map({ _ in (Int(random.next() % UInt64(file.count)), Int(random.next() % 40_000)) })
        {
            let end = min(file.count, offset + count)
            #expect(try view.read(offset: offset, count: count) == Array(file[offset..<end]), "\(offset)+\(count)")
        }
        #expect(try view.read(offset: file.count, count: 10) == [])
        // A chunk lost from the finished map (the map records no gap there) is an error, not a hole of fill
        // values (hostile-input audit 27: such an export succeeded silently).
        try FileManager.default.removeItem(atPath: store.chunkPath(TileIndex(row: 1, column: 1), level: 0))
        #expect(!NPY.copyable(store))
        #expect { try NPY.write(store, to: dir + "/holes.npy") } throws: {
            ($0 as? MapStoreError)?.kind == .missingChunk
        }
    }

    static let openFilesProbe = "TESSERA_NPY_VIEW_OPEN_FILES_PROBE"

    /// Audit 52: a read of the served view kept every chunk it touched open to its end; a map of many small tiles
    /// passed the open-file limit and `run` lost its finished map's `.npy`. Read under a limit of 64 open files, a
    /// view of 4 096 chunks gives the written file's bytes.
    @Test func npyViewOfManyChunksUnderAFileLimit() throws {
        if let resultPath = ProcessInfo.processInfo.environment[Self.openFilesProbe] {
            var limit = rlimit(rlim_cur: 64, rlim_max: 64)
            setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
            let dir = try temporaryDirectory("raw-npy-files")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let small = try MapLayout(classes: 2, height: 256, width: 256, tileSize: 4, compression: .none)
            let store = try MapStore.create(at: dir + "/map.chunks", layout: small)
            let full = randomMap(classes: 2, height: 256, width: 256, seed: 5)
            for row in 0..<64 {
                for column in 0..<64 {
                    let tile = TileIndex(row: row, column: column)
                    let values = crop(full, classes: 2, height: 256, width: 256, small.rect(of: tile))
                    try values.withUnsafeBufferPointer { _ = try store.write(tile: tile, values: $0) }
                }
            }
            try store.finish()
            try NPY.write(ProbabilityMap(classes: 2, height: 256, width: 256, data: full), to: dir + "/memory.npy")
            let view = try NPYStoreView(store)
            let same = try view.read(offset: 0, count: view.size) == FileIO.read(dir + "/memory.npy")
            try "\(same)".write(toFile: resultPath, atomically: true, encoding: .utf8)
            return
        }
        let dir = try temporaryDirectory("raw-npy-probe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let child = try runProbeChild(
            suite: "RawStoreTests/npyViewOfManyChunksUnderAFileLimit", variable: Self.openFilesProbe,
            value: dir + "/result.txt", resultPath: dir + "/result.txt")
        #expect(child.result == "true", "status \(child.status): \(child.output.suffix(2000))")
    }

    /// A tile never written (no tissue) is recorded when the map finishes; it reads as the fill value through
    /// the general path.
    @Test func npyOfAMapWithAGap() throws {
        let dir = try temporaryDirectory("raw-gap")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try MapStore.create(at: dir + "/map.chunks", layout: layout)
        let full = randomMap(classes: 2, height: 70, width: 90, seed: 12)
        try write(full, into: store, except: TileIndex(row: 1, column: 1))
        try store.finish()
        #expect(!NPY.copyable(store))
        try NPY.write(store, to: dir + "/holes.npy")
        let read = try NPY.read(path: dir + "/holes.npy")
        #expect(read.shape == [2, 70, 90])
        #expect(read.data[32 * 90 + 40].isNaN && sameValues(Array(read.data[0..<90]), Array(full[0..<90])))
    }

    /// Chunks larger than a staging buffer (several uncached writes each, the last one
    /// cut back to the chunk's unaligned size) and chunk rows read a buffer's worth at
    /// a time, on the disk's file system and on tmpfs (where `O_DIRECT` may be refused
    /// and buffered I/O is used).
    @Test(arguments: [NSTemporaryDirectory(), "/dev/shm"])
    func chunksLargerThanAStagingBuffer(root: String) throws {
        guard FileManager.default.fileExists(atPath: root) else { return }
        let dir = root + "/tessera-raw-large-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 2 × 1100² floats = 9.7 MB per chunk (unaligned), edge tiles 300 and 150 wide.
        let (height, width) = (1250, 1400)
        let layout = try MapLayout(classes: 2, height: height, width: width, tileSize: 1100, compression: .none)
        #expect(layout.chunkBytes(0) > 2 * DirectIO.stagingBytes && layout.chunkBytes(0) % DirectIO.alignment != 0)
        let store = try MapStore.create(at: dir + "/map.chunks", layout: layout)
        let full = randomMap(classes: 2, height: height, width: width, seed: 29)
        for row in 0..<2 {
            for column in 0..<2 {
                let tile = TileIndex(row: row, column: column)
                let values = crop(full, classes: 2, height: height, width: width, layout.rect(of: tile))
                let receipt = try values.withUnsafeBufferPointer { try store.write(tile: tile, values: $0) }
                let encoded = try values.withUnsafeBufferPointer {
                    try MapStore.encode(tile: tile, values: $0, layout: layout)
                }
                #expect(receipt == encoded.receipt, "tile \(tile)")
                #expect(try FileIO.read(store.chunkPath(tile, level: 0)) == encoded.chunks[0], "tile \(tile)")
            }
        }
        try store.finish()
        try NPY.write(ProbabilityMap(classes: 2, height: height, width: width, data: full), to: dir + "/memory.npy")
        let file = try #require(try FileIO.read(dir + "/memory.npy"))
        let view = try NPYStoreView(store)
        #expect(try view.read(offset: 0, count: view.size) == file)
        var random = SplitMix64(seed: 8)
        for _ in 0..<6 {
            let (offset, count) = (Int(random.next() % UInt64(file.count)), Int(random.next() % 9_000_000))
            let end = min(file.count, offset + count)
            #expect(try view.read(offset: offset, count: count) == Array(file[offset..<end]), "\(offset)+\(count)")
        }
    }
}
