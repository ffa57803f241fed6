import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraWire
@testable import TestSupport

/// Audit 45: broken workers (here `--max-memory-mib 1`: every task fails at once, as with a bad GPU or mount) used
/// up a task's attempts while a good worker was there to compute it, and the job failed blaming the tile size.
@Suite("Broken workers do not fail a job a good worker can do", .serialized)
struct BrokenWorkerTests {
    static let demo = TestPaths.packageRoot.appendingPathComponent("models/demo").path

    func submit(_ group: ProcessGroup, _ clients: String, image: String, log: String) throws -> Process {
        try group.start(
            "tessera-coordinator",
            [
                "submit", "--coordinator", clients, "--model", Self.demo + "/deploy.prototxt", "--weights",
                Self.demo + "/nuclei32.caffemodel", "--mean", "134,151,171", "--scale", "0.015625", "--tile", "256",
                "--outputs", "npy", "--wait", "--out", group.directory + "/out", image,
            ], log: log)
    }

    func broken(_ group: ProcessGroup, _ workers: String, _ name: String) throws {
        try group.start(
            "tessera-worker",
            ["--coordinator", workers, "--threads", "1", "--name", name, "--max-memory-mib", "1"], log: name)
    }

    /// S2: three broken workers failed each task 3 times (once each) while the good worker was idle.
    @Test("Three broken workers and a good one: the job completes, each task tried on the good worker")
    func threeBrokenOneGood() throws {
        let group = try ProcessGroup("broken-three")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator()
        for name in ["x1", "x2", "x3"] { try broken(group, workers, name) }
        usleep(500_000)
        try group.startWorker(workers, name: "good", threads: 1)
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 768, width: 768)
        usleep(500_000)
        let p = try submit(group, clients, image: image, log: "client")
        #expect(group.wait(p, timeout: 240) == 0, "\(group.log("client"))\n\(group.log("coordinator"))")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/out/tissue.npy"))
        #expect(group.log("coordinator").contains("--max-memory-mib"), "the broken workers got no task")
    }

    /// S1: straggler copies of a slow worker's task went again and again to the broken worker (the free one),
    /// whose failures used up the task's attempts while the slow worker computed it fine.
    @Test("Straggler copies go to no worker that failed the task, and a failing copy does not fail the job")
    func copiesToABrokenWorker() throws {
        let group = try ProcessGroup("broken-copies")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: [
            "--straggler-floor-ms", "500", "--straggler-factor", "1.5",
        ])
        try broken(group, workers, "x")
        usleep(300_000)
        try group.startWorker(workers, name: "fast", threads: 1)
        try group.start(
            "tessera-worker",
            ["--coordinator", workers, "--threads", "1", "--name", "slow", "--debug-task-delay-ms", "4000"],
            log: "slow")
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 768, width: 768)
        usleep(500_000)
        let p = try submit(group, clients, image: image, log: "client")
        #expect(group.wait(p, timeout: 240) == 0, "\(group.log("client"))\n\(group.log("coordinator"))")
        let log = group.log("coordinator")
        #expect(log.contains("straggler"), "no copy was sent: \(log)")
        // At most one copy of a task goes to the broken worker: once it failed the task, it gets no copy of it.
        let copiesToX = log.split(separator: "\n").filter { $0.contains("copy-to=x ") }.compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("task=") }.map(String.init)
        }
        #expect(Set(copiesToX).count == copiesToX.count, "copies of one task went to the broken worker twice: \(log)")
    }
}
