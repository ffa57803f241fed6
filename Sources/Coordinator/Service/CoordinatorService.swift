import Foundation
import Logging
import TesseraCluster
import TesseraWire

/// The coordinator: binds a ROUTER for workers and one for clients, plans jobs into
/// tasks, dispatches them with per-worker credit, heartbeats both ways, requeues the
/// tasks of dead or departing workers, sends a copy of an overdue task to another
/// worker (first result wins, later duplicates are dropped), drops unsolicited
/// results, assembles maps and writes outputs (docs/ARCHITECTURE.md §7). With a persistent
/// store it keeps every job and completed tile on disk and resumes unfinished jobs
/// at start (`CoordinatorLoop+Resume.swift`).
///
/// All sockets and all scheduling state live on one thread (`start()` creates it):
/// the state is a `CoordinatorLoop` that this thread creates and never hands on, so
/// the compiler checks that nothing else reaches it. Only writing a finished job's
/// outputs runs elsewhere, so heartbeats keep flowing while a large map is written.
public final class CoordinatorService: Sendable {
    public struct Configuration: Sendable {
        public var workerEndpoint: String
        public var clientEndpoint: String
        /// Job store: `jobs/<id>/` holds the job's spec, model files, image, completed
        /// tiles (`tiles/<task>.f32`) and outputs. Nil: a temporary folder.
        public var storeDirectory: String?
        /// Accept `path` sources and an `out=` folder from clients (the embedded `run` only).
        public var allowLocalPaths = false
        public var heartbeat = Heartbeat()
        /// When a running task is overdue and gets a copy on another worker.
        public var stragglers = StragglerPolicy()
        /// Tasks one worker may hold at once.
        public var credit = 2
        /// Largest message accepted on the client endpoint (uploads travel in one message).
        public var maxClientMessageBytes = 1 << 30
        /// CURVE keys (`CoordinatorService+Security`); nil: no encryption, every peer allowed.
        public var curve: CurveServerSecurity?

        public init(workerEndpoint: String, clientEndpoint: String, storeDirectory: String? = nil) {
            self.workerEndpoint = workerEndpoint
            self.clientEndpoint = clientEndpoint
            self.storeDirectory = storeDirectory
        }
    }

    public let configuration: Configuration
    let context: ZMQContext
    let logger: Logger
    /// Set by `stop()` from any thread; the loop ends when it sees it.
    private let stopRequested = Locked(false)
    private let stopped = DispatchSemaphore(value: 0)

    public init(context: ZMQContext, configuration: Configuration, logger: Logger) {
        self.context = context
        self.configuration = configuration
        self.logger = logger
    }

    /// Binds both endpoints and starts the loop thread; returns the bound endpoints
    /// (with the real ports for `tcp://…:*`).
    public func start() throws -> (workers: String, clients: String) {
        let ready = DispatchSemaphore(value: 0)
        let outcome = Locked<Result<(String, String), any Error>>(.failure(ClusterError("not started")))
        let thread = Thread { [self] in
            do {
                let zap = try startAuthentication()
                defer { zap.stop() }
                let workerSocket = try ZMQSocket(context, type: .router)
                try workerSocket.applyTesseraDefaults(maxMessageSize: 1 << 30)
                try secure(workerSocket)
                try workerSocket.bind(configuration.workerEndpoint)
                let clientSocket = try ZMQSocket(context, type: .router)
                try clientSocket.applyTesseraDefaults(maxMessageSize: Int64(configuration.maxClientMessageBytes))
                try secure(clientSocket)
                try clientSocket.bind(configuration.clientEndpoint)
                let loop = CoordinatorLoop(configuration: configuration, logger: logger, stopRequested: stopRequested)
                try loop.prepareStore()
                let endpoints = (try workerSocket.lastEndpoint, try clientSocket.lastEndpoint)
                outcome.withLock { $0 = .success(endpoints) }
                ready.signal()
                loop.run(workerSocket, clientSocket)
            } catch {
                outcome.withLock { $0 = .failure(error) }
                ready.signal()
            }
            stopped.signal()
        }
        thread.name = "tessera-coordinator"
        thread.start()
        ready.wait()
        let endpoints = try outcome.withLock { $0 }.get()
        return (endpoints.0, endpoints.1)
    }

    /// Asks the loop to end and waits for it (sockets are closed on its thread).
    public func stop() {
        let already = stopRequested.withLock { requested in
            defer { requested = true }
            return requested
        }
        // Pass the one signal on: `waitUntilStopped()` (main thread) may be waiting too.
        if !already { stopped.wait(); stopped.signal() }
    }

    /// Blocks until `stop()` is called from elsewhere (a signal handler).
    public func waitUntilStopped() {
        stopped.wait()
        stopped.signal()
    }
}
