import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraEngine
import TesseraModel
import TesseraWire

/// A stateless worker: registers with a coordinator, heartbeats, fetches models it
/// lacks by digest (checking the digest), runs tasks on the engine and returns their
/// results. It keeps no job state: killed and restarted, it is a new worker.
///
/// Two threads: the socket thread (the caller of `run()`) owns the DEALER and never
/// computes, so heartbeats flow while a task runs; the compute thread takes tasks
/// from a lock-protected queue and posts outcomes to an outbox, waking the socket
/// thread through an inproc PAIR.
public final class WorkerAgent: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var coordinator: String
        public var name: String
        /// Engine threads per task.
        public var threads: Int
        public var heartbeat = Heartbeat()
        /// Test hook: sleep this long before each task (a slow worker, a job that lasts).
        public var taskDelayMilliseconds = 0
        /// CURVE keys (`WorkerAgent+Security`); nil: plain connection.
        public var curve: CurveClientSecurity?
        /// Where this worker computes its tiles.
        public var device: ComputeDevice = .cpu
        public init(coordinator: String, name: String, threads: Int) {
            self.coordinator = coordinator
            self.name = name
            self.threads = threads
        }
    }

    enum Outcome {
        case result(Wire.TaskResult)
        case failure(Wire.TaskFailure)
    }

    public let configuration: Configuration
    let logger: Logger
    let context: ZMQContext
    let wakeEndpoint = "inproc://tessera-worker-wake-\(UUID().uuidString)"

    // Shared between the two threads, under `lock`.
    let lock = NSCondition()
    var queue: [(Wire.TaskSpec, ModelBundle)] = []
    var outbox: [Outcome] = []
    var computing: Wire.TaskRef?
    var stopRequested = false
    var generation = 0

    public internal(set) var tasksDone = 0

    public init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        context = try ZMQContext()
    }

    /// Asks `run()` to return (after saying goodbye with the unfinished tasks). Thread-safe.
    public func stop() {
        lock.lock()
        stopRequested = true
        lock.broadcast()
        lock.unlock()
    }

    var shouldStop: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopRequested
    }

    /// Serves until `stop()`.
    public func run() throws {
        let wake = try ZMQSocket(context, type: .pair)
        try wake.set(.maxMessageSize, 1024)
        try wake.bind(wakeEndpoint)
        let compute = Thread { [self] in computeLoop() }
        compute.name = "tessera-compute"
        compute.start()
        defer {
            stop()
        }
        var backoff = 1.0
        while !shouldStop {
            let heardBack = try session(wake)
            if shouldStop { break }
            backoff = heardBack ? 1 : min(32, backoff * 2)
            logger.warning("coordinator lost: reconnecting", metadata: ["in": "\(backoff)s"])
            let until = monotonicSeconds() + backoff
            while !shouldStop && monotonicSeconds() < until { usleep(50_000) }
        }
    }

    func enqueue(_ spec: Wire.TaskSpec, _ bundle: ModelBundle) {
        lock.lock()
        queue.append((spec, bundle))
        lock.signal()
        lock.unlock()
    }
}
