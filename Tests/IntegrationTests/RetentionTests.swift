import Foundation
import Testing

@testable import CoordinatorService
@testable import TesseraCluster
@testable import TesseraWire
@testable import TestSupport

/// `serve --keep-finished` and `--max-store`: ended jobs leave memory and disk, each
/// removal logged; active jobs stay.
@Suite("Retention of ended jobs", .serialized)
struct RetentionTests {
    func submit(_ group: ProcessGroup, _ clients: String, _ image: String, log: String) throws {
        let p = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients] + ClusterFixture.modelFlags + [
                "--mode", "dense", "--tile", "\(ClusterFixture.tile)", "--outputs", "npy", "--out",
                group.directory + "/out-" + log, image,
            ], log: log)
        #expect(group.wait(p, timeout: 30) == 0, "\(group.log(log))")
    }

    /// A coordinator with `--keep-finished 1s`, checks every 200 ms and `grace` ms of grace, one worker, a
    /// 60×50 image and a client: what `body` gets.
    func withCluster(
        _ label: String, grace: String, _ body: (Cluster, borrowing TestClient) throws -> Void
    ) throws {
        let group = try ProcessGroup(label)
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: [
            "--keep-finished", "1s", "--retention-check-ms", "200", "--retention-grace-ms", grace,
        ])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 50)
        _ = try group.start("tessera-worker", ["--coordinator", workers, "--threads", "1", "--name", "w1"], log: "w1")
        let context = try ZMQContext()
        let client = try TestClient(context, clients)
        try body(Cluster(group: group, clients: clients, image: image), client)
    }

    /// What `withCluster` set up.
    struct Cluster {
        let group: ProcessGroup
        let clients: String
        let image: String
        var directory: String { group.directory }
        func log(_ name: String) -> String { group.log(name) }
    }

    func waitUntil(_ timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return condition()
    }

    @Test("--keep-finished: a done job is removed from disk and status; an active one stays")
    func keepFinished() throws {
        let group = try ProcessGroup("retention-age")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: [
            "--keep-finished", "1s", "--retention-check-ms", "200", "--retention-grace-ms", "0",
        ])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 50)
        let worker = try group.start(
            "tessera-worker", ["--coordinator", workers, "--threads", "1", "--name", "w1"], log: "w1")
        let context = try ZMQContext()
        let client = try TestClient(context, clients)
        try submit(group, clients, image, log: "submit1")
        #expect(waitUntil(20) { (try? client.status(1).state) == .done }, "\(group.log("coordinator"))")
        // No worker from now on: job 2 stays active (queued: no worker has taken a task of it).
        kill(worker.processIdentifier, SIGKILL)
        _ = group.wait(worker, timeout: 10)
        try submit(group, clients, image, log: "submit2")

        let jobs = group.directory + "/store/jobs"
        #expect(
            waitUntil(15) { !FileManager.default.fileExists(atPath: jobs + "/1") },
            "job 1 was not removed: \(group.log("coordinator"))")
        let status = try client.status(1)
        #expect(
            status.state == .unknown && status.message.contains("removed from the store: by retention"), "\(status)")
        #expect(try client.status(99).message == "no such job")
        // fetch says the same as status (soak audit 31 F6: a bare "no job 1").
        let fetched = try client.request(
            .fetchRequest(Wire.FetchRequest(jobID: 1, fileName: "tissue.npy", offset: 0, maxBytes: 64)))
        guard case .error(let why) = fetched, why.contains("removed from the store: by retention") else {
            Issue.record("\(fetched)")
            return
        }
        let log = group.log("coordinator")
        #expect(log.contains("job removed") && log.contains("keep-finished"), "\(log)")
        // The running job outlives the limit.
        usleep(1_500_000)
        #expect(FileManager.default.fileExists(atPath: jobs + "/2"))
        #expect(try client.status(2).state == .queued)
        // A restart on this store never hands out a removed id again.
        let mark = try String(contentsOfFile: group.directory + "/store/removed-up-to", encoding: .utf8)
        #expect(mark.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
    }

    /// Docs/CLI audit 36 F2: `--keep-finished 1s` removed a job a second after its end, though no job goes within
    /// the grace after its end (a minute; 10 s here), nor an unfetched result (10 minutes; 10 s here).
    @Test("--keep-finished keeps every job for the grace after its end")
    func keepFinishedHonoursTheGrace() throws {
        try withCluster("retention-grace", grace: "10000") { cluster, client in
            try submit(cluster.group, cluster.clients, cluster.image, log: "submit1")  // not fetched: the longer grace, 10 s here too
            #expect(waitUntil(30) { (try? client.status(1).state) == .done }, "\(cluster.log("coordinator"))")
            let ended = Date()
            let folder = cluster.directory + "/store/jobs/1"
            // Past --keep-finished and several checks, within the grace: still there.
            usleep(2_000_000)
            #expect(FileManager.default.fileExists(atPath: folder), "\(cluster.log("coordinator"))")
            #expect(try client.status(1).state == .done)
            #expect(waitUntil(20) { !FileManager.default.fileExists(atPath: folder) }, "\(cluster.log("coordinator"))")
            #expect(Date().timeIntervalSince(ended) >= 8.0)
        }
    }

    /// Session-19 left-over: retention removed a job while a client downloaded it (the download then failed).
    /// A job whose outputs were asked for within the last minute is kept; the active check still removes it later.
    @Test("--keep-finished: a job a client is downloading is kept while the download goes on")
    func keptWhileDownloading() throws {
        try withCluster("retention-download", grace: "0") { cluster, client in
            try submit(cluster.group, cluster.clients, cluster.image, log: "submit1")
            #expect(waitUntil(20) { (try? client.status(1).state) == .done }, "\(cluster.log("coordinator"))")
            // A slow download: one small piece a second, for 4 s (the job ended over 1 s ago by its end).
            let file = try #require(try client.status(1).outputFiles.first)
            for i in 0..<4 {
                let piece = try client.request(
                    .fetchRequest(Wire.FetchRequest(jobID: 1, fileName: file, offset: UInt64(i * 64), maxBytes: 64)))
                guard case .fetchData = piece else {
                    Issue.record("piece \(i) was refused: \(piece)\n\(cluster.log("coordinator"))")
                    return
                }
                usleep(1_000_000)
            }
            #expect(FileManager.default.fileExists(atPath: cluster.directory + "/store/jobs/1"))
            #expect(cluster.log("coordinator").contains("retention keeps a job a client is downloading"))
            // An ended job keeps no copy of its model (soak audit 31 F3): only a resume reads it.
            let folder = try FileManager.default.contentsOfDirectory(atPath: cluster.directory + "/store/jobs/1")
            #expect(folder.contains("state.txt") && !folder.contains("weights.caffemodel"), "\(folder)")
        }
    }

    /// Soak audit 56 F2: whether a result was fetched was known only in the coordinator's life: after a restart
    /// every done result counted as unfetched (kept 10 minutes more, and its removal warned "before anyone fetched
    /// it"). A fetch is now marked in the job's folder.
    @Test("a result fetched before a restart is not warned of as unfetched when retention removes it")
    func fetchedBeforeRestart() throws {
        let group = try ProcessGroup("retention-restart")
        defer { group.stop() }
        func coordinator(_ name: String, _ extra: [String]) throws -> (Process, String, String) {
            let ready = group.directory + "/ready-" + name
            let p = try group.start(
                "tessera-coordinator",
                [
                    "serve", "--worker-endpoint", "tcp://127.0.0.1:*", "--client-endpoint", "tcp://127.0.0.1:*",
                    "--store", group.directory + "/store", "--ready-file", ready,
                ] + extra, log: name)
            #expect(waitUntil(20) { ((try? String(contentsOfFile: ready, encoding: .utf8)) ?? "").hasSuffix("\n") })
            let lines = try String(contentsOfFile: ready, encoding: .utf8).split(separator: "\n").map(String.init)
            try #require(lines.count == 2, "\(group.log(name))")
            return (p, lines[0], lines[1])
        }
        let (first, workers, clients) = try coordinator("coordinator-1", [])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 50)
        _ = try group.start("tessera-worker", ["--coordinator", workers, "--threads", "1", "--name", "w1"], log: "w1")
        let client = try TestClient(try ZMQContext(), clients)
        try submit(group, clients, image, log: "submit1")
        try submit(group, clients, image, log: "submit2")
        #expect(waitUntil(30) { (try? client.status(2).state) == .done && (try? client.status(1).state) == .done })
        // Job 1's outputs are fetched; job 2's are not.
        let fetch = try group.start(
            "tessera-coordinator", ["fetch", "1", "--coordinator", clients, "--out", group.directory + "/fetched"],
            log: "fetch")
        #expect(group.wait(fetch, timeout: 30) == 0, "\(group.log("fetch"))")
        usleep(300_000)  // (the mark is written on the store queue)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        _ = try coordinator(
            "coordinator-2", ["--keep-finished", "1s", "--retention-check-ms", "200", "--retention-grace-ms", "0"])
        let jobs = group.directory + "/store/jobs"
        #expect(
            waitUntil(20) {
                !FileManager.default.fileExists(atPath: jobs + "/1")
                    && !FileManager.default.fileExists(atPath: jobs + "/2")
            }, "\(group.log("coordinator-2"))")
        let warned = group.log("coordinator-2").split(separator: "\n").filter {
            $0.contains("before anyone fetched it")
        }
        #expect(warned.count == 1 && warned[0].contains("job=2"), "\(warned)")
    }

    @Test("--max-store: the oldest ended jobs go while the store is over the size")
    func maxStore() throws {
        let group = try ProcessGroup("retention-size")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: [
            "--max-store", "1K", "--retention-check-ms", "200", "--retention-grace-ms", "0",
        ])
        try group.startWorker(workers, name: "w1")
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 50)
        let context = try ZMQContext()
        let client = try TestClient(context, clients)
        try submit(group, clients, image, log: "submit1")
        let jobs = group.directory + "/store/jobs"
        #expect(
            waitUntil(20) { !FileManager.default.fileExists(atPath: jobs + "/1") },
            "job 1 was not removed: \(group.log("coordinator"))")
        let log = group.log("coordinator")
        #expect(log.contains("job finished"), "\(log)")
        #expect(log.contains("job removed") && log.contains("max-store"), "\(log)")
        // Removed before anyone fetched it: the operator is told --max-store is too small.
        #expect(log.contains("a result is removed before anyone fetched it"), "\(log)")
        #expect(try client.status(1).state == .unknown)
    }

    /// tessera_store_bytes kept the size from before an eviction until the next check.
    @Test("--max-store: tessera_store_bytes drops with the eviction, not one check later")
    func storeBytesAfterEviction() throws {
        let group = try ProcessGroup("retention-gauge")
        defer { group.stop() }
        let port = try freeLoopbackPort()
        let (workers, clients) = try group.startCoordinator(extra: [
            "--max-store", "1K", "--retention-check-ms", "4000", "--retention-grace-ms", "0",
            "--metrics-address", "127.0.0.1:\(port)",
        ])
        try group.startWorker(workers, name: "w1")
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 50)
        try submit(group, clients, image, log: "submit1")
        let jobs = group.directory + "/store/jobs"
        #expect(
            waitUntil(20) { !FileManager.default.fileExists(atPath: jobs + "/1") },
            "job 1 was not removed: \(group.log("coordinator"))")
        // Well within the next check (4 s): gauges are published twice a second.
        #expect(
            waitUntil(1.5) {
                (try? PrometheusText(try httpGet(port: port, path: "/metrics").body).value("tessera_store_bytes")) == 0
            }, "tessera_store_bytes still counts the removed job")
    }

    /// Soak audit 31 F1: under pressure --max-store removed the oldest jobs first, so the results that had just
    /// ended went before anyone fetched them (6 upload results lost in a phase), while older, already downloaded
    /// ones stayed; a `submit --wait` found its job "unknown" the second it ended.
    @Test("--max-store: delivered jobs first, oldest first; unfetched results kept 10 minutes, every job a minute")
    func maxStoreOrder() {
        let now = Date()
        func job(_ id: UInt64, _ ago: Double, delivered: Bool, _ bytes: Int64 = 10) -> RetentionPolicy.Ended {
            RetentionPolicy.Ended(id: id, at: now.addingTimeInterval(-ago), bytes: bytes, delivered: delivered)
        }
        let policy = RetentionPolicy(maxStoreBytes: 100)
        let fetchedOld = job(1, 7200, delivered: true), fetchedRecent = job(2, 120, delivered: true)
        let unfetchedOld = job(3, 3600, delivered: false), unfetchedNew = job(4, 30, delivered: false)
        let justEnded = job(5, 10, delivered: true)
        let all = [unfetchedNew, justEnded, fetchedRecent, unfetchedOld, fetchedOld]
        // The delivered ones go first, oldest first, then unfetched ones past the grace; never the fresh ones.
        #expect(policy.maxStoreVictims(all, total: 200, limit: 100, now: now) == [1, 2, 3])
        #expect(policy.maxStoreVictims(all, total: 115, limit: 100, now: now) == [1, 2])
        #expect(policy.maxStoreVictims([unfetchedNew, justEnded], total: 1000, limit: 100, now: now).isEmpty)
        // The graces are the policy's (tests shorten them).
        var quick = policy
        quick.endGrace = 0
        quick.unfetchedGrace = 0
        #expect(quick.maxStoreVictims([unfetchedNew, justEnded], total: 1000, limit: 100, now: now) == [5, 4])
    }

    @Test("durations and sizes parse; nonsense is refused with the format")
    func parsing() throws {
        #expect(try RetentionPolicy.seconds(parsing: "7d") == 7 * 86400)
        #expect(try RetentionPolicy.seconds(parsing: "12h") == 12 * 3600)
        #expect(try RetentionPolicy.seconds(parsing: "30m") == 1800)
        #expect(try RetentionPolicy.seconds(parsing: "1.5s") == 1.5)
        #expect(try RetentionPolicy.bytes(parsing: "50G") == 50 << 30)
        #expect(try RetentionPolicy.bytes(parsing: "500MB") == 500 << 20)
        #expect(try RetentionPolicy.bytes(parsing: "2TiB") == 2 << 40)
        #expect(try RetentionPolicy.bytes(parsing: "4096B") == 4096)
        #expect(try RetentionPolicy.bytes(parsing: "10KB") == 10 << 10)
        #expect(try RetentionPolicy.seconds(parsing: "0s") == 0)
        // A bare number meant seconds or bytes: 7 (days?) removed every finished job at once.
        for bad in ["", "7x", "-1d", "d", "7", "0", "nan", "infd"] {
            #expect(throws: (any Error).self, "\(bad)") { try RetentionPolicy.seconds(parsing: bad) }
        }
        for bad in ["", "0", "12Q", "-5G", "G", "50", "4096", "b", "kb"] {
            #expect(throws: (any Error).self, "\(bad)") { try RetentionPolicy.bytes(parsing: bad) }
        }
        let (status, output) = try runCommand([
            ProcessGroup.binary("tessera-coordinator"), "serve", "--keep-finished", "soon",
        ])
        #expect(status != 0 && output.contains("duration soon"), "\(output)")
    }
}
