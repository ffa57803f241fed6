import Foundation
import Testing

@testable import CoordinatorService
@testable import TesseraCluster
@testable import TesseraCore
@testable import TesseraImage
@testable import TesseraWire
@testable import TestSupport

/// Shared-storage jobs on real processes (docs/ARCHITECTURE.md §7): workers read
/// their regions and write the map's chunks themselves, the coordinator schedules
/// and commits receipts. The map must equal the in-process one and the upload
/// job's byte for byte, in every mode, and survive killed workers, a killed
/// coordinator, a damaged chunk and a worker killed mid-write.
@Suite("Shared-storage jobs: same map as in-process and upload jobs; faults", .serialized)
struct SharedStorageTests {
    /// Starts a coordinator and `count` workers that share `root`.
    func cluster(
        _ group: ProcessGroup, root: String, workers count: Int, delayMs: Int = 0, extra: [String] = []
    )
        throws -> (workers: String, clients: String)
    {
        let endpoints = try group.startCoordinator(
            extra: ["--shared-root", root, "--heartbeat-ms", "300"] + extra)
        for i in 1...count { _ = try worker(group, endpoints.workers, "w\(i)", root: root, delayMs: delayMs) }
        return endpoints
    }

    func worker(
        _ group: ProcessGroup, _ endpoint: String, _ name: String, root: String, delayMs: Int
    ) throws
        -> Process
    {
        try group.start(
            "tessera-worker",
            [
                "--coordinator", endpoint, "--threads", "1", "--name", name, "--heartbeat-ms", "300",
                "--shared-root", root, "--debug-task-delay-ms", "\(delayMs)",
            ], log: name)
    }

