import Foundation
import Logging
import TesseraCluster
import TesseraImage
import Testing

@testable import CoordinatorService
@testable import TesseraCore
@testable import TesseraModel
@testable import TesseraPlan
@testable import TesseraWire
@testable import TestSupport

/// The job store's file formats: what a restarted coordinator trusts and what it refuses.
@Suite("Job store formats: receipt journals, records, straggler deadlines")
struct StoreFormatTests {
    let task = TileTask(mode: .shift, rect: PixelRect(y: 24, x: 48, height: 3, width: 4), displacement: Size2(1, 2))

    @Test("Receipt journal lines read back exactly; a torn line names its tile without chunks; garbage is skipped")
    func receiptJournal() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-journal-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = [TileReceipt.Chunk(key: "0/0/3/4", size: 4096, crc32: 0xDEAD_BEEF)]
        let b = [
            TileReceipt.Chunk(key: "0/0/0/1", size: 17, crc32: 0), TileReceipt.Chunk(key: "1/0/0/0", size: 9, crc32: 7),
        ]
        let text = [
            ReceiptJournal.line(12, a), ReceiptJournal.line(0, b), "5 0/0/0/0:12", "not a line", "-3 0/0/0/0:1:1",
            String(ReceiptJournal.line(40, a).dropLast(3)),
        ].joined(separator: "\n")
        try text.write(toFile: dir + "/" + ReceiptJournal.fileName, atomically: true, encoding: .utf8)
        let entries = ReceiptJournal.entries(in: dir)
        #expect(entries.map(\.index) == [12, 0, 5, 40])
        #expect(entries[0].chunks == a && entries[1].chunks == b)
        #expect(entries[2].chunks == nil, "a field without its CRC is a torn line")
        #expect(
            entries[3].chunks?.first?.crc32 == 0xDEAD_B, "a cut CRC still parses: verify() refuses it, not the reader")
        #expect(ReceiptJournal.entries(in: dir + "/missing").isEmpty)
        // A byte that is not UTF-8 spoils its own line only (ops audit: the whole journal read as empty).
        var bytes = Array((ReceiptJournal.line(1, a) + "\n" + ReceiptJournal.line(2, b) + "\n").utf8)
        bytes[bytes.count - 5] = 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + ReceiptJournal.fileName))
        let spoiled = ReceiptJournal.entries(in: dir)
        #expect(spoiled.count == 2 && spoiled[0].chunks == a, "\(spoiled)")
        // One unreadable line is a kill mid-append, not damage; all lines unreadable is.
        #expect(ReceiptJournal.damage(in: dir) == nil)
        try Data([0xFF, 0x0A, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: dir + "/" + ReceiptJournal.fileName))
        #expect(ReceiptJournal.damage(in: dir)?.contains("2 of 2 lines") == true)
        // No journal at all, while the store holds tiles: said too.
        try FileManager.default.removeItem(atPath: dir + "/" + ReceiptJournal.fileName)
        let layout = try MapLayout(classes: 1, height: 8, width: 8, tileSize: 8, compression: .none)
        let store = try MapStore.create(at: dir + "/map.chunks", layout: layout)
        #expect(ReceiptJournal.damage(in: dir, store: store) == nil)
        try [Float](repeating: 0.5, count: 64).withUnsafeBufferPointer {
            _ = try store.write(tile: TileIndex(row: 0, column: 0), values: $0)
        }
        #expect(ReceiptJournal.damage(in: dir, store: store)?.contains("missing or empty") == true)
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
        // A per-channel std (torchvision) is kept exactly too; a record without one has no std line.
        #expect(!r.encoded().contains("std="))
        var withStd = r
        withStd.preprocessing.std = [0.229, 0.224, 0.225]
        let stdBack = try JobRecord(text: withStd.encoded())
        #expect(
            stdBack == withStd
                && stdBack.preprocessing.std.map(\.bitPattern) == ([0.229, 0.224, 0.225] as [Float]).map(\.bitPattern))
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
        #expect(e == ending)
    }

    /// A random string as a file name can be: any Unicode scalar but NUL and `/`, with
    /// the characters a record line is made of (line breaks, `=`, `;`, `%`) over-represented;
    /// one in twenty is very long (up to ~60 000 bytes).
    static func randomName(_ rng: inout SeededGenerator) -> String {
        let specials: [String] = [
            "\n", "\r\n", "\r", "=", ";", "%", "%4", "%zz", "tile=1", "\nformat=1\n", " ", "\u{85}",
            "\u{2028}", "é", "\u{1F600}", "\t", "\u{7F}", "\u{1}",
        ]
        let length = Int.random(in: 0..<5, using: &rng) == 0 ? 0 : Int.random(in: 1...40, using: &rng)
        var name = ""
        for _ in 0..<length {
            if Bool.random(using: &rng) {
                name += specials.randomElement(using: &rng)!
            } else {
                var scalar: Unicode.Scalar?
                while scalar == nil || scalar == "\0" || scalar == "/" {
                    let range: ClosedRange<UInt32> = Bool.random(using: &rng) ? 1...0x7F : 1...0x10_FFFF
                    scalar = Unicode.Scalar(UInt32.random(in: range, using: &rng))
                }
                name.unicodeScalars.append(scalar!)
            }
        }
        if Int.random(in: 0..<20, using: &rng) == 0 { name = String(repeating: name + "=\n;", count: 300) }
        return name
    }

    @Test("Fuzz: records and endings with random file names (line breaks, =, ;, %, any scalar, very long) round-trip")
    func recordFuzz() throws {
        var rng = SeededGenerator(seed: 18)
        for round in 0..<1000 {
            let stem = Self.randomName(&rng)
            let r = JobRecord(
                mode: Wire.Mode.allCases.randomElement(using: &rng)!, tile: Int.random(in: 1...4096, using: &rng),
                stem: stem, options: "outputs=all;out=" + Self.randomName(&rng),
                preprocessing: Wire.Preprocessing(
                    channelOrder: Bool.random(using: &rng) ? .bgr : .rgb,
                    rawScale: Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng)),
                    scale: Float.random(in: -1...1, using: &rng),
                    mean: (0..<Int.random(in: 0...4, using: &rng)).map { _ in
                        Float.random(in: -1e30...1e30, using: &rng)
                    }),
                modelDigest: String(repeating: "0f", count: 32),
                imageCRC32: UInt32.random(in: 0...UInt32.max, using: &rng),
                imageBytes: Int.random(in: 0...Int.max, using: &rng))
            let text = r.encoded()
            // Exactly one line per key, whatever the values hold.
            #expect(text.utf8.filter { $0 == UInt8(ascii: "\n") }.count == 13, "round \(round)")
            let back = try JobRecord(text: text)
            #expect(back.stem == r.stem && back.options == r.options, "round \(round): \(stem.debugDescription)")
            #expect(back.preprocessing.rawScale.bitPattern == r.preprocessing.rawScale.bitPattern)
            #expect(back.mode == r.mode && back.tile == r.tile && back.imageBytes == r.imageBytes)
            #expect(back.imageCRC32 == r.imageCRC32 && back.preprocessing.mean == r.preprocessing.mean)

            let ending = JobEnding(
                state: Wire.JobState.allCases.randomElement(using: &rng)!, message: Self.randomName(&rng),
                tasks: Int.random(in: 0...1_000_000, using: &rng),
                files: (0..<Int.random(in: 0...4, using: &rng)).map { _ in stem + Self.randomName(&rng) + ".png" })
            let e = try JobEnding(text: ending.encoded())
            #expect(e == ending, "round \(round)")
        }
    }

    @Test("A file name cannot add a key: `a⏎tile=1.png` stays the stem; format 2 records are still read")
    func recordInjectionAndOldFormat() throws {
        let r = JobRecord(
            mode: .shift, tile: 48, stem: "a\ntile=1", options: "outputs=npy;out=/x;y=z\nmode=fast",
            preprocessing: Wire.Preprocessing(channelOrder: .bgr, rawScale: 1, scale: 1, mean: []),
            modelDigest: String(repeating: "cd", count: 32), imageCRC32: 7, imageBytes: 9)
        let text = r.encoded()
        #expect(!text.contains("\ntile=1\n") && !text.contains("\nmode=fast"), "\(text)")
        #expect(try JobRecord(text: text) == r)
        // A value that is not a valid escape: that record is refused, naming the key.
        do {
            _ = try JobRecord(text: text.replacingOccurrences(of: "stem=a%0A", with: "stem=a%0"))
            Issue.record("a record with a broken escape was accepted")
        } catch {
            #expect("\(error)".contains("stem"), "\(error)")
        }
        // Written by the previous version: values raw, a literal `%` kept as it is.
        let old = """
            format=2
            mode=dense
            tile=24
            stem=100%-tissue
            options=outputs=all;bit-depth=8
            channel-order=rgb
            raw-scale=3f800000
            scale=3f800000
            mean=42d00000,42ea0000
            model-sha256=\(String(repeating: "ab", count: 32))
            image-crc32=deadbeef
            image-bytes=12

            """
        let o = try JobRecord(text: old)
        #expect(
            o.stem == "100%-tissue" && o.options == "outputs=all;bit-depth=8" && o.preprocessing.mean == [104, 117])
        let oldEnding = try JobEnding(text: "state=2\ntasks=4\nmessage=50% done\nfile=100%.npy\n")
        #expect(oldEnding == JobEnding(state: .done, message: "50% done", tasks: 4, files: ["100%.npy"]))
    }

    @Test("Durable writes leave only the final file; job ids are the numeric folders")
    func durableStore() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tessera-store-fmt-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = JobStore(root: root)
        try DurableFile.createDirectory(store.directory(3))
        try DurableFile.createDirectory(store.jobsDirectory + "/notes")
        try DurableFile.write(Array("x".utf8), to: store.directory(3) + "/a.txt")
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.directory(3)) == ["a.txt"])
        #expect(store.jobIDs() == [3])
    }

    @Test("Straggler deadline: the unmeasured one before enough samples, then max(floor, factor × median)")
    func stragglerDeadline() {
        let p = StragglerPolicy(floorSeconds: 1, factor: 3, quantile: 0.5, minSamples: 3)
        #expect(p.deadline(samples: [0.1, 0.2]) == nil && p.unmeasuredSeconds == 300)
        #expect(p.deadline(samples: [0.1, 0.2, 0.3]) == 1)
        #expect(p.deadline(samples: [2, 1, 3, 100, 2]) == 6)
    }
}

