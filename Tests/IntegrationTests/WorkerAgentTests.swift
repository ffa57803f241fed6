import ArgumentParser
import Foundation
import Logging
import Testing

@testable import TesseraCluster
@testable import TesseraEngine
@testable import TesseraWire
@testable import TestSupport
@testable import Worker

/// The worker agent against a scripted coordinator (a bare ROUTER on loopback).
@Suite("Worker agent: hello, start-up failures, the task-delay hook")
struct WorkerAgentTests {
    /// A ROUTER standing in for the coordinator.
    struct FakeCoordinator: ~Copyable {
        let socket: ZMQSocket
        let endpoint: String

        init(_ context: ZMQContext) throws {
            let s = try ZMQSocket(context, type: .router)
            try s.applyTesseraDefaults()
            try s.bind("tcp://127.0.0.1:*")
            endpoint = try s.lastEndpoint
            socket = s
        }

        /// The next message of interest (heartbeats skipped), with its sender.
        func next(timeout: Double = 10) throws -> (RoutingID, WireMessage)? {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                guard try socket.waitForMessage(timeoutMilliseconds: 100), let e = try socket.receiveWire() else {
                    continue
                }
                let m = try e.message.get()
                if m != .heartbeat, let peer = e.peer { return (peer, m) }
            }
            return nil
        }
    }

    /// Runs the agent on a thread; the result is `run()`'s outcome once it returns.
    static func start(_ agent: WorkerAgent) -> Locked<Result<Void, any Error>?> {
        let outcome = Locked<Result<Void, any Error>?>(nil)
        Thread {
            let result = Result { try agent.run() }
            outcome.withLock { $0 = result }
        }.start()
        return outcome
    }

    static func wait(_ outcome: Locked<Result<Void, any Error>?>, seconds: Double) -> Result<Void, any Error>? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let r = outcome.withLock({ $0 }) { return r }
            usleep(20_000)
        }
        return nil
    }

    @Test("The hello names the worker's device, not always cpu")
    func helloNamesTheDevice() throws {
        let context = try ZMQContext()
        let coordinator = try FakeCoordinator(context)
        var config = WorkerAgent.Configuration(coordinator: coordinator.endpoint, name: "gpu-worker", threads: 1)
        config.device = .cuda(index: 1, precision: .tf32)
        let agent = try WorkerAgent(configuration: config, logger: Logger(label: "test.worker"))
        let outcome = Self.start(agent)
        defer {
            agent.stop()
            _ = Self.wait(outcome, seconds: 10)
        }
        guard case .hello(let hello)? = try coordinator.next()?.1 else {
            Issue.record("no hello")
            return
        }
        #expect(hello.workerName == "gpu-worker")
        #expect(hello.device == "cuda:1 (tf32)")
    }

    @Test("A compute thread that cannot start stops the worker with the reason, before it registers")
    func computeThreadFailureStopsTheWorker() throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "no wake-up pipe" } }
        let context = try ZMQContext()
        let coordinator = try FakeCoordinator(context)
        let agent = try WorkerAgent(
            configuration: .init(coordinator: coordinator.endpoint, name: "w", threads: 1),
            logger: Logger(label: "test.worker"))
        agent.computeStartFault.withLock { $0 = Broken() }
        let outcome = Self.start(agent)
        guard case .failure(let error)? = Self.wait(outcome, seconds: 10) else {
            agent.stop()
            Issue.record("the worker kept running without its compute thread")
            return
        }
        #expect(
            "\(error)".contains("compute thread cannot start") && "\(error)".contains("no wake-up pipe"), "\(error)")
        #expect(try coordinator.next(timeout: 0.3) == nil, "the worker registered without a compute thread")
    }

    @Test("A task delay longer than 71 minutes does not trap; the worker still stops promptly")
    func longTaskDelay() throws {
        let context = try ZMQContext()
        let coordinator = try FakeCoordinator(context)
        var config = WorkerAgent.Configuration(coordinator: coordinator.endpoint, name: "slow", threads: 1)
        config.taskDelayMilliseconds = 5_000_000  // × 1000 µs overflowed UInt32
        let agent = try WorkerAgent(configuration: config, logger: Logger(label: "test.worker"))
        let outcome = Self.start(agent)
        guard let (peer, first) = try coordinator.next(), case .hello = first else {
            agent.stop()
            Issue.record("no hello")
            return
        }
        try coordinator.socket.send(
            .welcome(Wire.Welcome(heartbeatIntervalMilliseconds: 1000, heartbeatLiveness: 3, maxTasksInFlight: 2)),
            to: peer)
        let bundle = ModelBundle(prototxt: Array("name: \"n\"\n".utf8), weights: [1, 2, 3])
        var spec = WireSamples.task()
        spec.modelDigest = bundle.digest
        try coordinator.socket.send(.task(spec), to: peer)
        guard case .modelRequest(let digest)? = try coordinator.next()?.1, digest == bundle.digest else {
            agent.stop()
            Issue.record("the worker did not ask for the model")
            return
        }
        try coordinator.socket.send(
            .modelData(Wire.ModelData(digest: bundle.digest, prototxt: bundle.prototxt, weights: bundle.weights)),
            to: peer)
        usleep(500_000)  // the compute thread takes the task and starts its delay
        agent.stop()
        guard case .success? = Self.wait(outcome, seconds: 10) else {
            Issue.record("the worker did not stop")
            return
        }
        let last = try coordinator.next()?.1
        guard case .goodbye(let refs)? = last else {
            Issue.record("no goodbye: \(String(describing: last))")
            return
        }
        #expect(refs == [spec.ref], "the delayed task should be returned")
    }

    @Test("--debug-task-delay-ms above a day is refused")
    func taskDelayOption() throws {
        let base = ["--coordinator", "tcp://127.0.0.1:5555"]
        #expect(throws: (any Error).self) {
            try TesseraWorker.parseAsRoot(base + ["--debug-task-delay-ms", "86400001"])
        }
        #expect(throws: (any Error).self) { try TesseraWorker.parseAsRoot(base + ["--debug-task-delay-ms=-1"]) }
        #expect(throws: Never.self) { try TesseraWorker.parseAsRoot(base + ["--debug-task-delay-ms", "5000000"]) }
    }

    @Test(
        "A task whose pieces are cut off (a gap, or another message before the last) is reported failed",
        arguments: ["gap", "cut"])
    func cutTaskReported(damage: String) throws {
        let context = try ZMQContext()
        let coordinator = try FakeCoordinator(context)
        let agent = try WorkerAgent(
            configuration: .init(coordinator: coordinator.endpoint, name: "w", threads: 1),
            logger: Logger(label: "test.worker"))
        let outcome = Self.start(agent)
        defer {
            agent.stop()
            _ = Self.wait(outcome, seconds: 10)
        }
        guard let (peer, first) = try coordinator.next(), case .hello = first else {
            Issue.record("no hello")
            return
        }
        try coordinator.socket.send(
            .welcome(Wire.Welcome(heartbeatIntervalMilliseconds: 1000, heartbeatLiveness: 3, maxTasksInFlight: 2)),
            to: peer)
        var spec = WireSamples.task()
        spec.input = Wire.PixelRegion(
            height: 512, width: 512, channels: 3, bytesPerSample: 1, pixels: [UInt8](repeating: 9, count: 786_432))
        let pieces = WireSamples.pieces(WireMessage.task(spec).encode())
        #expect(pieces.count >= 4)
        // Audit 43 F5: the worker dropped the pieces and said nothing, so the task waited on a live worker.
        if damage == "gap" {
            for i in [0, 2, 3] { try coordinator.socket.send(.piece(pieces[i]), to: peer) }
        } else {
            for i in [0, 1] { try coordinator.socket.send(.piece(pieces[i]), to: peer) }
            try coordinator.socket.send(.heartbeat, to: peer)
        }
        let reply = try coordinator.next()?.1
        guard case .taskFailed(let failure)? = reply else {
            Issue.record("no failure report for the cut task: \(String(describing: reply))")
            return
        }
        #expect(failure.jobID == spec.jobID && failure.taskID == spec.taskID && failure.attempt == spec.attempt)
        #expect(failure.message.hasPrefix(Wire.TaskFailure.unreadable), "\(failure.message)")
    }
}
