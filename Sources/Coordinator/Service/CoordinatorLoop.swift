import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraMetrics
import TesseraPlan
import TesseraWire

/// The coordinator's scheduling state and its loop, on the loop thread only:
/// `CoordinatorService.start()` creates it on that thread and never hands it on, so
/// it needs no lock and is not Sendable (the compiler keeps it on its thread). What
/// other threads touch is a `Locked` value or a queue.
///
/// The loop polls both sockets, handles every waiting message (`+Workers`, with `+Results`
/// and `+Failures`; `+Clients`), collects finished outputs (`+JobEnd`), heartbeats and purges
/// workers (`+WorkerLinks`), and dispatches tasks (`+Dispatch`). Jobs are created in `+Jobs` and read back from
/// the store at start in `+Resume`.
final class CoordinatorLoop {
    /// A registered worker and what it holds.
    final class Worker {
        let id: RoutingID
        let name: String
        let threads: UInt32
        var lastHeard = monotonicSeconds()
        var lastSent = monotonicSeconds()
        var inFlight: Set<Wire.TaskRef> = []
        /// The tasks in the order they were sent (pruned to `inFlight` now and then): a
        /// worker computes them in that order, so the first one still held is the one
        /// it was computing.
        var sent: [Wire.TaskRef] = []
        var tasksDone = 0
        /// Shared-storage jobs this worker cannot reach (started without `--shared-root`, or with one
        /// that does not hold the job's files): it gets none of their tasks while another worker can.
        var cannotReach: Set<UInt64> = []
        /// The shared-storage jobs whose paths this worker refused as outside its `--shared-root` (or it has
        /// none): it never gets their tasks, and they wait for a worker that can reach them.
        var outsideRoots: Set<UInt64> = []
        /// Messages on their way to it, in order (large ones leave as pieces), and the pieces of the message
        /// it is sending (`CoordinatorLoop+WorkerLinks`, `+Workers`).
        var outbox = WireOutbox()
        var pieces = PieceAssembler()
        /// When its last task was done: a task sent meanwhile began then (it computes them in order).
        var lastDone = 0.0
        /// The worker process whose session this is, when its id names one (`WorkerIdentity`), and its CURVE key.
        let process: UInt64?
        let key: String?
        init(id: RoutingID, name: String, threads: UInt32, key: String? = nil) {
            self.id = id
            self.name = name
            self.threads = threads
            self.key = key
            process = WorkerIdentity.process(of: id)
        }
    }

    let configuration: CoordinatorService.Configuration
    let logger: Logger
    var rejects: RateLimitedLog
    /// When `heartbeatAndPurge` last ran, and when this loop last came back from a gap longer than the heartbeat
    /// deadline (its own stall: `heartbeatAndPurge`, `retire`).
    var lastPurge = monotonicSeconds()
    var lastStallEnd = -Double.infinity
    /// `CoordinatorService.stop()` sets it; the loop ends when it sees it.
    let stopRequested: Locked<Bool>
    /// Finished jobs' output writes, from `finishQueue` to the loop thread.
    let completions = Locked<[(UInt64, Result<[String], any Error>)]>([])
    let finishQueue = DispatchQueue(label: "tessera.coordinator.outputs")
    /// Map tile writes, receipt journal commits and job-state writes, in order, off the loop thread.
    let storeQueue = DispatchQueue(label: "tessera.coordinator.store")

