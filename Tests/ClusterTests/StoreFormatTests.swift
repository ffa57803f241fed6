import Foundation
import Logging
import Testing

@testable import CoordinatorService
@testable import TesseraCore
@testable import TesseraModel
@testable import TesseraPlan
@testable import TesseraWire
@testable import TestSupport

/// The job store's file formats: what a restarted coordinator trusts and what it refuses.
@Suite("Job store formats: tiles, records, straggler deadlines")
struct StoreFormatTests {
    let task = TileTask(mode: .shift, rect: PixelRect(y: 24, x: 48, height: 3, width: 4), displacement: Size2(1, 2))

    func tile() -> TileFile {
        TileFile(index: 7, task: task, classes: 2, height: 3, width: 4, values: (0..<24).map { Float($0) * 0.125 - 1 })
    }

    @Test("A tile reads back bit-exactly; a flipped bit, a cut file or another task's tile is refused with the reason")
    func tileRoundTripAndDamage() throws {
        let t = tile()
        let bytes = t.encoded()
        #expect(try TileFile.decode(bytes, index: 7, task: task, classes: 2, height: 3, width: 4) == t.values)

        var flipped = bytes
        flipped[TileFile.headerBytes + 5] ^= 0x10
        #expect(throws: TileFile.Unusable.self) {
            try TileFile.decode(flipped, index: 7, task: task, classes: 2, height: 3, width: 4)
        }
        do {
            _ = try TileFile.decode(flipped, index: 7, task: task, classes: 2, height: 3, width: 4)
        } catch {
            #expect("\(error)".contains("checksum mismatch"))
        }
        do {
            _ = try TileFile.decode(Array(bytes.dropLast(9)), index: 7, task: task, classes: 2, height: 3, width: 4)
            Issue.record("a truncated tile was accepted")
        } catch {
            #expect("\(error)".contains("truncated"))
        }
        var other = task
        other.displacement = Size2(0, 0)
        do {
            _ = try TileFile.decode(bytes, index: 7, task: other, classes: 2, height: 3, width: 4)
            Issue.record("a tile of another task was accepted")
        } catch {
            #expect("\(error)".contains("the plan says"))
        }
        #expect(throws: TileFile.Unusable.self) {
            try TileFile.decode(bytes, index: 8, task: task, classes: 2, height: 3, width: 4)
        }
    }

    @Test("CRC-32 matches the standard check value")
    func crc() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test("A job record keeps the preprocessing floats exactly; damaged records name the key at fault")
    func record() throws {
        let r = JobRecord(
            mode: .dense, tile: 24, stem: "tissue", options: "outputs=npy;bit-depth=8;out=/a b/c",
            preprocessing: Wire.Preprocessing(
                channelOrder: .rgb, rawScale: 1.0 / 255, scale: 0.017_123_4,
                mean: [123.675, 116.28, -0.0]),
            modelDigest: String(repeating: "ab", count: 32), imageCRC32: 0xDEAD_BEEF, imageBytes: 1234)
        let back = try JobRecord(text: r.encoded())
        #expect(back == r)
        #expect(back.preprocessing.mean.map(\.bitPattern) == r.preprocessing.mean.map(\.bitPattern))
        do {
            _ = try JobRecord(text: r.encoded().replacingOccurrences(of: "mode=dense", with: "mode=sparse"))
            Issue.record("an unknown mode was accepted")
        } catch {
            #expect("\(error)".contains("sparse"))
        }
        do {
            _ = try JobRecord(text: String(r.encoded().prefix(40)))
            Issue.record("a cut record was accepted")
        } catch {
            #expect("\(error)".contains("no "))
        }
        let ending = JobEnding(
            state: .done, message: "resumed: 3/4\nrestored", tasks: 4, files: ["a.npy", "a_prob.png"])
        let e = try JobEnding(text: ending.encoded())
        #expect(e.state == .done && e.files == ending.files && e.tasks == 4 && !e.message.contains("\n"))
    }

    @Test("Durable writes leave only the final file; a store's tile listing separates tiles from leftovers")
    func durableStore() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tessera-store-fmt-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = JobStore(root: root)
        try DurableFile.createDirectory(store.tilesDirectory(3))
        try store.writeTile(tile(), job: 3)
        #expect(
            FileManager.default.createFile(atPath: store.tilesDirectory(3) + "/.9.tile.tmp-1-2", contents: Data([1])))
        let listing = store.tileFiles(3)
        #expect(listing.indices == [7])
        #expect(listing.others == [".9.tile.tmp-1-2"])
        #expect(store.jobIDs() == [3])
    }

    @Test("Straggler deadline: none before enough samples, then max(floor, factor × median)")
    func stragglerDeadline() {
        let p = StragglerPolicy(floorSeconds: 1, factor: 3, quantile: 0.5, minSamples: 3)
        #expect(p.deadline(samples: [0.1, 0.2]) == nil)
        #expect(p.deadline(samples: [0.1, 0.2, 0.3]) == 1)
        #expect(p.deadline(samples: [2, 1, 3, 100, 2]) == 6)
    }
}

@Suite("Job store: damaged entries at start")
struct DamagedStoreTests {
    @Test(
        "A damaged job entry fails that job with the file and reason; an interrupted one is skipped; the coordinator serves on"
    )
    func damagedEntries() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-damaged-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = JobStore(root: root)
        try DurableFile.createDirectory(store.tilesDirectory(5))
        try DurableFile.write(Array("format=2\nmode=dense\ntile=abc\n".utf8), to: store.directory(5) + "/job.txt")
        try DurableFile.createDirectory(store.tilesDirectory(6))  // no job.txt: submission interrupted
        try DurableFile.createDirectory(store.directory(8))
        try DurableFile.write(Array("format=1\nmode=dense\n".utf8), to: store.directory(8) + "/job.txt")
        let context = try ZMQContext()
        let id = UUID().uuidString
        let service = CoordinatorService(
            context: context,
            configuration: .init(
                workerEndpoint: "inproc://w-\(id)", clientEndpoint: "inproc://c-\(id)", storeDirectory: root),
            logger: Logger(label: "test.store"))
        _ = try service.start()
        defer { service.stop() }
        let client = try TestClient(context, "inproc://c-\(id)")
        let five = try client.status(5)
        #expect(five.state == .failed)
        #expect(five.message.contains("job.txt") && five.message.contains("tile=abc"), "\(five.message)")
        #expect(try client.status(6).state == .unknown)
        let eight = try client.status(8)
        #expect(eight.state == .failed && eight.message.contains("another version"), "\(eight.message)")
        // New ids continue after the highest one in the store.
        guard case .error(let text) = try client.request(.fetchRequest(Wire.FetchRequest(jobID: 9, fileName: "x")))
        else {
            Issue.record("fetch of an unknown job should fail")
            return
        }
        #expect(text.contains("no job 9"))
    }
}