    func submit(
        _ group: ProcessGroup, _ clients: String, image: String, out: String, mode: String, shared: Bool,
        log: String
    ) throws -> Process {
        try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients, "--reconnect-timeout", "60"] + ClusterFixture.modelFlags
                + ["--mode", mode, "--tile", "\(ClusterFixture.tile)", "--wait", "--out", out]
                + (shared ? ["--shared"] : ["--outputs", "npy"]) + [image], log: log)
    }

    /// `export STORE --outputs npy`: the shared job's map as `.npy` (read from its chunks).
    func exportNPY(_ group: ProcessGroup, store: String, out: String) throws -> [UInt8]? {
        let p = try group.start(
            "tessera-coordinator", ["export", store, "--outputs", "npy", "--out", out], log: "export")
        #expect(group.wait(p, timeout: 60) == 0, "\(group.log("export"))")
        let stem = ((store as NSString).lastPathComponent as NSString).deletingPathExtension
        return ClusterFixture.bytes("\(out)/\(stem).npy")
    }

    @Test("Every mode: the shared-storage map equals the upload job's and the in-process map, byte for byte")
    func sameMapEveryMode() throws {
        let group = try ProcessGroup("shared-modes")
        defer { group.stop() }
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let (_, clients) = try cluster(group, root: root, workers: 2)
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        for mode in ["naive", "fast", "shift", "dense"] {
            let expected = try ClusterFixture.localNPY(
                image: image, mode: .init(rawValue: mode)!, scratch: group.directory)
            let shared = try submit(
                group, clients, image: image, out: "\(root)/\(mode)", mode: mode, shared: true, log: "shared-\(mode)")
            let upload = try submit(
                group, clients, image: image, out: "\(group.directory)/upload-\(mode)", mode: mode, shared: false,
                log: "upload-\(mode)")
            #expect(
                group.wait(shared, timeout: 120) == 0, "\(group.log("shared-\(mode)"))\n\(group.log("coordinator"))")
            #expect(group.wait(upload, timeout: 120) == 0, "\(group.log("upload-\(mode)"))")
            let store = "\(root)/\(mode)/tissue.zarr"
            #expect(group.log("shared-\(mode)").contains(store), "submit --wait prints the map's path")
            #expect(
                try exportNPY(group, store: store, out: "\(group.directory)/export-\(mode)") == expected,
                "\(mode): the shared-storage map differs from the in-process one")
            #expect(
                ClusterFixture.bytes("\(group.directory)/upload-\(mode)/tissue.npy") == expected,
                "\(mode): the upload job's map differs from the in-process one")
        }
        let log = group.log("coordinator")
        #expect(log.contains("storage=shared") && log.contains("storage=upload"), "\(log)")
    }

    @Test("A worker reads the next tile's region while the current one computes; the map is unchanged")
    func readAhead() throws {
        let group = try ProcessGroup("shared-read-ahead")
        defer { group.stop() }
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let port = try freeLoopbackPort()
        let endpoints = try group.startCoordinator(extra: ["--shared-root", root, "--credit", "3"])
        try group.start(
            "tessera-worker",
            [
                "--coordinator", endpoints.workers, "--threads", "1", "--name", "w1", "--shared-root", root,
                "--metrics-address", "\(port)", "--debug-task-delay-ms", "30",
            ], log: "w1")
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let expected = try ClusterFixture.localNPY(image: image, mode: .dense, scratch: group.directory)
        let job = try submit(
            group, endpoints.clients, image: image, out: root + "/out", mode: "dense", shared: true, log: "submit")
        #expect(group.wait(job, timeout: 120) == 0, "\(group.log("submit"))\n\(group.log("coordinator"))")
        #expect(
            try exportNPY(group, store: root + "/out/tissue.zarr", out: group.directory + "/export") == expected,
            "the map computed with read-ahead differs from the in-process one")
        let metrics = try PrometheusText(try httpGet(port: port, path: "/metrics").body)
        let done = try #require(metrics.value("tessera_tasks_computed_total", ["outcome": "done"]))
        let ahead = try #require(metrics.value("tessera_regions_prefetched_total"))
        // The worker holds up to 3 tasks (the credit), and each waits 30 ms before it computes,
        // so the next tile has arrived when one starts: all but the first are read ahead.
        #expect(done >= 8 && ahead >= done * 3 / 4, "\(ahead) of \(done) tiles read ahead")
    }

    /// A coordinator sharing `root` (no worker yet) and the fixture image in it, with its in-process map.
    func fakeReceiptCluster(
        _ group: ProcessGroup
    ) throws -> (
        root: String, workers: String, clients: String, image: String, expected: [UInt8]?
    ) {
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let (workers, clients) = try group.startCoordinator(extra: ["--shared-root", root])
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let expected = try ClusterFixture.localNPY(image: image, mode: .dense, scratch: group.directory)
        return (root, workers, clients, image, expected)
    }

    /// The dense job's map in `root/out` equals the in-process one.
    func expectMap(_ group: ProcessGroup, root: String, _ expected: [UInt8]?) throws {
        #expect(
            try exportNPY(group, store: root + "/out/tissue.zarr", out: group.directory + "/export") == expected,
            "the map differs from the in-process one")
    }

    /// A receipt for `spec`'s tile naming the right chunks, which nobody wrote.
    static func unwrittenReceipt(_ spec: Wire.TileTaskSpec) throws -> WireMessage {
        let layout = try MapStore.open(at: spec.storePath).layout
        let tile = try #require(layout.tile(for: TaskCodec.pixelRect(spec.tile)))
        let chunks = (0..<layout.levels).map {
            Wire.TileReceipt.Chunk(key: layout.chunkKey(tile, level: $0), size: 4096, crc32: 7)
        }
        return .receipt(Wire.TileReceipt(jobID: spec.jobID, taskID: spec.taskID, attempt: spec.attempt, chunks: chunks))
    }

    /// Ops audit: a worker that wrote nothing (a fake, or one whose "shared" folder is another disk) had its
    /// receipts accepted, and the job ended "done" with a NaN map. The finest chunk must now be in the store
    /// with the receipt's size; otherwise the tile goes to another worker.
    @Test("A receipt whose chunk is not in the store is refused; another worker computes the tile")
    func receiptWithoutChunk() throws {
        let group = try ProcessGroup("shared-unwritten-receipt")
        defer { group.stop() }
        let (root, workers, clients, image, expected) = try fakeReceiptCluster(group)
        let context = try ZMQContext()
        let fake = try DistributedTests.registeredWorker(context, workers, hello: DistributedTests.fakeHello("liar"))
        let job = try submit(group, clients, image: image, out: root + "/out", mode: "dense", shared: true, log: "c")
        let task = try #require(try DistributedTests.next(fake, { if case .tileTask = $0 { true } else { false } }))
        guard case .tileTask(let spec) = task else { return }
        try fake.send(try Self.unwrittenReceipt(spec))
        let deadline = Date().addingTimeInterval(20)
        while !group.log("coordinator").contains("rejected a receipt whose chunk is not in the map store"),
            Date() < deadline
        {
            usleep(50_000)
        }
        try fake.send(.goodbye([spec.ref]))
        _ = try worker(group, workers, "honest", root: root, delayMs: 0)
        #expect(group.wait(job, timeout: 120) == 0, "\(group.log("c"))\n\(group.log("coordinator"))")
        let log = group.log("coordinator")
        #expect(log.contains("rejected a receipt whose chunk is not in the map store"), "\(log)")
        try expectMap(group, root: root, expected)
    }

    /// Chaos audit 28: chunk files deleted from the partial map while the job ran (after their receipts were
    /// accepted) left a job "done" with NaN holes. Every receipt's chunks are checked again before the map is
    /// called done; here one is gone, so the job fails, naming it, and no map is renamed into place.
    @Test("A chunk deleted from the shared map while the job runs fails the job at its end, naming the chunk")
    func chunkDeletedWhileRunning() throws {
        let group = try ProcessGroup("shared-chunk-deleted")
        defer { group.stop() }
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let (_, clients) = try cluster(group, root: root, workers: 1, delayMs: 250)
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let job = try submit(group, clients, image: image, out: root + "/out", mode: "dense", shared: true, log: "c")
        // The level-0 chunk of the first tile whose receipt the coordinator accepted (journalled): deleted.
        var deleted: String?
        let journal = group.directory + "/store/jobs/1/receipts.log"
        let deadline = Date().addingTimeInterval(60)
        while deleted == nil, Date() < deadline {
            let first = (try? String(contentsOfFile: journal, encoding: .utf8))?.split(separator: "\n").first
            let key = first?.split(separator: " ").dropFirst().first?.split(separator: ":").first
            let out = root + "/out"
            if let key,
                let partial = ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).first(where: {
                    $0.contains(".partial-")
                })
            {
                try FileManager.default.removeItem(atPath: "\(out)/\(partial)/\(key)")
                deleted = String(key)
            } else {
                usleep(20_000)
            }
        }
        #expect(deleted != nil, "no chunk appeared: \(group.log("coordinator"))")
        let status = group.wait(job, timeout: 120)
        let log = group.log("c") + group.log("coordinator")
        #expect(status != nil && status != 0, "the job ended done: \(log)")
        #expect(log.contains("changed on the shared storage"), "\(log)")
        #expect(!FileManager.default.fileExists(atPath: root + "/out/tissue.zarr"), "the map was renamed into place")
    }

    /// A worker whose receipts name chunks the coordinator cannot see (its "shared" folder is another disk) gets
    /// none of the job's tasks once one is rejected, while an honest worker is there: it took task after task.
    @Test("A worker whose receipts are rejected gets no more of the job's tasks while another worker can take them")
    func rejectedReceiptsStopTasks() throws {
        let group = try ProcessGroup("shared-rejected-receipts")
        defer { group.stop() }
        let (root, workers, clients, image, expected) = try fakeReceiptCluster(group)
        let context = try ZMQContext()
        let fake = try DistributedTests.registeredWorker(
            context, workers, hello: DistributedTests.fakeHello("elsewhere"))
        _ = try worker(group, workers, "honest", root: root, delayMs: 20)
        // Both registered before the job: alone, the fake would rightly get the tasks (and fail them).
        let client = try TestClient(context, clients)
        let up = Date().addingTimeInterval(30)
        while (try? client.status(nil).workers) != 2 && Date() < up { usleep(50_000) }
        let job = try submit(group, clients, image: image, out: root + "/out", mode: "dense", shared: true, log: "c")
        // The fake answers every task with a receipt of chunks it never wrote, until the job ends.
        var given = 0
        let deadline = Date().addingTimeInterval(120)
        while job.isRunning && Date() < deadline {
            guard try fake.waitForMessage(timeoutMilliseconds: 50), let e = try fake.receiveWire(dontWait: true),
                let m = try? e.message.get()
            else { continue }
            switch m {
            case .heartbeat: try fake.send(.heartbeat)
            case .tileTask(let spec):
                given += 1
                try fake.send(try Self.unwrittenReceipt(spec))
            default: break
            }
        }
        #expect(group.wait(job, timeout: 10) == 0, "\(group.log("c"))\n\(group.log("coordinator"))")
        // At most the tasks it held when its first receipt was rejected (its credit), not one after another.
        #expect(given >= 1 && given <= 4, "the worker whose receipts were rejected was given \(given) tasks")
        try expectMap(group, root: root, expected)
    }

    /// A cancelled job's tasks still on a worker end in failed tile writes (its map is
    /// removed): those reports are expected, not refusals of a misbehaving worker, and
    /// no partial map reappears.
    @Test("Cancelling a shared job: the workers' late reports are not refusals, and its map stays removed")
    func cancelledJobLateReports() throws {
        let group = try ProcessGroup("shared-cancel")
        defer { group.stop() }
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let (port, workerPort) = (try freeLoopbackPort(), try freeLoopbackPort())
        let endpoints = try group.startCoordinator(
            extra: ["--shared-root", root, "--heartbeat-ms", "300", "--metrics-address", "127.0.0.1:\(port)"])
        try group.start(
            "tessera-worker",
            [
                "--coordinator", endpoints.workers, "--threads", "1", "--name", "w1", "--heartbeat-ms", "300",
                "--shared-root", root, "--debug-task-delay-ms", "1500", "--metrics-address", "127.0.0.1:\(workerPort)",
            ], log: "w1")
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let job = try submit(
            group, endpoints.clients, image: image, out: root + "/out", mode: "dense", shared: true, log: "c1")
        let started = Date().addingTimeInterval(30)
        while !group.log("coordinator").contains("job started") && Date() < started { usleep(50_000) }
        usleep(300_000)  // the worker holds its tasks (each waits 1.5 s before it computes)
        let cancel = try group.start(
            "tessera-coordinator", ["cancel", "1", "--coordinator", endpoints.clients], log: "cancel")
        #expect(group.wait(cancel, timeout: 30) == 0, "\(group.log("cancel"))")
        #expect(group.wait(job, timeout: 30) != 0, "\(group.log("c1"))")
        // Both held tasks end on the worker: the one it computes (a failed write, or a tile written before the map
        // was removed), and the one queued behind it, dropped when the coordinator revokes the job.
        func dropped() -> Int {
            group.log("w1").split(separator: "\n").filter { $0.contains("tasks of an ended job dropped") }
                .compactMap { line in
                    line.range(of: "tasks=").flatMap { Int(line[$0.upperBound...].prefix(while: \.isNumber)) }
                }
                .reduce(0, +)
        }
        let deadline = Date().addingTimeInterval(30)
        var ended = 0.0
        repeat {
            let m = try? PrometheusText(try httpGet(port: workerPort, path: "/metrics").body)
            ended =
                (m?.value("tessera_tasks_computed_total", ["outcome": "failed"]) ?? 0)
                + (m?.value("tessera_tasks_computed_total", ["outcome": "done"]) ?? 0) + Double(dropped())
            if ended >= 2 { break }
            usleep(100_000)
        } while Date() < deadline
        #expect(ended == 2 && dropped() >= 1, "\(group.log("w1"))")
        usleep(500_000)  // their reports reach the coordinator
        let log = group.log("coordinator")
        #expect(!log.contains("ignored a failure report") && !log.contains("rejected a result"), "\(log)")
        let metrics = try PrometheusText(try httpGet(port: port, path: "/metrics").body)
        #expect((metrics.value("tessera_refusals_total", ["reason": "not-assigned"]) ?? 0) == 0)
        #expect(!FileManager.default.fileExists(atPath: root + "/out/tissue.zarr"), "a partial map reappeared")
    }

    /// Found by a user audit: a second job into the same --out replaced the first's map
    /// (both reported done), and a user's folder named like the map was deleted.
    @Test("A shared job whose map another running job writes is refused; a folder that is not a map is never replaced")
    func outputClashes() throws {
        let group = try ProcessGroup("shared-clash")
        defer { group.stop() }
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root + "/out", withIntermediateDirectories: true)
        let (_, clients) = try cluster(group, root: root, workers: 1, delayMs: 300)
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let first = try submit(group, clients, image: image, out: root + "/out", mode: "dense", shared: true, log: "c1")
        // The first job is registered (its tasks are slow) before the second comes.
        let deadline = Date().addingTimeInterval(20)
        while !group.log("coordinator").contains("job started") && Date() < deadline { usleep(50_000) }
        let second = try submit(group, clients, image: image, out: root + "/out", mode: "fast", shared: true, log: "c2")
        #expect(group.wait(second, timeout: 30) != 0)
        #expect(group.log("c2").contains("is writing \(root)/out/tissue.zarr already"), "\(group.log("c2"))")
        #expect(group.wait(first, timeout: 120) == 0, "\(group.log("c1"))")
        // fetch cannot download a folder on the shared storage: it says where the map is
        // (it failed with "Is a directory" and left an empty partial file per try).
        let fetched = group.directory + "/fetched"
        let f = try group.start(
            "tessera-coordinator", ["fetch", "--coordinator", clients, "1", "--out", fetched], log: "fetch")
        #expect(group.wait(f, timeout: 30) != 0)
        #expect(group.log("fetch").contains("job 1 is a shared-storage job: tissue.zarr lies in the --out folder"))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: fetched)) ?? []).isEmpty)

        // A folder of the map's name that Tessera did not write: refused, left as it was.
        let mine = root + "/mine"
        try FileManager.default.createDirectory(atPath: mine + "/tissue.zarr", withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: mine + "/tissue.zarr/important.txt"))
        let third = try submit(group, clients, image: image, out: mine, mode: "dense", shared: true, log: "c3")
        #expect(group.wait(third, timeout: 30) != 0)
        #expect(group.log("c3").contains("is not a Tessera map"), "\(group.log("c3"))")
        #expect(FileManager.default.fileExists(atPath: mine + "/tissue.zarr/important.txt"))
        // A finished map of that name is replaced by a new run, as before, and what `export` wrote from the old one
        // is removed with it (docs audit 49 F1: a TIFF stayed beside the new map); other files stay.
        let e = try group.start(
            "tessera-coordinator",
            ["export", root + "/out/tissue.zarr", "--outputs", "npy,tiff,prob", "--out", root + "/out"], log: "export")
        #expect(group.wait(e, timeout: 60) == 0, "\(group.log("export"))")
        try Data("mine".utf8).write(to: URL(fileURLWithPath: root + "/out/tissue.notes.txt"))
        let again = try submit(group, clients, image: image, out: root + "/out", mode: "fast", shared: true, log: "c4")
        #expect(group.wait(again, timeout: 120) == 0, "\(group.log("c4"))")
        let left = Set((try? FileManager.default.contentsOfDirectory(atPath: root + "/out")) ?? [])
        #expect(left == ["tissue.zarr", "tissue.notes.txt"], "\(left)")
    }

    @Test("Paths outside --shared-root are refused with the reason; a worker without it refuses shared tasks")
    func sharedRootEnforced() throws {
        let group = try ProcessGroup("shared-root")
        defer { group.stop() }
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let (_, clients) = try group.startCoordinator(extra: ["--shared-root", root])
        let outside = group.directory + "/elsewhere.png"
        try ClusterFixture.writeImage(to: outside)
        let p = try submit(group, clients, image: outside, out: root + "/out", mode: "dense", shared: true, log: "c1")
        #expect(group.wait(p, timeout: 30) != 0)
        #expect(group.log("c1").contains("outside the coordinator's --shared-root"), "\(group.log("c1"))")
        // The --out the client made for it is removed again (CURVE audit 30 F13: an empty folder was left).
        #expect(!FileManager.default.fileExists(atPath: root + "/out"), "the refused job's --out is left")

        // A worker started without --shared-root refuses the task with a message that says how to fix it; with no
        // other worker, the job waits for one that can reach its files and says why (user review F31: it failed
        // after 3 tries).
        let (workers, clients2) = try group.startCoordinator(extra: ["--shared-root", root], name: "coordinator-2")
        _ = try group.start(
            "tessera-worker", ["--coordinator", workers, "--threads", "1", "--name", "plain"], log: "plain")
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let q = try submit(group, clients2, image: image, out: root + "/out2", mode: "dense", shared: true, log: "c2")
        let client = try TestClient(try ZMQContext(), clients2)
        var waiting: Wire.JobSummary?
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let j = try? client.status(1, query: Wire.StatusQuery()).details?.jobs.first,
                j.message.contains("start it with --shared-root")
            {
                waiting = j
                break
            }
            usleep(100_000)
        }
        // Refused is not taken: the job is still queued (audit 44 D2: it read "running").
        #expect(waiting?.waitingForWorkers == true && waiting?.state == .queued, "\(String(describing: waiting))")
        #expect(
            waiting?.message.hasPrefix("waiting for a worker whose --shared-root holds its files") == true,
            "\(String(describing: waiting))")
        #expect(waiting?.failed == 0, "a refusal is not a failure: \(String(describing: waiting))")
        // The cluster waits for workers too: the one connected may take none of the tasks (audit 45 S4: "running").
        let cluster = try group.start(
            "tessera-coordinator", ["status", "--coordinator", clients2, "--json"], log: "cluster-status")
        #expect(group.wait(cluster, timeout: 30) == 0)
        #expect(
            group.log("cluster-status").contains("\"state\":\"waiting_for_workers\""), "\(group.log("cluster-status"))")
        // The client says why it waits, once, after 10 s.
        let told = Date().addingTimeInterval(30)
        while !group.log("c2").contains("job 1 is waiting: waiting for a worker whose --shared-root") && Date() < told {
            usleep(200_000)
        }
        #expect(group.log("c2").contains("start it with --shared-root"), "\(group.log("c2"))")
        #expect(group.log("coordinator-2").contains("no connected worker can reach a shared-storage job's files"))
        #expect(!FileManager.default.fileExists(atPath: root + "/out2/tissue.zarr"), "no map before the job ends")
        // A worker that can reach the files joins: the job completes, with no task failed.
        _ = try worker(group, workers, "reaching", root: root, delayMs: 0)
        #expect(group.wait(q, timeout: 120) == 0, "\(group.log("c2"))\n\(group.log("coordinator-2"))")
        let first = try client.status(1)
        #expect(first.state == .done && first.tasksFailed == 0, "\(first)")
        #expect(FileManager.default.fileExists(atPath: root + "/out2/tissue.zarr"))
        // With both connected, the plain worker's refusals are not failures: the tasks go to the other (operator
        // audit: 254 failed tasks on a job that succeeded).
        let r = try submit(group, clients2, image: image, out: root + "/out3", mode: "dense", shared: true, log: "c3")
        #expect(group.wait(r, timeout: 60) == 0, "\(group.log("c3"))\n\(group.log("coordinator-2"))")
        let status = try client.status(2)
        #expect(status.state == .done && status.tasksFailed == 0, "\(status)")
        // A task that fails on the one worker that can reach the files is tried there again (2 s, then 6 s) and
        // the job fails after 3 tries, naming the tile. Counting the plain worker as one it had not failed on, the
        // coordinator waited for it for good and `submit --wait` never returned (audit 44 D1).
        let bad = root + "/bad.tif"
        _ = try SlideMapTests.python(
            """
            import sys, numpy as np, tifffile
            a = np.random.default_rng(5).integers(0, 255, (512, 512, 3), dtype=np.uint8)
            tifffile.imwrite(sys.argv[1], a, tile=(256, 256), compression='zlib', photometric='rgb')
            with tifffile.TiffFile(sys.argv[1]) as f:
                off, n = f.pages[0].dataoffsets[1], f.pages[0].databytecounts[1]
            data = bytearray(open(sys.argv[1], 'rb').read()); data[off:off + n] = bytes(n)
            open(sys.argv[1], 'wb').write(bytes(data))
            """, [bad])
        let f = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients2] + ClusterFixture.modelFlags
                + ["--mode", "dense", "--tile", "256", "--wait", "--out", root + "/out4", "--shared", bad],
            log: "c4")
        #expect(group.wait(f, timeout: 90) == 1, "\(group.log("c4"))\n\(group.log("coordinator-2"))")
        #expect(group.log("c4").contains("failed 3 times") && group.log("c4").contains("corrupt"), "\(group.log("c4"))")
        // Skipped, the map is done with that tile empty, and the client says so (audit 53 F10: it printed the map's
        // path and nothing else).
        let g = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients2] + ClusterFixture.modelFlags
                + [
                    "--mode", "dense", "--tile", "128", "--corrupt-tiles", "skip", "--wait", "--out", root + "/out5",
                    "--shared", bad,
                ],
            log: "c5")
        #expect(group.wait(g, timeout: 90) == 0, "\(group.log("c5"))\n\(group.log("coordinator-2"))")
        #expect(
            group.log("c5").contains("warning") && group.log("c5").contains("map tiles left empty for damaged input")
                && group.log("c5").contains("left empty (fill value): input damaged (first at y 0 x "),
            "\(group.log("c5"))")
    }

    @Test(
        "Faults: kill -9 a worker and the coordinator mid-job, a damaged chunk, a write killed half-way: identical map, verified tiles kept"
    )
    func faults() throws {
        let cluster = try RestartableCluster("shared-faults")
        defer { cluster.group.stop() }
        let (group, root, workers, clients) = (cluster.group, cluster.root, cluster.workers, cluster.clients)
        func coordinator(_ log: String) throws -> Process { try cluster.coordinator(log) }
        let coord = try coordinator("coordinator-1")
        let w = try (1...3).map { try worker(group, workers, "w\($0)", root: root, delayMs: 80) }
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let expected = try ClusterFixture.localNPY(image: image, mode: .dense, scratch: group.directory)
        let client = try submit(
            group, clients, image: image, out: root + "/out", mode: "dense", shared: true, log: "client")
        let fault = FaultToleranceTests()
        let s1 = try fault.waitFor(clients, "a quarter of the tasks") {
            $0.tasksDone * 4 >= $0.tasksQueued + $0.tasksRunning + $0.tasksDone
        }
        let total = Int(s1.tasksQueued + s1.tasksRunning + s1.tasksDone)
        kill(w[0].processIdentifier, SIGKILL)
        _ = try fault.waitFor(clients, "half of the tasks") { Int($0.tasksDone) * 2 >= total }
        usleep(200_000)  // past a group commit of the journal
        kill(coord.processIdentifier, SIGKILL)
        #expect(group.wait(coord, timeout: 10) != nil)

        // The store under its temporary name: damage one committed chunk, and leave a
        // half-written chunk as a worker killed mid-write would.
        let partial = try #require(
            try FileManager.default.contentsOfDirectory(atPath: root + "/out").first { $0.contains(".partial-") })
        let store = "\(root)/out/\(partial)"
        #expect(
            !FileManager.default.fileExists(atPath: root + "/out/tissue.zarr"), "no map is presented before the end")
        let journal = try String(contentsOfFile: group.directory + "/store/jobs/1/receipts.log", encoding: .utf8)
        let committed = journal.split(separator: "\n")
        #expect(committed.count >= total / 3 && committed.count < total, "journal: \(committed.count)/\(total)")
        let key = try #require(committed.first?.split(separator: " ").dropFirst().first?.split(separator: ":").first)
        var chunk = try #require(ClusterFixture.bytes("\(store)/\(key)"))
        chunk[chunk.count / 2] ^= 0x10
        try Data(chunk).write(to: URL(fileURLWithPath: "\(store)/\(key)"))
        let torn = "\(store)/0/0/0/.5.tmp-999-1"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: torn))

        _ = try coordinator("coordinator-2")
        #expect(group.wait(client, timeout: 90) == 0, "\(group.log("client"))\n\(group.log("coordinator-2"))")
        let log = group.log("coordinator-2")
        #expect(log.contains("does not match its receipt"), "the damaged chunk is found: \(log)")
        let resumed = try #require(
            log.split(separator: "\n").first { $0.contains("tiles verified in the store") }, "\(log)")
        print("shared faults: \(total) tiles; \(resumed)")
        #expect(!FileManager.default.fileExists(atPath: torn), "the interrupted write is swept at the end")
        #expect(
            try exportNPY(group, store: root + "/out/tissue.zarr", out: group.directory + "/export") == expected,
            "the map after the faults differs from the in-process one")
    }

    @Test("A coordinator stopped while finishing: the restarted one finishes the complete map without recomputing it")
    func stoppedWhileFinishing() throws {
        let cluster = try RestartableCluster("shared-finishing")
        defer { cluster.group.stop() }
        let (group, root, clients) = (cluster.group, cluster.root, cluster.clients)
        func coordinator(_ log: String) throws -> Process { try cluster.coordinator(log) }
        // No worker ever joins: the restarted coordinator can only finish what is on disk.
        let coord = try coordinator("coordinator-1")
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let client = try submit(
            group, clients, image: image, out: root + "/out", mode: "dense", shared: true, log: "client")
        var partial: String?
        let deadline = Date().addingTimeInterval(30)
        while partial == nil && Date() < deadline {
            partial = (try? FileManager.default.contentsOfDirectory(atPath: root + "/out"))?
                .first { $0.contains(".partial-") }
            usleep(50_000)
        }
        let path = "\(root)/out/\(try #require(partial))"
        kill(coord.processIdentifier, SIGKILL)
        #expect(group.wait(coord, timeout: 10) != nil)
        // What a coordinator killed in finishShared leaves: every tile written, the store
        // marked complete, receipts not all journalled (a commit is up to 50 ms late).
        let store = try MapStore.open(at: path)
        let layout = store.layout
        var written: [Float] = []
        var rng = SplitMix64(seed: 11)
        let map = (0..<(layout.netClasses * layout.height * layout.width)).map { _ in
            Float.random(in: 0...1, using: &rng)
        }
        for row in 0..<layout.tileGrid.h {
            for column in 0..<layout.tileGrid.w {
                let rect = layout.rect(of: TileIndex(row: row, column: column))
                var values: [Float] = []
                for c in 0..<layout.netClasses {
                    for y in rect.y..<(rect.y + rect.height) {
                        let start = (c * layout.height + y) * layout.width + rect.x
                        values += map[start..<(start + rect.width)]
                    }
                }
                _ = try values.withUnsafeBufferPointer { try store.write(rect: rect, values: $0) }
            }
        }
        try store.finish()
        written = try store.rows(y: 0..<layout.height)
        try Data().write(to: URL(fileURLWithPath: group.directory + "/store/jobs/1/receipts.log"))

        _ = try coordinator("coordinator-2")
        #expect(group.wait(client, timeout: 60) == 0, "\(group.log("client"))\n\(group.log("coordinator-2"))")
        let final = try MapStore.open(at: root + "/out/tissue.zarr")
        #expect(final.isFinished)
        #expect(try final.rows(y: 0..<layout.height) == written, "the finished map is the one on disk")
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("A job that cannot be resumed (its image gone, or outside a changed --shared-root) fails for good")
    func unresumableFailsForGood() throws {
        let cluster = try RestartableCluster("shared-unresumable")
        defer { cluster.group.stop() }
        let (group, root, clients) = (cluster.group, cluster.root, cluster.clients)
        // No worker ever joins: each job stays where the coordinator was killed.
        func interrupted(_ n: Int, image: String, out: String) throws -> (client: Process, partial: String) {
            let coordinator = try cluster.coordinator("coordinator-\(n)")
            let client = try submit(group, clients, image: image, out: out, mode: "dense", shared: true, log: "c\(n)")
            var partial: String?
            let deadline = Date().addingTimeInterval(30)
            while partial == nil && Date() < deadline {
                partial = (try? FileManager.default.contentsOfDirectory(atPath: out))?.first {
                    $0.contains(".partial-")
                }
                usleep(50_000)
            }
            kill(coordinator.processIdentifier, SIGKILL)
            #expect(group.wait(coordinator, timeout: 10) != nil)
            return (client, "\(out)/\(try #require(partial))")
        }
        func status(_ job: Int, _ log: String) -> (Int32?, String) {
            guard
                let p = try? group.start(
                    "tessera-coordinator", ["status", "--coordinator", clients, "\(job)"], log: log)
            else { return (nil, "") }
            return (group.wait(p, timeout: 30), group.log(log))
        }
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        // The image is missing when the coordinator restarts (a shared mount not back yet).
        let first = try interrupted(1, image: image, out: root + "/out")
        try FileManager.default.moveItem(atPath: image, toPath: image + ".away")
        let c2 = try cluster.coordinator("coordinator-2")
        #expect(group.wait(first.client, timeout: 60) != 0)
        #expect(group.log("c1").contains("cannot resume"), "\(group.log("c1"))")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/store/jobs/1/state.txt"))
        #expect(!FileManager.default.fileExists(atPath: first.partial), "a failed job leaves its partial map")
        kill(c2.processIdentifier, SIGKILL)
        #expect(group.wait(c2, timeout: 10) != nil)
        // Audit 46 F1: with the image back, the next start resumed the job it had reported failed.
        try FileManager.default.moveItem(atPath: image + ".away", toPath: image)
        let second = try interrupted(3, image: image, out: root + "/out2")
        #expect(!group.log("coordinator-3").contains("resumed shared-storage job 1"), "\(group.log("coordinator-3"))")
        // Audit 46 F4: restarted with another --shared-root, the coordinator resumed the job outside it.
        let other = group.directory + "/other-root"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        _ = try cluster.coordinator("coordinator-4", sharedRoot: other)
        #expect(group.wait(second.client, timeout: 60) != 0)
        #expect(group.log("c3").contains("outside the coordinator's --shared-root"), "\(group.log("c3"))")
        // (Its partial map stays: a root taken away is not written to, audit 47 F4.)
        #expect(FileManager.default.fileExists(atPath: second.partial))
        let (rc1, text1) = status(1, "status-4")
        #expect(rc1 == 2 && text1.contains("cannot resume"), "\(text1)")
        #expect(!group.log("coordinator-4").contains("resumed shared-storage"), "\(group.log("coordinator-4"))")
    }
}

