import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraEngine
import TesseraMetrics
import TesseraModel
import TesseraWire

/// A stateless worker: registers with a coordinator, heartbeats, fetches models it
/// lacks by digest (checking the digest), runs tasks on the engine and returns their
/// results. It keeps no job state: killed and restarted, it is a new worker.
///
/// Two threads: the socket thread (the caller of `run()`) owns the DEALER and never
/// computes, so heartbeats flow while a task runs; the compute thread takes tasks
/// from a lock-protected queue and posts outcomes to an outbox, waking the socket
/// thread through an inproc PAIR. All the two threads share is in `shared`.
package final class WorkerAgent: Sendable {
    package struct Configuration: Sendable {
        package var coordinator: String
        package var name: String
        /// Engine threads per task.
        package var threads: Int
        package var heartbeat = Heartbeat()
        /// Test hook: sleep this long before each task (a slow worker, a job that lasts);
        /// at most `maxTaskDelayMilliseconds`.
        package var taskDelayMilliseconds = 0
        /// CURVE keys (`WorkerAgent+Security`); nil: plain connection.
        package var curve: CurveClientSecurity?
        /// Where this worker computes its tiles.
        package var device: ComputeDevice = .cpu
        /// This agent's index when the process runs several (one per `--device` entry),
        /// nil when it runs one.
        package var pipeline: Int?
        /// Folders (resolved, absolute) under which shared-storage tasks may read
        /// images and write map stores; empty: such tasks are refused.
        package var sharedRoots: [String] = []
        package init(coordinator: String, name: String, threads: Int) {
            self.coordinator = coordinator
            self.name = name
            self.threads = threads
        }
    }

    enum Outcome: Sendable {
        case result(Wire.TaskResult)
        case receipt(Wire.TileReceipt)
        case failure(Wire.TaskFailure)
    }

    /// A task as the worker queues it: pixels in the message, or a map tile read
    /// from and written to shared storage.
    enum WorkItem: Sendable {
        case pixels(Wire.TaskSpec)
        case tile(Wire.TileTaskSpec)

        var ref: Wire.TaskRef {
            switch self {
            case .pixels(let s): s.ref
            case .tile(let s): s.ref
            }
        }
        var modelDigest: Wire.ModelDigest {
            switch self {
            case .pixels(let s): s.modelDigest
            case .tile(let s): s.modelDigest
            }
        }
        var attempt: UInt32 {
            switch self {
            case .pixels(let s): s.attempt
            case .tile(let s): s.attempt
            }
        }
        var options: [UInt8] {
            switch self {
            case .pixels(let s): s.options
            case .tile(let s): s.options
            }
        }
        func failure(_ message: String) -> Wire.TaskFailure {
            Wire.TaskFailure(jobID: ref.jobID, taskID: ref.taskID, attempt: attempt, message: message)
        }
    }

    /// The longest `taskDelayMilliseconds` honoured (a day); longer delays are cut to it.
    package static let maxTaskDelayMilliseconds = 86_400_000

    package let configuration: Configuration
    let logger: Logger
    let context: ZMQContext
    let wakeEndpoint = "inproc://tessera-worker-wake-\(UUID().uuidString)"
    /// Names this worker's sessions to the coordinator (`WorkerIdentity`): one that comes back is the same worker.
    let processToken = UInt64.random(in: 1...UInt64.max)

    /// What the socket thread and the compute thread share.
    struct Shared: Sendable {
        /// Tasks for the compute thread, oldest first.
        var queue: [(WorkItem, ModelBundle)] = []
        /// Outcomes for the socket thread to send, oldest first.
        var outbox: [Outcome] = []
        /// The task being computed, returned with the queue when leaving.
        var computing: Wire.TaskRef?
        /// A computed shared-storage tile waiting for (or in) the writer thread: the
        /// compute thread goes on with the next task meanwhile (`WorkerAgent+Writer`).
        var write: PendingWrite?
        var stopRequested = false
        /// Bumped by each session: an outcome computed for an older one is dropped.
        var generation = 0
        var tasksDone = 0
    }

    let shared = Locked(Shared())
    /// What `/healthz` and `/readyz` read: the socket thread's ticks, registration.
    package let vitals = ServiceVitals(notReadyBecause: "not registered with a coordinator yet")
    let metrics: WorkerMetrics
    /// Test hook: the compute thread fails to start with this error.
    let computeStartFault = Locked<(any Error)?>(nil)

    /// Tasks computed and handed to the socket thread so far.
    package var tasksDone: Int { shared.withLock { $0.tasksDone } }

    package init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        metrics = WorkerMetrics(pipeline: configuration.pipeline)
        context = try ZMQContext()
    }

    /// Asks `run()` to return (after saying goodbye with the unfinished tasks). Thread-safe.
    package func stop() {
        shared.withLockWakingWaiters { $0.stopRequested = true }
    }

    var shouldStop: Bool {
        shared.withLock { $0.stopRequested }
    }

    /// Serves until `stop()`. Throws, before taking any task, if the compute thread
    /// cannot start.
    package func run() throws {
        // The compute and writer threads each push a byte here when they post an outcome.
        let wake = try ZMQSocket(context, type: .pull)
        try wake.set(.maxMessageSize, 1024)
        try wake.bind(wakeEndpoint)
        let computeStarted = Locked<Result<Void, any Error>?>(nil)
        let compute = Thread { [self] in computeLoop(started: computeStarted) }
        compute.name = "tessera-compute"
        compute.start()
        let writer = Thread { [self] in writeLoop() }
        writer.name = "tessera-writer"
        writer.start()
        defer {
            stop()
        }
        if case .failure(let error) = computeStarted.wait(until: { $0 != nil }, then: { $0! }) {
            throw ClusterError("the compute thread cannot start: \(error)")
        }
        // Doubling up to 8 s between tries: with 32 s, workers took up to 33 s to rejoin a restarted
        // coordinator (operator audit F14); a hello every 8 s from each of a few hundred workers is nothing.
        var backoff = 1.0
        while !shouldStop {
            let end = try session(wake)
            if shouldStop { break }
            backoff = end == .heardBack ? 1 : min(8, backoff * 2)
            let metadata: Logger.Metadata = ["coordinator": "\(configuration.coordinator)", "in": "\(backoff)s"]
            switch end {
            case .heardBack: logger.warning("coordinator lost: reconnecting", metadata: metadata)
            case .noAnswer: logger.warning("no answer from the coordinator: trying again", metadata: metadata)
            // It answered with a refusal, logged as an error with the reason (audit 44 D7: "no answer").
            case .refused: logger.warning("refused by the coordinator: trying again", metadata: metadata)
            }
            let until = monotonicSeconds() + backoff
            while !shouldStop && monotonicSeconds() < until {
                vitals.tick()
                usleep(50_000)
            }
        }
    }

    /// Queues a task for the compute thread and wakes it.
    func enqueue(_ item: WorkItem, _ bundle: ModelBundle) {
        shared.withLockWakingWaiters { $0.queue.append((item, bundle)) }
    }
}