    var workers: [RoutingID: Worker] = [:]
    var workerOrder: [RoutingID] = []
    var jobs: [UInt64: CoordinatorJob] = [:]
    /// The jobs the loop works on, in submission order (`pruneJobOrder` drops the ended ones).
    var jobOrder: [UInt64] = []
    var lastJobOrderPrune = 0.0
    /// Jobs that ended before this coordinator started (read from the store).
    var archived: [UInt64: ArchivedJob] = [:]
    var nextJobID: UInt64 = 1
    /// Every job's completions over the rate window, and when the loop began (`status`).
    lazy var clusterRate = RateWindow(seconds: configuration.rateWindowSeconds)
    let began = monotonicSeconds()
    var rotation = 0
    /// The work given to each key (`FairShare`), and the seconds per map pixel the last task measured, the
    /// estimate of a job none of whose tasks is done yet.
    var fairShare = FairShare()
    var lastSecondsPerPixel = 1e-6
    var lastStragglerScan = 0.0
    /// Set once stopping: submissions are refused.
    var draining = false
    var store = JobStore(root: "")
    /// Whether the store outlives this process (`storeDirectory` given).
    var persistent: Bool { configuration.storeDirectory != nil }
    /// Bytes received from and sent to workers since start (the data path's cost).
    /// What a worker's message, or the message its pieces make, may hold.
    var workerLimits: WireLimits {
        var l = WireLimits()
        l.maxTotalBytes = configuration.maxWorkerMessageBytes
        return l
    }
    /// Jobs ended (cancelled, failed) whose workers are yet to be told to drop their tasks (`pumpOutboxes`).
    var revokes: [UInt64] = []
    /// Whether a worker's outbox held messages its queue did not take at the last `pumpOutboxes`.
    var outboxesWaiting = false
    var workerBytesIn = 0
    var workerBytesOut = 0
    /// When shared-storage receipts were last committed to the store (group commit).
    var lastReceiptCommit = 0.0
    /// Bytes of results waiting for the store queue's durable writes: dispatching
    /// pauses above `maxStoreBacklog`, so a store slower than the workers bounds
    /// memory instead of queueing every result in it.
    let storeBacklog = Locked(0)
    static let maxStoreBacklog = 128 << 20
    /// Upload jobs whose raw image is arriving, the queue that writes their parts, and
    /// the parts written, for the loop (`+Uploads`).
    var uploads: [UInt64: PendingUpload] = [:]
    let uploadQueue = DispatchQueue(label: "tessera.coordinator.uploads")
    let uploadOutcomes = Locked<[UploadOutcome]>([])
    /// Upload jobs' map tile writes done on the store queue, for the loop (`+UploadTiles`).
    let written = Locked<[TileWritten]>([])
    /// Failing tile writes (a full disk): dispatching pauses, logged once per job.
    let storeTrouble: StoreTrouble
    /// Receipt journals whose last append failed: logged once when it starts failing, once when it writes again.
    let failingJournals = Locked(Set<String>())
    /// Jobs prepared off the loop thread (`+Jobs`), how many are under way, and the
    /// plans the preparation shares.
    let prepareQueue = DispatchQueue(label: "tessera.coordinator.prepare")
    let prepared = Locked<[PreparedJob]>([])
    var preparing = 0
    /// The final map path of each shared-storage job being prepared (`sharedOutputClash`).
    var preparingOutputs: [UInt64: String] = [:]
    /// The key of each job being prepared (`admitJobCount`).
    var preparingOwners: [UInt64: String] = [:]
    /// Submitted file bytes held by the submissions being prepared: the client endpoint
    /// is not read while they reach `configuration.maxPreparingBytes`.
    var preparingBytes = 0
    var clientsWerePaused = false
    let planCache = Locked<[String: ModelPlan]>([:])
    /// Submission tokens (`JobOptions.token`) of the jobs this coordinator knows, and
    /// the clients that retried a submission still being prepared: a retry gets the same job.
    var tokens: [String: UInt64] = [:]
    var waitingClients: [UInt64: [RoutingID]] = [:]
    /// Counters and gauges (`CoordinatorMetrics`), the probes' view of the loop, ended-job removal (`+Retention`).
    let metrics = CoordinatorMetrics()
    var vitals: ServiceVitals?
    /// With CURVE: whether a message's User-Id is still authorized (worker endpoint: true). A key whose
    /// `.pub` was deleted stays connected (ZAP judges handshakes only): its messages are refused here.
    var keyStillAuthorized: ((String, String?, Bool) -> Bool)?
    var retention = RetentionState()
    /// Upload jobs' `.npy` views being downloaded (`servedNPY`), a few at a time: opening
    /// one reads the store's metadata and checks every chunk, too much for every piece.
    var servedViews: [UInt64: NPYStoreView] = [:]
    /// When each job's outputs were last asked for (monotonic seconds): retention keeps a job a client is
    /// downloading (`RetentionPolicy.downloadGrace`).
    var lastFetched: [UInt64: Double] = [:]
    /// Their chunks checked against the jobs' receipts as they are first served.
    let servedChecks = ServedChunkCheck()
    /// Download pieces are read here, off the loop (`+Clients`), and handed back in `fetched`.
    let fetchQueue = DispatchQueue(label: "tessera.coordinator.fetch")
    let fetched = Locked<[(client: RoutingID, reply: WireMessage)]>([])
    /// Polled with the sockets: the queues above signal it when they hand the loop
    /// something, so it is answered at once, not at the poll's timeout.
    let wake: WakePipe
    /// Held while serving a persistent store (`StoreLock`); released when the loop ends.
    var storeLock: StoreLock?