/// A shared root and fixed endpoints, so a coordinator (with its job store in the group's
/// folder) can be killed and another started in its place that resumes its jobs.
struct RestartableCluster {
    let group: ProcessGroup
    let root: String
    let workers: String
    let clients: String

    init(_ name: String) throws {
        group = try ProcessGroup(name)
        root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let ports = try FaultToleranceTests.freePorts(2)
        (workers, clients) = ("tcp://127.0.0.1:\(ports[0])", "tcp://127.0.0.1:\(ports[1])")
    }

    /// Starts `serve` on the endpoints, with the job store, and waits until it serves; `sharedRoot`: another
    /// root than `root`.
    func coordinator(_ log: String, sharedRoot: String? = nil) throws -> Process {
        let p = try group.start(
            "tessera-coordinator",
            [
                "serve", "--worker-endpoint", workers, "--client-endpoint", clients, "--store",
                group.directory + "/store", "--shared-root", sharedRoot ?? root, "--heartbeat-ms", "300",
            ], log: log)
        let deadline = Date().addingTimeInterval(20)
        while !group.log(log).contains("coordinator serving") {
            guard Date() < deadline else { throw ClusterError("coordinator \(log) did not start: \(group.log(log))") }
            usleep(50_000)
        }
        return p
    }
}