@Suite("Job store: damaged entries at start")
struct DamagedStoreTests {
    /// A job of the small padded test net on `image` (PNG bytes) named `name`.
    /// A temporary store folder and a test image's PNG bytes (written beside it); `remove()` cleans both.
    struct Scratch {
        let root: String
        let image: [UInt8]
        init(_ tag: String, height: Int, width: Int) throws {
            root =
                FileManager.default.temporaryDirectory.appendingPathComponent("tessera-\(tag)-\(UUID().uuidString)")
                .path
            try ClusterFixture.writeImage(to: root + "-image.png", height: height, width: width)
            image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "-image.png")))
        }
        func remove() {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: root + "-image.png")
        }
    }

    /// Chaos audit 28: a coordinator killed after a shared submission created its partial map in the shared
    /// output, but before the job's record, left that map there for good (the restart removed only the job's
    /// folder). The submission names the map in its folder first; the restart removes it, and nothing else.
    @Test("A shared submission interrupted before its record: the restart removes the partial map it had made")
    func interruptedSharedSubmission() throws {
        let context = try ZMQContext()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-planned-\(UUID().uuidString)")
            .path
        let out = root + "-out"
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: out)
        }
        do {
            let (service, _) = try Self.startService(context, store: root)
            service.stop()
        }
        let jobs = JobStore(root: root)
        var maps: [String] = []
        for (id, owner) in [(7, root), (8, "/another/store"), (9, nil)] as [(UInt64, String?)] {
            let map = "\(out)/.slide\(id).zarr.partial-tok\(id)"
            try FileManager.default.createDirectory(atPath: map + "/0", withIntermediateDirectories: true)
            if let owner {
                try PartialOutputs.markOwner(map, storeRoot: owner, key: nil)
            }
            try PartialOutputs.plan(map, jobFolder: jobs.directory(id))
            maps.append(map)
        }
        let (service, _) = try Self.startService(context, store: root)
        defer { service.stop() }
        // Ours (recorded, or not yet): removed; another store's: kept. The job folders go either way.
        #expect(!FileManager.default.fileExists(atPath: maps[0]))
        #expect(FileManager.default.fileExists(atPath: maps[1]))
        #expect(!FileManager.default.fileExists(atPath: maps[2]))
        for id in [7, 8, 9] as [UInt64] { #expect(!FileManager.default.fileExists(atPath: jobs.directory(id))) }
    }

    /// A coordinator on `store` with in-process endpoints and no workers; its service and client endpoint.
    static func startService(_ context: ZMQContext, store: String) throws -> (CoordinatorService, String) {
        let id = UUID().uuidString
        let service = CoordinatorService(
            context: context,
            configuration: .init(
                workerEndpoint: "inproc://w-\(id)", clientEndpoint: "inproc://c-\(id)", storeDirectory: store),
            logger: Logger(label: "test.store"))
        _ = try service.start()
        return (service, "inproc://c-\(id)")
    }

    static func spec(_ name: String, image: [UInt8]) -> Wire.JobSpec {
        var options = JobOptions()
        options.engine.allowPadding = true
        return Wire.JobSpec(
            mode: .dense, tileSize: UInt32(ClusterFixture.tile),
            preprocessing: Wire.Preprocessing(channelOrder: .bgr, rawScale: 1, scale: 0.015625, mean: [104, 117, 123]),
            outputOptions: options.encoded,
            prototxt: .inline(name: "deploy.prototxt", bytes: ClusterFixture.bytes(ClusterFixture.prototxt)!),
            weights: .inline(name: "weights.caffemodel", bytes: ClusterFixture.bytes(ClusterFixture.weights)!),
            image: .inline(name: name, bytes: image))
    }

    @Test(
        "A damaged job entry fails that job with the file and reason; an interrupted one is skipped; the coordinator serves on"
    )
    func damagedEntries() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-damaged-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = JobStore(root: root)
        try DurableFile.createDirectory(store.directory(5))
        try DurableFile.write(Array("format=2\nmode=dense\ntile=abc\n".utf8), to: store.directory(5) + "/job.txt")
        try DurableFile.createDirectory(store.directory(6))  // no job.txt: submission interrupted
        // No job.txt, but the job ended: a damaged store, not an interrupted submission (security audit:
        // a finished job's folder was deleted with its outputs).
        try DurableFile.createDirectory(store.directory(7))
        try store.writeEnding(JobEnding(state: .done, message: "done", tasks: 4, files: ["m.npy"]), 7)
        // A receipts journal linked out of the store: not resumed, nothing written through it (security audit).
        try DurableFile.createDirectory(store.directory(9))
        try DurableFile.write(Array("format=2\nmode=dense\n".utf8), to: store.directory(9) + "/job.txt")
        let outside = root + "-outside.log"
        defer { try? FileManager.default.removeItem(atPath: outside) }
        #expect(FileManager.default.createFile(atPath: outside, contents: Data("kept\n".utf8)))
        try FileManager.default.createSymbolicLink(
            atPath: store.directory(9) + "/" + ReceiptJournal.fileName, withDestinationPath: outside)
        try DurableFile.createDirectory(store.directory(8))
        try DurableFile.write(Array("format=1\nmode=dense\n".utf8), to: store.directory(8) + "/job.txt")
        let context = try ZMQContext()
        let (service, endpoint) = try Self.startService(context, store: root)
        defer { service.stop() }
        let client = try TestClient(context, endpoint)
        let five = try client.status(5)
        #expect(five.state == .failed)
        #expect(five.message.contains("job.txt") && five.message.contains("tile=abc"), "\(five.message)")
        #expect(try client.status(6).state == .unknown)
        let nine = try client.status(9)
        #expect(nine.state == .failed && nine.message.contains("is a symbolic link"), "\(nine.message)")
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "kept\n")
        let seven = try client.status(7)
        #expect(seven.state == .failed && seven.message.contains("job.txt is missing"), "\(seven.message)")
        #expect(FileManager.default.fileExists(atPath: store.directory(7) + "/" + JobEnding.fileName))
        let eight = try client.status(8)
        #expect(eight.state == .failed && eight.message.contains("another version"), "\(eight.message)")
        // New ids continue after the highest one in the store.
        guard case .error(let text) = try client.request(.fetchRequest(Wire.FetchRequest(jobID: 10, fileName: "x")))
        else {
            Issue.record("fetch of an unknown job should fail")
            return
        }
        #expect(text.contains("no job 10"))
    }

    @Test("Jobs whose image names hold line breaks, = and ; resume after a restart; a finished one is still served")
    func resumeWithHostileNames() throws {
        let scratch = try Scratch("names", height: 40, width: 50)
        defer { scratch.remove() }
        let (root, image) = (scratch.root, scratch.image)
        let names = ["a\ntile=1.png", "b;mode=fast=%41\r\n\u{1F600}.png"]
        func spec(_ name: String) throws -> Wire.JobSpec { Self.spec(name, image: image) }
        let context = try ZMQContext()
        func start() throws -> (CoordinatorService, String) { try Self.startService(context, store: root) }
        do {  // No workers: both jobs stay unfinished.
            let (service, endpoint) = try start()
            defer { service.stop() }
            let client = try TestClient(context, endpoint)
            for (i, name) in names.enumerated() {
                guard case .submitted(let id) = try client.request(.submit(try spec(name))) else {
                    Issue.record("the submission of \(name.debugDescription) was refused")
                    return
                }
                #expect(id == UInt64(i + 1))
            }
        }
        // Job 2 ended while the coordinator was down: its ending names outputs with the same name.
        let stem2 = OutputOptions.stem(forInput: names[1])
        let files = ["\(stem2).npy", "\(stem2)\n=;.png"]
        let store = JobStore(root: root)
        try DurableFile.createDirectory(store.directory(2) + "/out")
        for f in files { try DurableFile.write([1, 2, 3], to: store.directory(2) + "/out/" + f) }
        try store.writeEnding(JobEnding(state: .done, message: "done\nin two lines", tasks: 6, files: files), 2)

        let (service, endpoint) = try start()
        defer { service.stop() }
        let client = try TestClient(context, endpoint)
        let one = try client.status(1)
        #expect(one.state == .queued || one.state == .running, "\(one.state): \(one.message)")
        // 40×50 pixels in 24-pixel tiles: 6 tasks (an injected `tile=1` would make 2 000).
        #expect(one.message.contains("resumed: 0/6 tiles"), "\(one.message)")
        let two = try client.status(2)
        #expect(two.state == .done && two.outputFiles == files, "\(two.state): \(two.message)")
        #expect(two.message == "done\nin two lines")
        guard
            case .fetchData(let data) = try client.request(
                .fetchRequest(Wire.FetchRequest(jobID: 2, fileName: files[1])))
        else {
            Issue.record("the output named with a line break could not be fetched")
            return
        }
        #expect(data.bytes == [1, 2, 3])
    }

    /// Review: a job begun by a release that placed a padded net's windows elsewhere (centred on the patch)
    /// resumed with the new placement, so its stored tiles and new ones were 1–3 pixels apart.
    @Test(
        "A job an earlier release began whose net's windows moved since is failed at resume, not mixed; current ones resume"
    )
    func earlierPlacementNotResumed() throws {
        let scratch = try Scratch("placement", height: 40, width: 50)
        defer { scratch.remove() }
        let context = try ZMQContext()
        func start() throws -> (CoordinatorService, String) { try Self.startService(context, store: scratch.root) }
        do {  // No workers: both jobs stay unfinished.
            let (service, endpoint) = try start()
            defer { service.stop() }
            let client = try TestClient(context, endpoint)
            for name in ["old.png", "new.png"] {
                guard case .submitted = try client.request(.submit(Self.spec(name, image: scratch.image))) else {
                    Issue.record("the submission was refused")
                    return
                }
            }
        }
        // Job 1's record as an earlier release wrote it: no window-placement line.
        let file = JobStore(root: scratch.root).directory(1) + "/job.txt"
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.contains("window-placement=\(TaskGeometry.placementVersion)"), "\(text)")
        let old =
            text.split(separator: "\n").filter { !$0.hasPrefix("window-placement=") }.joined(separator: "\n") + "\n"
        try DurableFile.write(Array(old.utf8), to: file)
        #expect(try JobRecord(text: old).placement == nil)
        let (service, endpoint) = try start()
        defer { service.stop() }
        let client = try TestClient(context, endpoint)
        let one = try client.status(1)
        #expect(
            one.state == .failed && one.message.contains("begun by an earlier Tessera release")
                && one.message.contains("submit the job again"), "\(one.state): \(one.message)")
        let two = try client.status(2)
        #expect(two.state == .queued || two.state == .running, "\(two.state): \(two.message)")
    }

    @Test("When state.txt cannot be written (a full disk), the ending goes into the reserved slot and is read back")
    func endingSlot() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-slot-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = JobStore(root: root)
        try DurableFile.createDirectory(store.directory(1))
        try store.reserveEndingSlot(1)
        #expect(try store.readEnding(1) == nil, "an empty slot is no ending")
        // A folder named state.txt with an empty slot: damage, named (security audit: resumed as unfinished).
        try FileManager.default.createDirectory(
            atPath: store.directory(1) + "/" + JobEnding.fileName, withIntermediateDirectories: false)
        #expect(throws: ClusterError.self) { try store.readEnding(1) }
        try FileManager.default.removeItem(atPath: store.directory(1) + "/" + JobEnding.fileName)
        // state.txt cannot be created: a folder of that name stands in for ENOSPC.
        try FileManager.default.createDirectory(
            atPath: store.directory(1) + "/" + JobEnding.fileName, withIntermediateDirectories: false)
        let long = String(repeating: "task 3 failed: no space left on device; ", count: 300)
        let ending = JobEnding(state: .cancelled, message: long, tasks: 12, files: [])
        try store.writeEnding(ending, 1)
        let read = try #require(try store.readEnding(1))
        #expect(read.state == .cancelled && read.tasks == 12, "the cancellation must survive a restart")
        #expect(read.message.hasPrefix("task 3 failed") && read.message.utf8.count < JobStore.endingSlotSize)
        // Without a slot (an entry from an older version) the failure is reported.
        try DurableFile.createDirectory(store.directory(2))
        try FileManager.default.createDirectory(
            atPath: store.directory(2) + "/" + JobEnding.fileName, withIntermediateDirectories: false)
        #expect(throws: ClusterError.self) { try store.writeEnding(ending, 2) }
    }

    @Test(
        "A retried submit (same token) gets the same job, before and after a restart; an interrupted entry is removed"
    )
    func idempotentSubmit() throws {
        let scratch = try Scratch("token", height: 30, width: 30)
        defer { scratch.remove() }
        let (root, image) = (scratch.root, scratch.image)
        var spec = Self.spec("a.png", image: image)
        var options = try JobOptions(encoded: spec.outputOptions)
        options.token = "client-7f3a"
        spec.outputOptions = options.encoded
        let store = JobStore(root: root)
        func serve(_ body: (borrowing TestClient) throws -> Void) throws {
            let id = UUID().uuidString
            let service = CoordinatorService(
                context: try ZMQContext(),
                configuration: .init(
                    workerEndpoint: "inproc://w-\(id)", clientEndpoint: "inproc://c-\(id)", storeDirectory: root),
                logger: Logger(label: "test.token"))
            _ = try service.start()
            defer { service.stop() }
            try body(try TestClient(service.context, "inproc://c-\(id)"))
        }
        try serve { client in
            let first = try client.request(.submit(spec))
            let retry = try client.request(.submit(spec))
            var other = spec
            other.outputOptions = Self.spec("a.png", image: image).outputOptions  // no token: a new job
            let second = try client.request(.submit(other))
            #expect(first == .submitted(jobID: 1))
            #expect(retry == .submitted(jobID: 1), "the retry names the first job")
            #expect(second == .submitted(jobID: 2))
        }
        #expect(store.jobIDs() == [1, 2])
        try DurableFile.createDirectory(store.directory(3))  // an interrupted submission: no job.txt
        try serve { client in
            let again = try client.request(.submit(spec))
            #expect(again == .submitted(jobID: 1), "after a restart too")
        }
        #expect(store.jobIDs() == [1, 2], "the interrupted entry is removed at start")
    }

    @Test("The store is owner-only: folders 0700, files 0600; an older store's jobs folder is restricted at start")
    func permissions() throws {
        let scratch = try Scratch("perm", height: 30, width: 30)
        defer { scratch.remove() }
        let (root, image) = (scratch.root, scratch.image)
        func mode(_ path: String) -> mode_t {
            var info = stat()
            return stat(path, &info) == 0 ? info.st_mode & 0o777 : 0xFFFF
        }
        let oldUmask = umask(0o022)
        defer { umask(oldUmask) }
        let context = try ZMQContext()
        let store = JobStore(root: root)
        do {
            let id = UUID().uuidString
            let service = CoordinatorService(
                context: context,
                configuration: .init(
                    workerEndpoint: "inproc://w-\(id)", clientEndpoint: "inproc://c-\(id)", storeDirectory: root),
                logger: Logger(label: "test.perm"))
            _ = try service.start()
            defer { service.stop() }
            let client = try TestClient(context, "inproc://c-\(id)")
            guard case .submitted = try client.request(.submit(Self.spec("slide.png", image: image))) else {
                Issue.record("the submission was refused")
                return
            }
        }
        for folder in [root, store.jobsDirectory, store.directory(1), store.directory(1)] {
            #expect(mode(folder) == 0o700, "\(folder): 0\(String(mode(folder), radix: 8))")
        }
        for file in ["job.txt", "image.png", "deploy.prototxt", "weights.caffemodel"] {
            let path = store.directory(1) + "/" + file
            #expect(mode(path) == 0o600, "\(path): 0\(String(mode(path), radix: 8))")
        }
        // A store written by an older version: its jobs folder is made owner-only at start.
        #expect(chmod(store.jobsDirectory, 0o755) == 0)
        let id = UUID().uuidString
        // A context of its own: libzmq unbinds a closed socket's inproc endpoints (the
        // first service's ZAP handler) asynchronously, so the same context may still hold them.
        let service = CoordinatorService(
            context: try ZMQContext(),
            configuration: .init(
                workerEndpoint: "inproc://w-\(id)", clientEndpoint: "inproc://c-\(id)", storeDirectory: root),
            logger: Logger(label: "test.perm"))
        _ = try service.start()
        service.stop()
        #expect(mode(store.jobsDirectory) == 0o700)
    }
}

@Suite("Authorized-keys folder permissions")
struct KeyFolderTests {
    @Test("A key folder writable by its group or by everyone is reported; an owner-only one is not")
    func keyFolderWarning() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-keys-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(chmod(dir, 0o777) == 0)
        let world = CoordinatorService.keyFolderWarning(dir)
        #expect(world?.contains("writable by everyone") == true && world?.contains("0777") == true, "\(world ?? "nil")")
        #expect(chmod(dir, 0o775) == 0)
        #expect(CoordinatorService.keyFolderWarning(dir)?.contains("writable by its group") == true)
        #expect(chmod(dir, 0o755) == 0)
        #expect(CoordinatorService.keyFolderWarning(dir) == nil)
        #expect(chmod(dir, 0o700) == 0)
        #expect(CoordinatorService.keyFolderWarning(dir) == nil)
    }
}