    init(configuration: CoordinatorService.Configuration, logger: Logger, stopRequested: Locked<Bool>) throws {
        wake = try WakePipe()
        self.configuration = configuration
        self.logger = logger
        self.stopRequested = stopRequested
        rejects = RateLimitedLog(logger: logger)
        storeTrouble = StoreTrouble(logger: logger)
        rejects.onEvent = CoordinatorMetrics.refused
    }

    private var shouldStop: Bool {
        stopRequested.withLock { $0 }
    }

    func prepareStore() throws {
        if let dir = configuration.storeDirectory {
            store = JobStore(root: dir)
            try DurableFile.createDirectory(store.jobsDirectory)
            try checkWritable()  // first: a read-only store is refused as such, not for its lock file
            storeLock = try StoreLock(root: dir)
            restrictJobsFolder()
        } else {
            // Locked before it is visible, so that another coordinator's sweep (below) knows it is alive.
            let (root, lock) = try TemporaryStores.create(logger: logger)
            store = JobStore(root: root)
            storeLock = lock
            let logger = self.logger
            DispatchQueue.global(qos: .utility).async {
                TemporaryStores.removeAbandoned(keeping: root, logger: logger)
            }
        }
        // Job ids stay unique across restarts on the same store.
        nextJobID = max(store.jobIDs().max() ?? 0, store.highestRemovedID()) + 1
        if persistent { resumeFromStore() }
    }

    /// Refuses to start on a store it cannot write (read-only mount, wrong owner)
    /// rather than fail at the first submission. The probe is an empty file, so a
    /// full disk (which pauses dispatching, `StoreTrouble`) does not stop the start.
    private func checkWritable() throws {
        let probe = store.jobsDirectory + "/.write-check"
        do {
            try DurableFile.write([], to: probe)
            unlink(probe)
        } catch {
            throw ClusterError("the store \(store.root) is not writable (\(error)): check its mount and owner")
        }
    }

    /// A store made by an older version has a `jobs/` folder others can read: make it
    /// owner-only (everything of every job is inside it).
    private func restrictJobsFolder() {
        var info = stat()
        guard stat(store.jobsDirectory, &info) == 0, info.st_mode & 0o077 != 0 else { return }
        let was = String(info.st_mode & 0o777, radix: 8)
        if chmod(store.jobsDirectory, DurableFile.directoryMode) == 0 {
            logger.notice(
                "store: made the jobs folder owner-only",
                metadata: ["folder": "\(store.jobsDirectory)", "was": "0\(was)"])
        } else {
            logger.warning(
                "store: the jobs folder is readable by others and cannot be restricted",
                metadata: [
                    "folder": "\(store.jobsDirectory)", "mode": "0\(was)",
                    "error": "\(String(cString: strerror(errno)))",
                ])
        }
    }

    // MARK: Loop

