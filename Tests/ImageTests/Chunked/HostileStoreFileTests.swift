import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// Hostile-peer audit 54 F1, F2, F4, F6: a map store's files sit in a folder a client controls on shared storage.
/// A FIFO `.zattrs` blocked whoever opened the store (the coordinator's loop, its finish queue, every worker that
/// took a tile) until someone wrote to it; a sparse 1 TiB one made the coordinator allocate 1 TiB and abort.
/// Written before the semaphore is signalled, read after.
private final class ThreadResult<T>: @unchecked Sendable { var result: Result<T, any Error>? }

@Suite("Store files that are not small regular files")
struct HostileStoreFileTests {
    /// Runs `body` on another thread; fails the test (and unblocks a FIFO at `fifo`) when it takes over 10 s.
    func withinSeconds<T: Sendable>(
        fifo: String? = nil, _ body: @escaping @Sendable () throws -> T
    ) -> Result<T, any Error>? {
        let done = DispatchSemaphore(value: 0)
        let box = ThreadResult<T>()
        DispatchQueue.global().async {
            box.result = Result { try body() }
            done.signal()
        }
        guard done.wait(timeout: .now() + 10) == .success else {
            Issue.record("still waiting after 10 s")
            if let fifo {
                let fd = open(fifo, O_WRONLY | O_NONBLOCK)
                if fd >= 0 { close(fd) }
            }
            _ = done.wait(timeout: .now() + 10)
            return nil
        }
        return box.result
    }

    @Test("a FIFO is refused at once, not waited on")
    func fifo() throws {
        let dir = try temporaryDirectory("fifo")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/.zattrs"
        #expect(mkfifo(fifo, 0o644) == 0)
        let result = withinSeconds(fifo: fifo) { try FileIO.read(fifo) }
        guard case .failure(let error)? = result else {
            Issue.record("read a FIFO: \(String(describing: result))")
            return
        }
        #expect("\(error)".contains(fifo) && "\(error)".contains("not a regular file"), "\(error)")
    }

    @Test("a store whose .zattrs is a FIFO or a sparse 1 TiB file is refused, naming it")
    func storeOpen() throws {
        let dir = try temporaryDirectory("store")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try MapLayout(classes: 2, height: 70, width: 90, tileSize: 32, compression: .none)
        for kind in ["fifo", "sparse"] {
            let path = "\(dir)/\(kind).zarr"
            _ = try MapStore.create(at: path, layout: layout)
            let attributes = path + "/.zattrs"
            #expect(unlink(attributes) == 0)
            if kind == "fifo" {
                #expect(mkfifo(attributes, 0o644) == 0)
            } else {
                let fd = open(attributes, O_WRONLY | O_CREAT, 0o644)
                #expect(fd >= 0 && ftruncate(fd, 1 << 40) == 0)
                close(fd)
            }
            let result = withinSeconds(fifo: kind == "fifo" ? attributes : nil) { try MapStore.open(at: path) }
            guard case .failure(let error)? = result else {
                Issue.record("\(kind): opened: \(String(describing: result))")
                continue
            }
            #expect("\(error)".contains(attributes), "\(kind): \(error)")
            // The checks that run on the coordinator's loop and preparation queue: no map of anyone's, not blocked.
            let owner = withinSeconds(fifo: kind == "fifo" ? attributes : nil) { MapStore.submittedBy(path) }
            if case .success(let key)? = owner { #expect(key == nil) }
        }
    }

    @Test("a chunk larger than its layout allows is refused before it is read")
    func oversizedChunk() throws {
        let dir = try temporaryDirectory("chunk")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try MapLayout(classes: 2, height: 70, width: 90, tileSize: 32, compression: .none)
        let store = try MapStore.create(at: dir + "/map.zarr", layout: layout)
        let tile = TileIndex(row: 0, column: 0)
        _ = try [Float](repeating: 0.5, count: 2 * 32 * 32).withUnsafeBufferPointer {
            try store.write(tile: tile, values: $0)
        }
        let chunk = store.chunkPath(tile, level: 0)
        #expect(truncate(chunk, 1 << 40) == 0)
        #expect(throws: MapStoreError.self) { try store.piece(tile, level: 0) }
    }
}

/// Hostile-peer audit 54 F3: a link put in place of one of a partial store's folders had workers (and the
/// coordinator, finishing) write chunks wherever the link pointed, outside every --shared-root.
@Suite("Store folders replaced by links")
struct StoreLinkTests {
    @Test("a chunk is not written through a link in place of a store folder")
    func noWriteThroughLinks() throws {
        let dir = try temporaryDirectory("links")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let outside = dir + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        for compression in ChunkCompression.allCases {
            let layout = try MapLayout(classes: 2, height: 70, width: 90, tileSize: 32, compression: compression)
            let path = dir + "/\(compression).zarr"
            let store = try MapStore.create(at: path, layout: layout)
            let tile = TileIndex(row: 1, column: 1)
            let folder = (store.chunkPath(tile, level: 0) as NSString).deletingLastPathComponent
            try FileManager.default.removeItem(atPath: folder)
            try FileManager.default.createSymbolicLink(atPath: folder, withDestinationPath: outside)
            let values = [Float](repeating: 0.25, count: 2 * 32 * 32)
            #expect {
                _ = try values.withUnsafeBufferPointer { try store.write(tile: tile, values: $0) }
            } throws: { error in
                "\(error)".contains(folder) && "\(error)".contains("link")
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
            // A tile whose folders are the store's own is written as before.
            _ = try values.withUnsafeBufferPointer { try store.write(tile: TileIndex(row: 0, column: 0), values: $0) }
            #expect(FileManager.default.fileExists(atPath: store.chunkPath(TileIndex(row: 0, column: 0), level: 0)))
        }
    }
}

/// Audit 53 F2: a level whose downsample is a 17-digit number (1024/420) failed every shared job and `run` at the
/// end with "the map store's metadata changed while the job ran": Foundation's JSON reader reads such numbers an
/// ulp off, so the re-read layout differed from the job's.
@Suite("Store metadata read back exactly")
struct ExactMetadataTests {
    @Test("a source downsample and microns per pixel read back bit for bit", arguments: [1024.0 / 420, 1024.0 / 300])
    func roundTrip(downsample: Double) throws {
        let dir = try temporaryDirectory("exact")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let layout = try MapLayout(
            classes: 2, height: 420, width: 300, tileSize: 64, micronsPerPixel: 0.25 * downsample,
            source: MapSource(
                file: "/slides/a.tif", image: 1, level: 1,
                scale: LevelScale(levelZeroHeight: 1024, levelZeroWidth: 1024, downsample: downsample)))
        _ = try MapStore.create(at: dir + "/m.zarr", layout: layout)
        #expect(try MapStore.open(at: dir + "/m.zarr").layout == layout)
    }
}
