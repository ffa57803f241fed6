import Foundation
import Testing

@testable import TesseraCluster
@testable import TesseraWire
@testable import TestSupport

/// The coordinator's store on a small tmpfs in a private mount namespace, filled up
/// while a job runs: dispatching stops (no tile is computed that cannot be kept), the
/// log says so once per job and, when space returns, once more with the count of
/// failed writes; the job then finishes with the in-process map, and a job cancelled
/// while the disk was full stays cancelled after a restart. Needs root, `unshare` and
/// `nsenter` (util-linux): skipped, with the reason, elsewhere.
@Suite("Disk full: the coordinator's store on a full tmpfs", .serialized)
struct DiskFullTests {
    static let unshare = "/usr/bin/unshare"
    static let nsenter = "/usr/bin/nsenter"

    /// Why the test cannot run here, or nil.
    static let unavailable: String? = {
        guard getuid() == 0 else { return "not root: cannot mount a tmpfs in a mount namespace" }
        for tool in [unshare, nsenter] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is missing (util-linux)"
        }
        guard (try? runCommand([unshare, "--mount", "true"]))?.status == 0 else {
            return "unshare --mount is not permitted here"
        }
        return nil
    }()

    static var available: Bool {
        if let unavailable { print("DiskFullTests skipped: \(unavailable)") }
        return unavailable == nil
    }

    @Test(
        "A full store pauses dispatching (logged once per job, then with the count), resumes when space returns; identical map; a cancel during the full disk survives a restart",
        .enabled(if: available, "needs root, unshare and nsenter to mount a small tmpfs in a mount namespace"))
    func fullStore() throws {
        let group = try ProcessGroup("disk-full")
        defer { group.stop() }
        let disk = try TmpfsCoordinator(group, size: "8m")
        try FileManager.default.createDirectory(atPath: group.directory + "/shared", withIntermediateDirectories: true)
        func shell(_ script: String) throws -> (Int32, String) { try disk.shell(script) }
        func client(_ args: [String], _ clients: String, log: String) throws -> (Int32?, String) {
            try disk.client(args, clients, log: log)
        }
        func tasksDone(_ id: Int, _ clients: String) throws -> Int? { try disk.tasksDone(id, clients) }
        func startCoordinator(_ name: String) throws -> (workers: String, clients: String) {
            try disk.startCoordinator(name, ["--shared-root", group.directory + "/shared"])
        }
        func statusOnceDone(_ id: Int, _ clients: String) throws -> String { try disk.statusOnce(id, clients) }

        var (workers, clients) = try startCoordinator("coordinator")
        try group.start(
            "tessera-worker",
            [
                "--coordinator", workers, "--threads", "1", "--name", "w1", "--debug-task-delay-ms", "100",
                "--shared-root", group.directory + "/shared",
            ], log: "w1")
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let submitFlags = ClusterFixture.modelFlags + ["--mode", "dense", "--tile", "\(ClusterFixture.tile)"]
        for (job, out) in [(1, "out-1"), (2, "out-2")] {
            let (code, text) = try client(
                ["submit"] + submitFlags + ["--outputs", "npy", "--out", group.directory + "/" + out, image], clients,
                log: "submit-\(job)")
            try #require(code == 0 && text.contains("job \(job)"), "\(text)")
        }
        // Fill the disk once job 1 is under way, and a shared-storage job recorded.
        let underWay = Date().addingTimeInterval(30)
        while (try tasksDone(1, clients) ?? 0) < 3 && Date() < underWay { usleep(100_000) }
        let sharedImage = group.directory + "/shared/small.png"
        try ClusterFixture.writeImage(to: sharedImage, height: 120, width: 120)
        let (sharedCode, sharedText) = try client(
            ["submit"] + submitFlags + ["--shared", "--out", group.directory + "/shared/out", sharedImage], clients,
            log: "submit-shared")
        try #require(sharedCode == 0 && sharedText.contains("job 3"), "\(sharedText)")
        let (filled, fillText) = try shell("dd if=/dev/zero of=\"$0/filler\" bs=64k 2>&1; df -k \"$0\" | tail -1")
        #expect(filled == 0, "\(fillText)")
        let failing = Date().addingTimeInterval(30)
        while !group.log("coordinator").contains("cannot store the job's tiles") && Date() < failing {
            usleep(100_000)
        }
        #expect(group.log("coordinator").contains("cannot store the job's tiles"), "\(group.log("coordinator"))")
        // The shared-storage job, whose worker writes its map on another disk, is mapped meanwhile (audit 55 F1: one
        // upload job on a full store stalled every job, for good).
        let sharedState = try statusOnceDone(3, clients)
        #expect(sharedState.contains("job 3: done"), "\(sharedState)\n\(group.log("coordinator"))")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/shared/out/small.zarr/.zattrs"))
        // What its failed store writes (journal appends, cut back) gave back is filled too.
        _ = try shell("dd if=/dev/zero of=\"$0/filler-2\" bs=4k 2>&1")
        // Dispatching stops: nothing more is done while the disk stays full.
        usleep(1_000_000)
        let stalled = try tasksDone(1, clients)
        usleep(3_000_000)
        let stillStalled = try tasksDone(1, clients)
        #expect(
            stalled != nil && stalled == stillStalled,
            "job 1 advanced on a full disk: \(stalled ?? -1) → \(stillStalled ?? -1)")
        // Its status says why (an operator saw a job stuck at 1/1 tiles, only the log saying why).
        let (_, stuck) = try client(["status", "1"], clients, log: "status-stuck")
        #expect(stuck.contains("waiting for the coordinator's store"), "\(stuck)")
        // So does job 2's, whose tasks wait as well, whether or not one of its own writes failed (review 32: only
        // the job whose writes failed said why).
        let (_, stuck2) = try client(["status", "2"], clients, log: "status-stuck-2")
        #expect(stuck2.contains("waiting for the coordinator's store"), "\(stuck2)")
        let (cancelled, cancelText) = try client(["cancel", "2"], clients, log: "cancel-2")
        #expect(cancelled == 0 && cancelText.contains("job 2: cancelled"), "\(cancelText)")
        // Space returns: the job resumes and finishes.
        let (freed, freeText) = try shell("rm -f \"$0/filler\" \"$0/filler-2\"")
        #expect(freed == 0, "\(freeText)")
        let state = try statusOnceDone(1, clients)
        #expect(state.contains("job 1: done"), "\(state)\n\(group.log("coordinator"))")
        let (fetched, fetchText) = try client(
            ["fetch", "1", "--out", group.directory + "/fetched"], clients, log: "fetch")
        #expect(fetched == 0, "\(fetchText)")
        let local = try ClusterFixture.localNPY(image: image, mode: .dense, scratch: group.directory)
        #expect(ClusterFixture.bytes(group.directory + "/fetched/tissue.npy") == local, "the map differs")

        // Logged once per job when its writes start failing, and once with the count when it writes again (not
        // once per tile: a write may succeed in between, on space a failed write of the shared job gave back).
        // Which upload job had a tile write fail is a race (the pause holds them all): job 1 may have been paused
        // by job 2's failure alone (it failed so once in a full suite), and job 2 was cancelled before space came
        // back, so only job 1 logs the writes resuming, and only after its own failures.
        let log = group.log("coordinator").split(separator: "\n")
        let starts = log.filter { $0.contains("cannot store the job's tiles") && $0.contains("job=1 ") }
        let startsOf2 = log.filter { $0.contains("cannot store the job's tiles") && $0.contains("job=2 ") }
        #expect(starts.count <= 3 && startsOf2.count <= 3, "\(starts) \(startsOf2)")
        #expect(starts.count + startsOf2.count >= 1, "no job logged its failed writes")
        let resumed = log.filter { $0.contains("the store writes the job's tiles again") && $0.contains("job=1 ") }
        #expect(
            resumed.count == starts.count && resumed.allSatisfy { $0.contains("failed-writes=") }, "\(resumed)")
        print("disk full: job 1 stalled at \(stalled ?? -1) tiles; \(resumed.first ?? "")")

        // A restart on the same store: job 2 stays cancelled, job 1 done.
        disk.killCoordinator()
        (workers, clients) = try startCoordinator("coordinator-2")
        let (_, after2) = try client(["status", "2"], clients, log: "status-2-after")
        #expect(after2.contains("job 2: cancelled"), "\(after2)\n\(group.log("coordinator-2"))")
        let (_, after1) = try client(["status", "1"], clients, log: "status-1-after")
        #expect(after1.contains("job 1: done"), "\(after1)")
    }

    /// `run` checks --out's free space before computing: a .npy that cannot fit is refused at once, naming
    /// both sizes (a slide's .npy is tens of gigabytes; the write used to fail after the whole map was computed).
    @Test(
        "run refuses a .npy that cannot fit in --out's free space before computing anything",
        .enabled(if: available, "needs root and unshare to mount a small tmpfs in a mount namespace"))
    func npyThatCannotFit() throws {
        let group = try ProcessGroup("disk-space")
        defer { group.stop() }
        let image = group.directory + "/big.png"
        // .npy 15.1 MiB; the temporary store as much and its edge chunks' padding (audit 55 F4), tile 512: 27 MiB (3 classes).
        try ClusterFixture.writeImage(to: image, height: 1200, width: 1100)
        let out = group.directory + "/tmpfs"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let run =
            [ProcessGroup.binary("tessera-coordinator"), "run"] + ClusterFixture.modelFlags
            + ["--check", "0", "--tile", "512", "--outputs", "npy", "--out", out + "/maps", image]
        let started = Date()
        let (status, log) = try runCommand(
            [
                Self.unshare, "--mount", "--propagation", "private", "sh", "-c",
                "mount -t tmpfs -o size=8m tessera-space \"$0\" && exec \"$@\"", out,
            ] + run)
        #expect(status != 0, "\(log)")
        #expect(
            log.contains("the map needs 42 MiB") && log.contains("15 MiB for the .npy")
                && log.contains("27 MiB for the temporary map store"), "\(log)")
        #expect(!log.contains("tasks"), "nothing should be computed: \(log)")
        #expect(Date().timeIntervalSince(started) < 60)
    }

    /// `submit --wait` whose downloads cannot fit in `--out` is refused before anything is uploaded;
    /// a download onto a full disk (`fetch`, or the disk filled meanwhile) names the file, the full disk
    /// and how to fetch again (user audit: it printed Foundation's "There isn't enough space." and nothing else).
    @Test(
        "submit --wait refuses outputs that cannot fit in --out; a download onto a full disk says to fetch again",
        .enabled(if: available, "needs root and unshare to mount a small tmpfs in a mount namespace"))
    func downloadOntoFullDisk() throws {
        let group = try ProcessGroup("download-full")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 600, width: 600)  // its .npy alone: 4.1 MiB
        let (workers, clients) = try group.startCoordinator()
        try group.startWorker(workers, name: "w1", threads: 2)
        let out = group.directory + "/tmpfs"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let coordinator = ProcessGroup.binary("tessera-coordinator")
        func onSmallDisk(_ command: [String]) throws -> (Int32, String) {
            try runCommand(
                [
                    Self.unshare, "--mount", "--propagation", "private", "sh", "-c",
                    "mount -t tmpfs -o size=1m tessera-small \"$0\" && exec \"$@\"", out,
                ] + command)
        }
        var (status, log) = try onSmallDisk(
            [coordinator, "submit", "--coordinator", clients] + ClusterFixture.modelFlags
                + ["--outputs", "npy", "--wait", "--out", out + "/maps", image])
        #expect(status != 0, "\(log)")
        #expect(
            log.contains("the map needs 4 MiB") && log.contains("MiB for the .npy") && log.contains("fetch JOB --out"),
            "\(log)")
        #expect(!log.contains("job 1"), "refused before submitting: \(log)")

        // Submitted without --wait, then fetched onto the same small disk.
        (status, log) = try runCommand(
            [coordinator, "submit", "--coordinator", clients] + ClusterFixture.modelFlags
                + ["--outputs", "npy", "--out", group.directory + "/unused", image])
        #expect(status == 0 && log.contains("job 1 "), "\(log)")
        let client = try TestClient(try ZMQContext(), clients)
        let deadline = Date().addingTimeInterval(60)
        while (try? client.status(1).state) != .done && Date() < deadline { usleep(100_000) }
        #expect(try client.status(1).state == .done, "\(group.log("coordinator"))")
        (status, log) = try onSmallDisk([coordinator, "fetch", "1", "--coordinator", clients, "--out", out + "/maps"])
        #expect(status != 0, "\(log)")
        #expect(log.contains("job 1's outputs need 4 MiB") && log.contains("nothing was downloaded"), "\(log)")
        #expect(log.contains("fetch 1 --out"), "\(log)")
    }

    /// A write that fails mid-download, after the free-space check passed (here a file size limit,
    /// as a quota gives: `ulimit -f` with SIGXFSZ ignored, so write(2) fails with EFBIG), names the
    /// file, the byte and how to fetch again, leaves no partial file, and the outputs stay on the
    /// coordinator: the same fetch without the limit then gets them whole.
    @Test(
        "A download whose write fails midway names the file and byte, leaves nothing behind, and can be fetched again")
    func writeFailsMidDownload() throws {
        let group = try ProcessGroup("download-efbig")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 600, width: 600)  // its .npy: 4.1 MiB
        let (workers, clients) = try group.startCoordinator()
        try group.startWorker(workers, name: "w1", threads: 2)
        let coordinator = ProcessGroup.binary("tessera-coordinator")
        var (status, log) = try runCommand(
            [coordinator, "submit", "--coordinator", clients] + ClusterFixture.modelFlags
                + ["--outputs", "npy", "--out", group.directory + "/unused", image])
        #expect(status == 0 && log.contains("job 1 "), "\(log)")
        // Without --wait, --out is not written (operator audit: an empty folder appeared), and the
        // client says where the outputs are.
        // With the coordinator given, to paste as printed (docs/CLI audit 36 F10).
        #expect(
            log.contains("tessera-coordinator status 1 --coordinator \(clients) shows the job")
                && log.contains(
                    "tessera-coordinator fetch 1 --out \(group.directory)/unused --coordinator \(clients) downloads"),
            "\(log)")
        #expect(!FileManager.default.fileExists(atPath: group.directory + "/unused"))
        let client = try TestClient(try ZMQContext(), clients)
        let deadline = Date().addingTimeInterval(60)
        while (try? client.status(1).state) != .done && Date() < deadline { usleep(100_000) }
        #expect(try client.status(1).state == .done, "\(group.log("coordinator"))")

        let out = group.directory + "/maps"
        (status, log) = try runCommand([
            "bash", "-c", "trap '' XFSZ; ulimit -f 1024; exec \"$@\"", "fetch-limited",
            coordinator, "fetch", "1", "--coordinator", clients, "--out", out,
        ])
        #expect(status != 0, "\(log)")
        #expect(log.contains("cannot write \(out)/img.npy (at byte "), "\(log)")
        #expect(
            log.contains("File too large") && log.contains("fix that and run tessera-coordinator fetch 1 --out \(out)"),
            "\(log)")
        #expect(!log.contains("NSCocoaErrorDomain"), "Foundation's code instead of the reason: \(log)")
        let left = try FileManager.default.contentsOfDirectory(atPath: out)
        #expect(left.isEmpty, "a failed download left \(left)")

        (status, log) = try runCommand([coordinator, "fetch", "1", "--coordinator", clients, "--out", out])
        #expect(status == 0, "\(log)")
        let size = (try FileManager.default.attributesOfItem(atPath: out + "/img.npy")[.size] as? Int) ?? 0
        #expect(size > 4 << 20, "the second fetch wrote \(size) bytes")
    }

    @Test("A read-only store is refused at start with the store named, not at the first submission")
    func readOnlyStore() throws {
        let group = try ProcessGroup("read-only-store")
        defer { group.stop() }
        let root = group.directory + "/ro"
        let store = root + "/store"
        try FileManager.default.createDirectory(atPath: store + "/jobs", withIntermediateDirectories: true)
        let serve = [
            ProcessGroup.binary("tessera-coordinator"), "serve", "--worker-endpoint", "tcp://127.0.0.1:*",
            "--client-endpoint", "tcp://127.0.0.1:*", "--store", store,
        ]
        let result: (status: Int32, output: String)
        if getuid() == 0 {
            // Root writes through any mode: a read-only mount, in a mount namespace of its own.
            try #require(Self.unavailable == nil, "\(Self.unavailable ?? "")")
            let script =
                "mount -t tmpfs none \"$0\" && mkdir -p \"$0/store/jobs\" && mount -o remount,ro \"$0\" && exec \"$@\""
            result = try runCommand(
                ["timeout", "20", Self.unshare, "--mount", "--propagation", "private", "sh", "-c", script, root] + serve
            )
        } else {
            chmod(store + "/jobs", 0o555)
            defer { chmod(store + "/jobs", 0o755) }
            result = try runCommand(["timeout", "20"] + serve)
        }
        #expect(result.status != 0 && result.status != 124, "it served a read-only store: \(result.output)")
        #expect(
            result.output.contains("the store \(store) is not writable")
                && !result.output.contains("NSCocoaErrorDomain"),
            "\(result.output)")
    }

    /// libtiff reports a full disk as "Write error at scanline …": the export says why.
    @Test(
        "A TIFF export onto a full disk names the full disk",
        .enabled(if: available, "needs root, unshare and nsenter to mount a small tmpfs in a mount namespace"))
    func fullTIFFExport() throws {
        let group = try ProcessGroup("full-tiff")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 300, width: 300)
        let run = try group.start(
            "tessera-coordinator",
            ["run", "--in-process"] + ClusterFixture.modelFlags + [
                "--check", "0", "--outputs", "zarr", "--out", group.directory + "/maps", image,
            ], log: "run")
        #expect(group.wait(run, timeout: 120) == 0, "\(group.log("run"))")
        let small = group.directory + "/small"
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        let export = try group.start(
            Self.unshare,
            [
                "--mount", "--propagation", "private", "sh", "-c",
                "mount -t tmpfs -o size=128k tessera-tiny \"$0\" && exec \"$1\" export \"$2\" --outputs tiff --out \"$0\"",
                small, ProcessGroup.binary("tessera-coordinator"), group.directory + "/maps/img.zarr",
            ], log: "export")
        #expect(group.wait(export, timeout: 60) != 0, "\(group.log("export"))")
        #expect(group.log("export").contains("No space left on device"), "\(group.log("export"))")
    }
}
