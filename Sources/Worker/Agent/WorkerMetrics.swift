import CoreMetrics
import TesseraCore
import TesseraMetrics
import TesseraWire

/// The worker's metrics (README "Metrics and health"), recorded through swift-metrics:
/// no-ops unless `--metrics-address` bootstrapped the exporter before the agent was made.
struct WorkerMetrics: Sendable {
    /// Per pipeline (a `pipeline` dimension) when the process runs several.
    private let registered: Gauge
    private let done = Counter(label: MetricName.tasksComputed, dimensions: [("outcome", "done")])
    private let failed = Counter(label: MetricName.tasksComputed, dimensions: [("outcome", "failed")])
    private let busy = FloatingPointCounter(label: MetricName.computeSeconds)
    private let prefetched = Counter(label: MetricName.regionsPrefetched)
    private let received = Counter(label: MetricName.bytesReceived, dimensions: [("endpoint", "coordinator")])
    private let sent = Counter(label: MetricName.bytesSent, dimensions: [("endpoint", "coordinator")])

    init(pipeline: Int?) {
        registered = Gauge(
            label: MetricName.workerRegistered, dimensions: pipeline.map { [("pipeline", "\($0)")] } ?? [])
    }

    func computed(ok: Bool, seconds: Double) {
        (ok ? done : failed).increment()
        busy.increment(by: max(0, seconds))
    }

    func registered(_ yes: Bool) { registered.record(yes ? 1 : 0) }

    func usedPrefetchedRegion() { prefetched.increment() }

    /// Adds what `traffic` moved since `seen`; returns the new mark.
    func traffic(_ traffic: SocketTraffic, since seen: (UInt64, UInt64)) -> (UInt64, UInt64) {
        let now = (traffic.received, traffic.sent)
        if now.0 != seen.0 { received.increment(by: Int64(clamping: now.0 &- seen.0)) }
        if now.1 != seen.1 { sent.increment(by: Int64(clamping: now.1 &- seen.1)) }
        return now
    }
}
