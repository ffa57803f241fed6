import Foundation
import Logging
import TesseraCluster
import TesseraImage
import TesseraMetrics
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
package final class CoordinatorService: Sendable {
    package struct Configuration: Sendable {
        package var workerEndpoint: String
        package var clientEndpoint: String
        /// Binds the worker endpoint as a Unix socket in an owner-only folder of the store (`run`'s embedded
        /// coordinator: no port is taken, and only this user's processes can join as workers), or
        /// `workerEndpoint` where the socket's path is too long for one.
        package var workerSocketInStore = false
        /// Job store: `jobs/<id>/` holds the job's spec, model files, image, completed
        /// tiles (`tiles/<task>.f32`) and outputs. Nil: a temporary folder.
        package var storeDirectory: String?
        /// Accept `path` sources and an `out=` folder from clients (the embedded `run` only).
        package var allowLocalPaths = false
        /// Folders (besides everything, with `allowLocalPaths`) under which clients may
        /// name images and output folders of shared-storage jobs.
        package var sharedRoots: [String] = []
        package var heartbeat = Heartbeat()
        /// When a running task is overdue and gets a copy on another worker.
        package var stragglers = StragglerPolicy()
        /// Tasks one worker may hold at once.
        package var credit = 2
        /// Largest message accepted on the client endpoint (uploads travel in one message).
        package var maxClientMessageBytes = 1 << 30
        /// The largest message a worker endpoint peer may send (libzmq drops the
        /// connection of one that sends more, before buffering it): an upload job's
        /// largest result must fit; shared-storage receipts are tiny.
        package var maxWorkerMessageBytes = 256 << 20
        /// Messages one peer may have received but not yet handled, per endpoint
        /// (`ZMQ_RCVHWM`): past it libzmq stops reading that peer's connection (TCP
        /// backpressure, nothing dropped), so a peer flooding large messages costs at most
        /// (this + 1 being decoded) × the endpoint's message limit. Replies queued to a
        /// client (`ZMQ_SNDHWM`) are capped alike; one past it is dropped and logged.
        package var peerQueueMessages = 2
        /// Bytes of submitted files (image, model) waiting for or in preparation: past
        /// it the loop stops reading the client endpoint until a preparation finishes,
        /// so a flood of uploads waits in the peers' bounded queues, not in memory.
        package var maxPreparingBytes = 256 << 20
        /// An upload job whose client sends no part for this long is dropped (`+Uploads`).
        package var uploadIdleSeconds = 120.0
        /// CURVE keys (`CoordinatorService+Security`); nil: no encryption, every peer allowed.
        package var curve: CurveServerSecurity?
        /// A task that was in flight on this many workers that were then lost (silent or
        /// unreachable: crashed, killed, out of memory, cut off) fails its job, so a task
        /// that kills every worker it reaches cannot loop forever; 0: never.
        package var maxTaskLosses = 3
        /// Tests only: milliseconds each served MiB of a download takes (a slow disk or link).
        package var debugFetchMillisecondsPerMiB = 0
        /// Largest image (width × height, from its header) a submission may bring.
        package var maxPixels = PNGReader.defaultMaxPixels
        /// Unfinished jobs (uploading, being prepared, queued or running) one client key
        /// may have at once; admin keys are exempt; 0: no limit. Without CURVE every
        /// client is the same key, so this limits them together.
        /// Unfinished jobs the coordinator holds in all (whoever's), past which submissions are refused
        /// (admin keys exempt); 0: no limit.
        package var maxJobs = 0
        package var maxJobsPerKey = 0
        /// The seconds over which `status` measures an active job's and the cluster's rate
        /// (`RateWindow`): it falls to 0 this long after the last completion.
        package var rateWindowSeconds = 30.0
        /// Which ended jobs are removed, and how often that is checked (`CoordinatorLoop+Retention`).
        package var retention = RetentionPolicy()

        package init(workerEndpoint: String, clientEndpoint: String, storeDirectory: String? = nil) {
            self.workerEndpoint = workerEndpoint
            self.clientEndpoint = clientEndpoint
            self.storeDirectory = storeDirectory
        }
    }

    package let configuration: Configuration
    let context: ZMQContext
    let logger: Logger
    /// Set by `stop()` from any thread; the loop ends when it sees it.
    private let stopRequested = Locked(false)
    /// Whether `start()` started the loop thread (which signals `stopped` when it ends).
    private let threadStarted = Locked(false)
    private let stopped = DispatchSemaphore(value: 0)
    /// Why the service stopped on its own (`fail`), nil if it did not.
    private let failureReason = Locked<ClusterError?>(nil)
    /// The running ZAP handler, for tests that make it fail.
    let authentication = Locked<ZAPHandler?>(nil)
    /// With CURVE: whether a connection's User-Id is still authorized on the worker endpoint (true)
    /// or the client endpoint (false), from the key folders as re-read now (`startAuthentication`).
    /// Whether a connection's key (User-Id, CURVE key, worker endpoint?) is still authorized.
    let keyStillAuthorized = Locked<(@Sendable (String, String?, Bool) -> Bool)?>(nil)
    /// What `/healthz` and `/readyz` read: the loop's ticks, the endpoints bound.
    package let vitals = ServiceVitals()
    /// The store's jobs folder once it is prepared (`/readyz` checks it is writable).
    let jobsFolder = Locked<String?>(nil)

    package init(context: ZMQContext, configuration: Configuration, logger: Logger) {
        self.context = context
        self.configuration = configuration
        self.logger = logger
    }

    /// Binds both endpoints and starts the loop thread; returns the bound endpoints
    /// (with the real ports for `tcp://…:*`).
    package func start() throws -> (workers: String, clients: String) {
        let ready = DispatchSemaphore(value: 0)
        let outcome = Locked<Result<(String, String), any Error>>(.failure(ClusterError("not started")))
        let thread = Thread { [self] in
            do {
                let zap = try startAuthentication()
                authentication.withLock { $0 = zap }
                defer {
                    authentication.withLock { $0 = nil }
                    zap.stop()
                }
                // The endpoints are closed when this returns: before the ZAP handler stops.
                try serve { endpoints in
                    outcome.withLock { $0 = .success(endpoints) }
                    ready.signal()
                }
            } catch {
                outcome.withLock { $0 = .failure(error) }
                ready.signal()
            }
            stopped.signal()
        }
        thread.name = "tessera-coordinator"
        threadStarted.withLock { $0 = true }
        thread.start()
        ready.wait()
        let endpoints = try outcome.withLock { $0 }.get()
        return (endpoints.0, endpoints.1)
    }

    /// On the loop thread: binds both endpoints, reads the store, reports the bound
    /// endpoints and runs the loop until it stops; the sockets close on return.
    private func serve(started: ((String, String)) -> Void) throws {
        let workerSocket = try ZMQSocket(context, type: .router)
        // Workers send nothing larger than a piece (`Wire.linkFrameBytes`): a larger message is joined from its
        // pieces, under `maxWorkerMessageBytes`. So 64 of a peer's messages may wait (libzmq then stops reading its
        // connection), 8.3 MiB: a wake of the loop takes many pieces, not 2.
        // Sent, per peer: tasks (at most `credit`), model data and heartbeats, and up to 16 pieces of larger ones
        // (2 MiB): the rest waits in the worker's `WireOutbox`, where a revoke can still take it back (libzmq's
        // queue cannot give anything back).
        try workerSocket.applyTesseraDefaults(maxMessageSize: Int64(Wire.linkFrameBytes))
        try workerSocket.set(.receiveHighWaterMark, 64)
        try workerSocket.set(
            .sendHighWaterMark, Int32(configuration.credit + 2 * configuration.peerQueueMessages + 16))
        try secure(workerSocket, domain: Self.workerDomain)
        if !configuration.workerSocketInStore { try workerSocket.bind(configuration.workerEndpoint) }
        let clientSocket = try ZMQSocket(context, type: .router)
        try clientSocket.applyTesseraDefaults(maxMessageSize: Int64(configuration.maxClientMessageBytes))
        // A client has one request in flight; its replies (up to 16 MiB fetch chunks) are capped too.
        try clientSocket.set(.receiveHighWaterMark, Int32(configuration.peerQueueMessages))
        try clientSocket.set(.sendHighWaterMark, Int32(configuration.peerQueueMessages))
        try secure(clientSocket, domain: Self.clientDomain)
        try clientSocket.bind(configuration.clientEndpoint)
        let loop = try CoordinatorLoop(configuration: configuration, logger: logger, stopRequested: stopRequested)
        loop.vitals = vitals
        let check: (@Sendable (String, String?, Bool) -> Bool)? = keyStillAuthorized.withLock { value in value }
        loop.keyStillAuthorized = check
        try loop.prepareStore()
        if configuration.workerSocketInStore {
            // (Its socket file goes when the socket closes: `ZMQSocket.bind`.)
            try workerSocket.bind(try Self.privateEndpoint(in: loop.store.root) ?? configuration.workerEndpoint)
        }
        jobsFolder.withLock { $0 = loop.store.jobsDirectory }
        started((try workerSocket.lastEndpoint, try clientSocket.lastEndpoint))
        vitals.tick()
        vitals.setReady(true, "endpoints bound")
        let workerMonitor = try workerSocket.monitor(events: CoordinatorLoop.handshakeEvents, context: context)
        let clientMonitor = try clientSocket.monitor(events: CoordinatorLoop.handshakeEvents, context: context)
        loop.run(workerSocket, clientSocket, workerMonitor: workerMonitor, clientMonitor: clientMonitor)
        loop.storeLock = nil  // another coordinator (or a restart in this process) may take the store now
        vitals.setReady(false, "stopping")
        try? workerSocket.stopMonitor()
        try? clientSocket.stopMonitor()
        _ = consume workerMonitor  // before the sockets they watch
        _ = consume clientMonitor
        workerSocket.close()
        clientSocket.close()
    }

    /// `ipc://STORE/sockets/workers` in a folder made owner-only, or nil where that path does not fit a Unix
    /// socket's address (108 bytes on Linux).
    static func privateEndpoint(in store: String) throws -> String? {
        let folder = store + "/sockets"
        let path = folder + "/workers"
        guard path.utf8.count < 100 else { return nil }
        try DurableFile.createDirectory(folder)
        guard chmod(folder, DurableFile.directoryMode) == 0 else {
            throw ClusterError(.storage, "cannot make \(folder) owner-only: \(String(cString: strerror(errno)))")
        }
        return "ipc://" + path
    }

    /// Asks the loop to end and waits for it (sockets are closed on its thread).
    /// Returns at once if `start()` never ran.
    package func stop() {
        stopRequested.withLock { $0 = true }
        guard threadStarted.withLock({ $0 }) else { return }
        // Pass the one signal on: another `stop()` or `waitUntilStopped()` may be waiting too.
        stopped.wait()
        stopped.signal()
    }

    /// Blocks until the service stops: `stop()` called from elsewhere (a signal
    /// handler), or a failure (`failure`). Returns at once if `start()` never ran.
    package func waitUntilStopped() {
        guard threadStarted.withLock({ $0 }) else { return }
        stopped.wait()
        stopped.signal()
    }

    /// Why the service stopped on its own (the ZAP handler failed), nil if it did not:
    /// `serve` exits non-zero with it.
    package var failure: ClusterError? {
        failureReason.withLock { $0 }
    }

    /// Stops the service because it cannot go on safely (from any thread): the loop
    /// ends and the endpoints close; `failure` keeps the first reason.
    func fail(_ reason: ClusterError) {
        failureReason.withLock { if $0 == nil { $0 = reason } }
        stopRequested.withLock { $0 = true }
    }
}
