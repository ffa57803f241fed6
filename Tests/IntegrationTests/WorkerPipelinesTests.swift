import Foundation
import Testing

@testable import TesseraCluster
@testable import TesseraEngine
@testable import TesseraWire
@testable import TestSupport

/// One worker process, several compute pipelines (`--device` with a list, `cuda:all`):
/// the coordinator sees each pipeline as a worker with its own credit.
@Suite("Worker pipelines: one process, several devices")
struct WorkerPipelinesTests {
    @Test(
        "--device cpu,cpu: two workers to the coordinator, both compute, the map is byte-identical; SIGTERM says goodbye twice"
    )
    func twoPipelines() throws {
        let group = try ProcessGroup("pipelines")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator()
        let worker = try group.start(
            "tessera-worker",
            [
                "--coordinator", workers, "--threads", "1", "--name", "box", "--device", "cpu, cpu",
                "--debug-task-delay-ms", "30",
            ], log: "box")
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let expected = try ClusterFixture.localNPY(image: image, mode: .dense, scratch: group.directory)
        let client = try group.submitFixture(clients, image: image, out: group.directory + "/out", log: "client")
        #expect(group.wait(client, timeout: 60) == 0, "\(group.log("client"))\n\(group.log("coordinator"))")
        #expect(ClusterFixture.bytes(group.directory + "/out/tissue.npy") == expected)
        kill(worker.processIdentifier, SIGTERM)
        #expect(group.wait(worker, timeout: 20) == 0, "\(group.log("box"))")
        // The worker has exited; the coordinator logs each goodbye as its loop reads it.
        var log = group.log("coordinator")
        let deadline = Date().addingTimeInterval(10)
        while log.components(separatedBy: "said goodbye").count < 3 && Date() < deadline {
            usleep(50_000)
            log = group.log("coordinator")
        }
        for pipeline in ["box-0", "box-1"] {
            #expect(log.contains("worker=\(pipeline) workers="), "\(pipeline) joined: \(log)")
            let left = log.split(separator: "\n").first {
                $0.contains("said goodbye") && $0.contains("worker=\(pipeline) ")
            }
            let tasks = left.flatMap { $0.split(separator: " ").first { $0.hasPrefix("tasks=") } }
            #expect(tasks != nil && tasks != "tasks=0", "\(pipeline) computed tasks and said goodbye: \(log)")
        }
    }

    @Test("Device lists: parsing, pipelines per entry, clear errors")
    func parsing() throws {
        #expect(try ComputeDevice.devices(parsing: "cpu") == [.cpu])
        #expect(
            try ComputeDevice.devices(parsing: "cuda:1, cuda:0,cuda:1")
                == [1, 0, 1].map { .cuda(index: $0, precision: .fp32) })
        #expect(try ComputeDevice.devices(parsing: "cuda", precision: .tf32) == [.cuda(index: 0, precision: .tf32)])
        for bad in ["", "cpu,", "gpu", "cuda:-1", "cuda:x"] {
            let error = #expect(throws: EngineError.self, "\(bad)") { try ComputeDevice.devices(parsing: bad) }
            #expect(
                error?.description.contains("cuda:all, or a comma-separated list") == true,
                "\(bad): \(String(describing: error))")
        }
        let many = Array(repeating: "cpu", count: ComputeDevice.maxPipelines + 1).joined(separator: ",")
        #expect(throws: EngineError.self) { try ComputeDevice.devices(parsing: many) }
    }

    @Test("tessera-worker --device with a bad entry in a list says which, and what a list may hold")
    func badListOnTheCommandLine() throws {
        let group = try ProcessGroup("pipelines-bad-device")
        defer { group.stop() }
        let worker = try group.start(
            "tessera-worker", ["--coordinator", "tcp://127.0.0.1:1", "--device", "cpu,gpu0"], log: "worker")
        #expect(group.wait(worker, timeout: 20) != 0)
        let log = group.log("worker")
        for needle in ["\"gpu0\"", "cuda:all, or a comma-separated list"] {
            #expect(log.contains(needle), "\(needle) in: \(log)")
        }
    }
}
