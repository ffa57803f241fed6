import Foundation
import Testing

@testable import TestSupport

/// Hostile-peer audit 54 F1, F2, F5: files a client puts where a shared job's map goes. A FIFO `.zattrs` at
/// `OUT/STEM.zarr` froze the coordinator's loop (every client and worker stalled), a sparse 1 TiB one aborted the
/// coordinator, and a FIFO owner record in a `.STEM.zarr.partial-*` folder blocked the preparation queue (every
/// later submission of every key hung).
@Suite("Shared storage: FIFOs and huge files where the map goes", .serialized)
struct HostileSharedFilesTests {
    @Test("each submission ends with an answer, and the coordinator serves the next job")
    func fifosAndHugeFiles() throws {
        let group = try ProcessGroup("hostile-shared")
        defer { group.stop() }
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let shared = SharedStorageTests()
        let (_, clients) = try shared.cluster(group, root: root, workers: 1)
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        var unblock: [String] = []
        defer {
            // A FIFO still waited on (the old behaviour) is opened for writing, so nothing hangs past the test.
            for fifo in unblock {
                let fd = open(fifo, O_WRONLY | O_NONBLOCK)
                if fd >= 0 { close(fd) }
            }
        }
        for (n, kind) in ["fifo", "sparse", "owner-fifo"].enumerated() {
            let out = "\(root)/\(kind)"
            let folder = kind == "owner-fifo" ? out + "/.tissue.zarr.partial-x" : out + "/tissue.zarr"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            switch kind {
            case "fifo":
                #expect(mkfifo(folder + "/.zattrs", 0o644) == 0)
                unblock.append(folder + "/.zattrs")
            case "sparse":
                #expect(FileManager.default.createFile(atPath: folder + "/.zattrs", contents: nil))
                #expect(truncate(folder + "/.zattrs", 1 << 40) == 0)
            default:
                #expect(mkfifo(folder + "/tessera-owner.txt", 0o644) == 0)
                unblock.append(folder + "/tessera-owner.txt")
            }
            let log = "submit-\(n)"
            let p = try shared.submit(group, clients, image: image, out: out, mode: "dense", shared: true, log: log)
            let status = group.wait(p, timeout: 60)
            #expect(status != nil, "\(kind): no answer in 60 s: \(group.log(log))")
            if kind != "owner-fifo" {
                #expect(status != 0 && group.log(log).contains("tissue.zarr"), "\(kind): \(group.log(log))")
            }
        }
        // Still serving: an upload job of another client is done.
        let p = try shared.submit(
            group, clients, image: image, out: group.directory + "/upload", mode: "dense", shared: false, log: "upload")
        #expect(group.wait(p, timeout: 120) == 0, "\(group.log("upload"))\n\(group.log("coordinator"))")
        #expect(!group.log("coordinator").contains("Fatal error"), "\(group.log("coordinator"))")
    }
}

/// Audit 53 F1: an image replaced at its path while its shared job ran gave a map mixed tile by tile from both
/// images, and the job ended "done".
@Suite("Shared storage: an image replaced while its job runs", .serialized)
struct ReplacedImageTests {
    @Test("the job fails, saying the image changed; no map is left")
    func replacedMidJob() throws {
        let group = try ProcessGroup("replaced-image")
        defer { group.stop() }
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root + "/out", withIntermediateDirectories: true)
        let shared = SharedStorageTests()
        let (_, clients) = try shared.cluster(group, root: root, workers: 1, delayMs: 200)
        let image = root + "/tissue.png", other = root + "/other.png"
        try ClusterFixture.writeImage(to: image)
        try ClusterFixture.writeImage(to: other, seed: 99)
        let p = try shared.submit(
            group, clients, image: image, out: root + "/out", mode: "dense", shared: true, log: "c")
        let deadline = Date().addingTimeInterval(30)
        while !group.log("coordinator").contains("job started") && Date() < deadline { usleep(20_000) }
        #expect(rename(other, image) == 0)
        #expect(group.wait(p, timeout: 120) != 0, "\(group.log("c"))")
        #expect(group.log("c").contains("changed while the job ran"), "\(group.log("c"))")
        #expect(!FileManager.default.fileExists(atPath: root + "/out/tissue.zarr"))
    }
}

