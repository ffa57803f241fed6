import Foundation
import Testing

@testable import TesseraWire
@testable import TestSupport

/// Common mistakes a user review found answered badly: each now gets one clear error (or, for inspect-image,
/// an estimate with a note) instead of a loop, a raw Foundation error, repeated restarts or a refusal.
@Suite("Common mistakes, clear answers")
struct UserReviewTests {
    /// A process group with a small test image (`tissue.png`) in its folder.
    static func groupWithImage(_ label: String, height: Int = 40, width: Int = 50) throws -> (ProcessGroup, String) {
        let group = try ProcessGroup(label)
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: height, width: width)
        return (group, image)
    }

    @Test("A worker pointed at the client endpoint stops at once, saying which endpoint to use")
    func workerAtClientEndpoint() throws {
        let group = try ProcessGroup("worker-wrong-endpoint")
        defer { group.stop() }
        let (_, clients) = try group.startCoordinator()
        let worker = try group.start(
            "tessera-worker", ["--coordinator", clients, "--threads", "1", "--name", "lost"], log: "worker")
        let status = group.wait(worker, timeout: 20)
        #expect(status != nil && status != 0, "the worker kept running: \(group.log("worker"))")
        #expect(group.log("worker").contains("serve --worker-endpoint"), "\(group.log("worker"))")
        #expect(group.log("coordinator").contains("a worker connected to the client endpoint"))
    }

    /// Hostile-input audit 27: --scale 0 and a mean of 1e6 (a damaged mean file, a typo) were accepted without a word.
    @Test("A scale of 0 and a mean far outside the pixels' range are warned of")
    func implausiblePreprocessing() throws {
        let (group, image) = try Self.groupWithImage("implausible-preprocessing", height: 20, width: 20)
        defer { group.stop() }
        let model = ["--model", ClusterFixture.prototxt, "--weights", ClusterFixture.weights, "--allow-padding"]
        func run(scale: String, mean: String, out: String) throws -> (Int32, String) {
            try SlideMapTests.coordinator(
                group,
                ["run"] + model + [
                    "--in-process", "--scale", scale, "--mean", mean, "--check", "0", "--out",
                    group.directory + "/" + out, image,
                ], log: out)
        }
        let (status, log) = try run(scale: "0", mean: "1000000,0,0", out: "out")
        #expect(status == 0, "\(log)")
        #expect(log.contains("--scale 0.0 and --raw-scale 1.0"), "\(log)")
        #expect(log.contains("a mean of 1000000.0 (--mean) is far outside"), "\(log)")
        let (plain, quiet) = try run(scale: "0.015625", mean: "134,151,171", out: "out2")
        #expect(plain == 0 && !quiet.contains("is that meant"), "\(quiet)")
    }

    /// Hostile-input audit 27 and its verification: --tile 32768 on a small image allocated 8 GiB chunks, in process
    /// and then with local workers (the shared store's layout). The chunks are now the image's size.
    @Test("--tile 32768 on a small image: the map's chunks are the image's size, with local workers too")
    func hugeTileWithLocalWorkers() throws {
        let (group, image) = try Self.groupWithImage("huge-tile")
        defer { group.stop() }
        let (status, log) = try SlideMapTests.coordinator(
            group,
            ["run"] + ClusterFixture.modelFlags + [
                "--workers", "1", "--tile", "32768", "--outputs", "zarr",
                "--check", "0", "--out", group.directory + "/out", image,
            ], log: "run")
        #expect(status == 0, "\(log)")
        let array = try String(contentsOfFile: group.directory + "/out/tissue.zarr/0/.zarray", encoding: .utf8)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(array.utf8)) as? [String: Any])
        let chunks = try #require(json["chunks"] as? [Int])
        #expect(chunks.suffix(2).allSatisfy { $0 <= 64 }, "\(chunks)")
    }

    /// User review F32: the embedded coordinator took a random loopback port (a firewall's port policy, and any
    /// local user could join it as a worker). Its workers now connect over a Unix socket in an owner-only folder
    /// of the run's store; a store path too long for a socket's address falls back to a loopback port.
    @Test(
        "run's workers connect over a Unix socket in an owner-only folder of its store (a loopback port when too long)")
    func embeddedRunOverUnixSocket() throws {
        let (group, image) = try Self.groupWithImage("embedded-socket")
        defer { group.stop() }
        func run(store: String, out: String) throws -> String {
            let (status, log) = try SlideMapTests.coordinator(
                group,
                ["run"] + ClusterFixture.modelFlags + [
                    "--workers", "1", "--outputs", "npy", "--check", "0", "--store", store, "--out", out, image,
                ], log: (out as NSString).lastPathComponent)
            #expect(status == 0, "\(log)")
            return log
        }
        let store = group.directory + "/store"
        let log = try run(store: store, out: group.directory + "/out")
        #expect(log.contains("endpoint=ipc://\(store)/sockets/workers"), "\(log)")
        var info = stat()
        #expect(
            stat(store + "/sockets", &info) == 0 && info.st_mode & 0o777 == 0o700, "\(String(info.st_mode, radix: 8))")
        #expect(!FileManager.default.fileExists(atPath: store + "/sockets/workers"), "the socket is removed at the end")
        // The same store again: the finished job stays done (verification audit 32 N1: its map, a temporary store
        // the run removed, was reported missing and the job listed as failed at every reopening).
        let again = try run(store: store, out: group.directory + "/out3")
        #expect(!again.contains("outputs are missing"), "\(again)")
        let long = group.directory + "/" + String(repeating: "s", count: 100)
        let fallback = try run(store: long, out: group.directory + "/out2")
        #expect(fallback.contains("endpoint=tcp://127.0.0.1:"), "\(fallback)")
        #expect(
            FileManager.default.contents(atPath: group.directory + "/out/tissue.npy")
                == FileManager.default.contents(atPath: group.directory + "/out2/tissue.npy"))
    }

    @Test("fetch --out naming a file says so, naming the option")
    func fetchIntoAFile() throws {
        let group = try ProcessGroup("fetch-into-file")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator()
        try group.startWorker(workers, name: "w1")
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 40, width: 50)
        let p = try group.submitFixture(
            clients, image: image, out: group.directory + "/out", mode: .dense, log: "submit")
        #expect(group.wait(p) == 0, "\(group.log("submit"))")
        let file = group.directory + "/a-file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let (status, log) = try SlideMapTests.coordinator(
            group, ["fetch", "1", "--coordinator", clients, "--out", file], log: "fetch")
        #expect(status != 0 && log.contains("--out \(file): a file, not a folder"), "\(log)")
        #expect(!log.contains("NSCocoaErrorDomain"), "\(log)")
    }

    @Test("run on a GPU that is not there fails once, without restarting its workers")
    func missingGPU() throws {
        let (group, image) = try Self.groupWithImage("missing-gpu")
        defer { group.stop() }
        // cuda:7: no machine this runs on has eight GPUs (nor, usually, one). --check 0: embedded workers (a
        // checked run of this net that pads maps in this process, which fails once anyway).
        let (status, log) = try SlideMapTests.coordinator(
            group,
            ["run"] + ClusterFixture.modelFlags
                + ["--device", "cuda:7", "--check", "0", "--out", group.directory + "/out", image],
            log: "run")
        #expect(status != 0 && log.contains("cannot open its compute device"), "\(log)")
        #expect(!log.contains("started again") && !log.contains("--store DIR"), "\(log)")
    }

    @Test(
        "A folder where an output file goes is refused before mapping, in process and embedded",
        arguments: [true, false])
    func folderWhereAnOutputGoes(inProcess: Bool) throws {
        let (group, image) = try Self.groupWithImage("folder-in-the-way")
        defer { group.stop() }
        try FileManager.default.createDirectory(
            atPath: group.directory + "/out/tissue.npy", withIntermediateDirectories: true)
        let (status, log) = try SlideMapTests.coordinator(
            group,
            ["run"] + ClusterFixture.modelFlags + (inProcess ? ["--in-process"] : ["--check", "0"])
                + ["--outputs", "npy", "--out", group.directory + "/out", image],
            log: "run")
        #expect(status != 0 && log.contains("tissue.npy is a folder"), "\(log)")
        #expect(!log.contains("mapping"), "it mapped first: \(log)")
    }

    @Test("inspect-image estimates a net that is not exact, with a note saying how run maps it")
    func inspectImageOfAPaddedNet() throws {
        let (group, image) = try Self.groupWithImage("inspect-padded")
        defer { group.stop() }
        let net = TestPaths.fixtures.appendingPathComponent("strided_lrn_pad").path
        let (status, log) = try SlideMapTests.coordinator(
            group,
            ["inspect-image", image, "--model", net + "/deploy.prototxt", "--weights", net + "/weights.caffemodel"],
            log: "inspect")
        #expect(status == 0, "\(log)")
        #expect(log.contains("note: the net is not exact") && log.contains("--allow-padding"), "\(log)")
        #expect(log.contains("level 0: map"), "\(log)")
    }
}