    /// `workerMonitor`, `clientMonitor`: the endpoints' handshake-failure monitors (`readHandshakeFailures`).
    func run(
        _ workerSocket: borrowing ZMQSocket, _ clientSocket: borrowing ZMQSocket,
        workerMonitor: borrowing ZMQMonitor, clientMonitor: borrowing ZMQMonitor
    ) {
        var poller = ZMQPoller()
        let wi = poller.add(workerSocket)
        let ci = poller.add(clientSocket)
        let woken = poller.add(fileDescriptor: wake.readDescriptor)
        let wm = poller.add(workerMonitor.socket)
        let cm = poller.add(clientMonitor.socket)
        // While the preparations hold `maxPreparingBytes`, only the worker endpoint is
        // polled: clients' messages wait in their bounded queues (`peerQueueMessages`).
        var workersOnly = ZMQPoller()
        workersOnly.add(workerSocket)
        workersOnly.add(fileDescriptor: wake.readDescriptor)
        let clientLimits: WireLimits = {
            var l = WireLimits()
            l.maxTotalBytes = configuration.maxClientMessageBytes
            return l
        }()
        while !shouldStop {
            do {
                let readClients = !clientsPaused()
                // A worker's outbox its queue did not take is tried again soon (`pumpOutboxes`).
                let timeout = outboxesWaiting ? 2 : 50
                if readClients {
                    try poller.poll(timeoutMilliseconds: timeout)
                } else {
                    try workersOnly.poll(timeoutMilliseconds: timeout)
                }
                if readClients ? poller.isReadable(woken) : workersOnly.isReadable(1) { wake.drain() }
                if readClients ? poller.isReadable(wi) : workersOnly.isReadable(0) {
                    while let envelope = try workerSocket.receiveWire(limits: workerLimits, dontWait: true) {
                        workerBytesIn += envelope.byteCount
                        handleWorker(envelope, workerSocket)
                    }
                }
                if readClients && poller.isReadable(ci) {
                    while !clientsPaused(),
                        let envelope = try clientSocket.receiveWire(limits: clientLimits, dontWait: true)
                    {
                        handleClient(envelope, clientSocket)
                    }
                }
                if readClients && poller.isReadable(wm) { readHandshakeFailures(workerMonitor, endpoint: "workers") }
                if readClients && poller.isReadable(cm) { readHandshakeFailures(clientMonitor, endpoint: "clients") }
                collectPrepared(clientSocket)
                collectUploads(clientSocket)
                collectFetched(clientSocket)
                collectCompletions()
                collectWritten()
                commitReceipts()
                heartbeatAndPurge(workerSocket)
                dispatch(workerSocket)
                pumpOutboxes(workerSocket)
                housekeeping(workerSocket, clientSocket)
            } catch ZMQError.terminated {
                break
            } catch {
                logger.error("coordinator loop: \(error)")
            }
        }
        shutDown(workerSocket, clientSocket, clientLimits)
    }

    /// Whether the client endpoint waits: the submissions being prepared hold
    /// `maxPreparingBytes` of files. Logged (rate-limited) when it starts waiting.
    private func clientsPaused() -> Bool {
        let paused = preparingBytes >= configuration.maxPreparingBytes
        defer { clientsWerePaused = paused }
        guard paused else { return false }
        guard !clientsWerePaused else { return true }
        rejects.warning(
            "clients-paused", "client endpoint paused: the submissions being prepared hold their limit",
            metadata: [
                "preparing": "\(preparing)", "bytes": "\(preparingBytes)",
                "limit": "\(configuration.maxPreparingBytes)",
            ])
        return true
    }

    /// Stops accepting jobs (a last pass over waiting client requests refuses
    /// submissions), waits for outputs being written and for the store's queued
    /// writes, then tells the workers to go (they reconnect with backoff, so a
    /// restarted coordinator gets them back).
    private func shutDown(
        _ workerSocket: borrowing ZMQSocket, _ clientSocket: borrowing ZMQSocket,
        _ clientLimits: WireLimits
    ) {
        draining = true
        prepareQueue.sync {}
        collectPrepared(clientSocket)
        commitReceipts(force: true)
        while let envelope = try? clientSocket.receiveWire(limits: clientLimits, dontWait: true) {
            handleClient(envelope, clientSocket)
        }
        finishQueue.sync {}
        collectCompletions()
        storeQueue.sync {}
        collectWritten()
        commitReceipts(force: true)
        storeQueue.sync {}
        for (_, w) in workers {
            _ = try? workerSocket.send(.disconnect(reason: "coordinator stopping"), to: w.id, flags: .dontWait)
        }
        if persistent {
            let unfinished = jobs.values.filter(\.isActive)
            logger.info(
                "store synced",
                metadata: [
                    "store": "\(store.root)", "unfinished": "\(unfinished.count)",
                    "tiles": "\(unfinished.reduce(0) { $0 + $1.done })",
                ])
        } else {
            try? FileManager.default.removeItem(atPath: store.root)
        }
    }
}