/// Hostile-peer audit 54 F7: a worker that keeps its session (heartbeats) but never answers held a job's tasks for
/// good while fewer than 3 of the job's tasks were measured (no straggler deadline yet): a 1-task job never
/// ended; and a copy sent to another such worker got no copy in its turn.
@Suite("A worker that takes a task and never answers", .serialized)
struct SilentWorkerTests {
    @Test("a 1-task job gets copies past two silent workers and is done")
    func copiesPastSilentWorkers() throws {
        let group = try ProcessGroup("silent-worker")
        defer { group.stop() }
        let endpoints = try group.startCoordinator(
            extra: ["--heartbeat-ms", "300", "--straggler-unmeasured-ms", "2000", "--credit", "1"])
        let shared = SharedStorageTests()
        // Two workers whose task takes an hour (they keep heartbeating), listed before the good one.
        for name in ["silent-1", "silent-2"] {
            _ = try shared.worker(group, endpoints.workers, name, root: group.directory, delayMs: 3_600_000)
        }
        var deadline = Date().addingTimeInterval(30)
        while group.log("coordinator").components(separatedBy: "worker joined").count < 3 && Date() < deadline {
            usleep(50_000)
        }
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 40, width: 40)
        let submit = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", endpoints.clients] + ClusterFixture.modelFlags + [
                "--mode", "dense", "--tile", "64", "--outputs", "npy", "--wait", "--out", group.directory + "/out",
                image,
            ], log: "submit")
        deadline = Date().addingTimeInterval(30)
        while !group.log("coordinator").contains("job started") && Date() < deadline { usleep(50_000) }
        usleep(500_000)  // the first silent worker holds the task
        _ = try shared.worker(group, endpoints.workers, "good", root: group.directory, delayMs: 0)
        // 2 s to the first copy (to silent-2 or good), 2 s more to the second.
        #expect(group.wait(submit, timeout: 60) == 0, "\(group.log("submit"))\n\(group.log("coordinator"))")
        let log = group.log("coordinator")
        #expect(log.contains("straggler: task overdue, a copy sent to another worker"), "\(log)")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/out/tissue.npy"))
    }
}

/// Hostile-peer audit 54 F8: serve --max-pixels was not applied to a shared-storage job's PNG (9 Mpx passed a
/// 1 Mpx limit), which every worker then decodes to its disk.
@Suite("Shared storage: serve --max-pixels", .serialized)
struct SharedMaxPixelsTests {
    @Test("a shared PNG over the limit is refused, naming the configured limit")
    func refused() throws {
        let group = try ProcessGroup("shared-max-pixels")
        defer { group.stop() }
        let root = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let shared = SharedStorageTests()
        let (_, clients) = try shared.cluster(group, root: root, workers: 1, extra: ["--max-pixels", "20000"])
        let image = root + "/tissue.png"
        try ClusterFixture.writeImage(to: image)  // 190×150 = 28 500 pixels
        let p = try shared.submit(group, clients, image: image, out: root, mode: "dense", shared: true, log: "c")
        #expect(group.wait(p, timeout: 60) != 0, "\(group.log("c"))")
        #expect(group.log("c").contains("20000"), "\(group.log("c"))")
        // Audit 54 F11: a name with a newline and an escape forged coordinator log lines and reached other users'
        // terminals through `status`. Refused, the name shown with '?'.
        let evil = root + "/evil\n2026-01-01T00:00:00+0000 critical forged \u{1B}[31m.png"
        try ClusterFixture.writeImage(to: evil, height: 40, width: 40)
        let q = try shared.submit(group, clients, image: evil, out: root, mode: "dense", shared: true, log: "evil")
        #expect(group.wait(q, timeout: 60) != 0, "\(group.log("evil"))")
        #expect(group.log("evil").contains("control characters"), "\(group.log("evil"))")
        // A name's own format characters (a ZWNJ in a Persian name) and a tab are names, not attacks (review 31).
        let persian = root + "/\u{646}\u{645}\u{648}\u{646}\u{647}\u{200C}\u{6CC}\u{6A9}\t.png"
        try ClusterFixture.writeImage(to: persian, height: 40, width: 40)
        let r = try shared.submit(group, clients, image: persian, out: root, mode: "dense", shared: true, log: "zwnj")
        #expect(group.wait(r, timeout: 60) == 0, "\(group.log("zwnj"))")
        // No line of the log begins with the forged stamp, and no escape reached it.
        #expect(
            !group.log("coordinator").contains("\n2026-01-01T00:00:00") && !group.log("coordinator").contains("\u{1B}"),
            "\(group.log("coordinator"))")
    }
}
