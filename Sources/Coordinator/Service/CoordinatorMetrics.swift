import CoreMetrics
import TesseraCore
import TesseraMetrics
import TesseraWire

/// The coordinator's metrics (docs: README "Metrics and health"), recorded through
/// swift-metrics: no-ops unless `serve --metrics-address` bootstrapped the exporter.
/// The loop bumps counters where things happen (one call each, so the scheduling
/// code stays readable) and `publish` sets the gauges from its state at most twice a
/// second. Loop thread only.
final class CoordinatorMetrics {
    private let tasksDone = Counter(label: MetricName.tasksDone)
    private let tasksRetried = Counter(label: MetricName.tasksRetried)
    private let pixelsMapped = Counter(label: MetricName.pixelsMapped)
    private let heartbeatMisses = Counter(label: MetricName.heartbeatMisses)
    private let jobsEvicted = Counter(label: MetricName.jobsEvicted)
    private let storeBytes = Gauge(label: MetricName.storeBytes)
    private let modelBytes = Gauge(label: MetricName.modelBytes)
    private let workers = Gauge(label: MetricName.workers)
    private let jobs = Dictionary(
        uniqueKeysWithValues: CoordinatorMetrics.jobStates.map {
            ($0, Gauge(label: MetricName.jobs, dimensions: [("state", $0)]))
        })
    private let queued = Gauge(label: MetricName.tasks, dimensions: [("state", "queued")])
    private let running = Gauge(label: MetricName.tasks, dimensions: [("state", "running")])
    private var traffic: [String: (received: Counter, sent: Counter, last: (UInt64, UInt64))] = [:]
    /// Per-worker series by claimed name; past `maxWorkerSeries` names they share "other".
    private var perWorker: [String: (tasks: Counter, busy: FloatingPointCounter)] = [:]
    static let maxWorkerSeries = 512
    private(set) var lastPublished = 0.0

    static let jobStates = ["queued", "running", "done", "failed", "cancelled"]

    /// The refusals an operator alerts on, whose series are there at 0 from the start: a series that
    /// appears only at the first refusal reads "no data" on a dashboard (operator audit 38 F7).
    static let commonRefusals = [
        "submit", "too-many-pixels", "too-many-jobs", "queue-full", "store-full", "not-owner", "revoked-key",
        "auth-unlisted-key",
        "auth-role", "handshake-mechanism", "handshake-key", "handshake-protocol", "handshake-dropped",
    ]

    init() {
        for reason in Self.commonRefusals {
            Counter(label: MetricName.refusals, dimensions: [("reason", reason)]).increment(by: 0)
        }
    }

    /// A result accepted from `worker` for a task dispatched at `since` (monotonic seconds).
    func taskDone(by worker: String, since: Double, pixels: Int) {
        let seconds = monotonicSeconds() - since
        tasksDone.increment()
        pixelsMapped.increment(by: Int64(pixels))
        let name = perWorker[worker] != nil || perWorker.count < Self.maxWorkerSeries ? worker : "other"
        let series =
            perWorker[name]
            ?? (
                Counter(label: MetricName.workerTasksDone, dimensions: [("worker", name)]),
                FloatingPointCounter(label: MetricName.workerBusySeconds, dimensions: [("worker", name)])
            )
        perWorker[name] = series
        series.tasks.increment()
        series.busy.increment(by: max(0, seconds))
    }

    func taskRetried() { tasksRetried.increment() }
    func heartbeatMissed() { heartbeatMisses.increment() }
    func jobEvicted() { jobsEvicted.increment() }
    func store(bytes: Int64) { storeBytes.record(bytes) }

    /// A refusal, by reason (the rate-limited log's key, or a submission's): from any thread.
    static let refused: @Sendable (String) -> Void = { reason in
        Counter(label: MetricName.refusals, dimensions: [("reason", reason)]).increment()
    }

    /// Sets the gauges from the loop's state and adds the sockets' new traffic.
    func publish(
        jobs all: [CoordinatorJob], archived: some Sequence<ArchivedJob>, workers count: Int,
        traffic sockets: [(endpoint: String, received: UInt64, sent: UInt64)]
    ) {
        lastPublished = monotonicSeconds()
        var heldModelBytes = 0
        // Counted by the state's raw value, named once: "\(state)" per job reflects on the enum, and twice a
        // second over 20 000 ended jobs that was a third of an idle coordinator's CPU time.
        var counts = [Int](repeating: 0, count: Wire.JobState.allCases.count)
        var queuedTasks = 0
        var runningTasks = 0
        for job in all {
            counts[Int(job.state.rawValue)] += 1
            heldModelBytes += job.model.byteCount
            if job.isActive {
                queuedTasks += job.pending.count
                runningTasks += job.running
            }
        }
        for job in archived { counts[Int(job.state.rawValue)] += 1 }
        var byState: [String: Int] = [:]
        for state in Wire.JobState.allCases { byState["\(state)"] = counts[Int(state.rawValue)] }
        for (state, gauge) in jobs { gauge.record(byState[state] ?? 0) }
        modelBytes.record(heldModelBytes)
        queued.record(queuedTasks)
        running.record(runningTasks)
        workers.record(count)
        for socket in sockets {
            let entry =
                traffic[socket.endpoint]
                ?? (
                    Counter(label: MetricName.bytesReceived, dimensions: [("endpoint", socket.endpoint)]),
                    Counter(label: MetricName.bytesSent, dimensions: [("endpoint", socket.endpoint)]), (0, 0)
                )
            entry.received.increment(by: Int64(clamping: socket.received &- entry.last.0))
            entry.sent.increment(by: Int64(clamping: socket.sent &- entry.last.1))
            traffic[socket.endpoint] = (entry.received, entry.sent, (socket.received, socket.sent))
        }
    }
}

extension CoordinatorLoop {
    /// Once per loop iteration: the probes' tick, the gauges (twice a second), retention.
    func housekeeping(_ workerSocket: borrowing ZMQSocket, _ clientSocket: borrowing ZMQSocket) {
        vitals?.tick()
        let now = monotonicSeconds()
        if now - metrics.lastPublished >= 0.5 {
            metrics.publish(
                jobs: Array(jobs.values), archived: archived.values, workers: workers.count,
                traffic: [
                    ("workers", workerSocket.traffic.received, workerSocket.traffic.sent),
                    ("clients", clientSocket.traffic.received, clientSocket.traffic.sent),
                ])
        }
        enforceRetention(now)
        retryOutputs(now)
        if now - lastJobOrderPrune >= 1 {
            lastJobOrderPrune = now
            pruneJobOrder()
            archiveEndedJobs(now: now)
        }
    }

    /// Keeps in `jobOrder` only the jobs the loop still works on: active ones, and ended ones with receipts to
    /// commit or tiles held (or being written again) for the store. The ended ones stay in `jobs` for status and fetch; dispatch, the
    /// straggler scan and the receipt commits walked all of them on every pass, so the loop's cost grew with
    /// every job the coordinator had ever finished (soak audit 31, measured linear in the jobs done).
    func pruneJobOrder() {
        jobOrder.removeAll { id in
            guard let job = jobs[id] else { return true }
            return !job.isActive && job.journalUnsynced.isEmpty && job.heldTiles.isEmpty && job.retrying == 0
        }
    }
}
