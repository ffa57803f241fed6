import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// The coordinator: binds a ROUTER for workers and one for clients, plans jobs into
/// tasks, dispatches them with per-worker credit, heartbeats both ways, requeues the
/// tasks of dead or departing workers, sends a copy of an overdue task to another
/// worker (first result wins, later duplicates are dropped), drops unsolicited
/// results, assembles maps and writes outputs (docs/ARCHITECTURE.md §7). With a persistent
/// store it keeps every job and completed tile on disk and resumes unfinished jobs
/// at start (`CoordinatorService+Resume.swift`).
///
/// All sockets and all scheduling state live on one thread (`start()` creates it);
/// only writing a finished job's outputs runs elsewhere, so heartbeats keep flowing
/// while a large map is written.
///
/// Unchecked Sendable: the scheduling state below ("Loop-thread state") is read and
/// written only by the loop thread (`prepareStore`, `loop`, `shutDown` and what they
/// call); what other threads touch is `Locked` (`shared`, `completions`), immutable,
/// or a queue or semaphore.
public final class CoordinatorService: @unchecked Sendable {
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

    final class Worker {
        let id: RoutingID
        let name: String
        let threads: UInt32
        var lastHeard = monotonicSeconds()
        var lastSent = monotonicSeconds()
        var inFlight: Set<Wire.TaskRef> = []
        var tasksDone = 0
        init(id: RoutingID, name: String, threads: UInt32) {
            self.id = id
            self.name = name
            self.threads = threads
        }
    }

    public let configuration: Configuration
    let context: ZMQContext
    let logger: Logger
    var rejects: RateLimitedLog
    /// Set by `stop()` from any thread; the loop ends when it sees it.
    private let stopRequested = Locked(false)
    /// Finished jobs' output writes, from `finishQueue` to the loop thread.
    let completions = Locked<[(UInt64, Result<[String], any Error>)]>([])
    private let stopped = DispatchSemaphore(value: 0)
    let finishQueue = DispatchQueue(label: "tessera.coordinator.outputs")
    /// Tile and job-state writes, in order, off the loop thread (each one fsyncs).
    let storeQueue = DispatchQueue(label: "tessera.coordinator.store")

    // Loop-thread state.
    var workers: [RoutingID: Worker] = [:]
    var workerOrder: [RoutingID] = []
    var jobs: [UInt64: CoordinatorJob] = [:]
    var jobOrder: [UInt64] = []
    /// Jobs that ended before this coordinator started (read from the store).
    var archived: [UInt64: ArchivedJob] = [:]
    var nextJobID: UInt64 = 1
    var rotation = 0
    var lastStragglerScan = 0.0
    /// Set once stopping: submissions are refused.
    var draining = false
    var store = JobStore(root: "")
    /// Whether the store outlives this process (`storeDirectory` given).
    var persistent: Bool { configuration.storeDirectory != nil }
    var plans: [String: ModelPlan] = [:]

    public init(context: ZMQContext, configuration: Configuration, logger: Logger) {
        self.context = context
        self.configuration = configuration
        self.logger = logger
        rejects = RateLimitedLog(logger: logger)
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
                try prepareStore()
                let endpoints = (try workerSocket.lastEndpoint, try clientSocket.lastEndpoint)
                outcome.withLock { $0 = .success(endpoints) }
                ready.signal()
                loop(workerSocket, clientSocket)
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

    private var shouldStop: Bool {
        stopRequested.withLock { $0 }
    }

    private func prepareStore() throws {
        if let dir = configuration.storeDirectory {
            store = JobStore(root: dir)
            try DurableFile.createDirectory(store.jobsDirectory)
        } else {
            store = JobStore(root: FileManager.default.temporaryDirectory
                .appendingPathComponent("tessera-store-\(getpid())-\(UUID().uuidString)").path)
            try FileManager.default.createDirectory(atPath: store.jobsDirectory, withIntermediateDirectories: true)
        }
        // Job ids stay unique across restarts on the same store.
        nextJobID = (store.jobIDs().max() ?? 0) + 1
        if persistent { resumeFromStore() }
    }

    // MARK: Loop

    private func loop(_ workerSocket: borrowing ZMQSocket, _ clientSocket: borrowing ZMQSocket) {
        var poller = ZMQPoller()
        let wi = poller.add(workerSocket)
        let ci = poller.add(clientSocket)
        let clientLimits: WireLimits = {
            var l = WireLimits()
            l.maxTotalBytes = configuration.maxClientMessageBytes
            return l
        }()
        while !shouldStop {
            do {
                try poller.poll(timeoutMilliseconds: 50)
                if poller.isReadable(wi) {
                    while let envelope = try workerSocket.receiveWire(dontWait: true) {
                        handleWorker(envelope, workerSocket)
                    }
                }
                if poller.isReadable(ci) {
                    while let envelope = try clientSocket.receiveWire(limits: clientLimits, dontWait: true) {
                        handleClient(envelope, clientSocket)
                    }
                }
                collectCompletions()
                heartbeatAndPurge(workerSocket)
                dispatch(workerSocket)
            } catch ZMQError.terminated {
                break
            } catch {
                logger.error("coordinator loop: \(error)")
            }
        }
        shutDown(workerSocket, clientSocket, clientLimits)
    }

    /// Stops accepting jobs (a last pass over waiting client requests refuses
    /// submissions), waits for outputs being written and for the store's queued
    /// writes, then tells the workers to go (they reconnect with backoff, so a
    /// restarted coordinator gets them back).
    private func shutDown(_ workerSocket: borrowing ZMQSocket, _ clientSocket: borrowing ZMQSocket,
                          _ clientLimits: WireLimits) {
        draining = true
        while let envelope = try? clientSocket.receiveWire(limits: clientLimits, dontWait: true) {
            handleClient(envelope, clientSocket)
        }
        finishQueue.sync {}
        collectCompletions()
        storeQueue.sync {}
        for (_, w) in workers { try? workerSocket.send(.disconnect(reason: "coordinator stopping"), to: w.id, flags: .dontWait) }
        if persistent {
            let unfinished = jobs.values.filter(\.isActive)
            logger.info("store synced", metadata: [
                "store": "\(store.root)", "unfinished": "\(unfinished.count)",
                "tiles": "\(unfinished.reduce(0) { $0 + $1.done })"])
        } else {
            try? FileManager.default.removeItem(atPath: store.root)
        }
    }
}
