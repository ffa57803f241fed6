import CoreMetrics
import Foundation
import Prometheus

/// The process's Prometheus registry, installed as swift-metrics' backend: code records
/// through swift-metrics (`Counter(label:)`, `Gauge(label:)`) and `/metrics` serves the
/// registry in Prometheus' text format.
///
/// `shared` bootstraps swift-metrics the first time it is read (once per process, as
/// swift-metrics requires): read it before the service that records starts, or its
/// metrics stay no-ops.
package final class MetricsExporter: @unchecked Sendable {
    // Safe: `collectors` is private and read or written only inside `lock`; the
    // registry is Sendable.
    package static let shared: MetricsExporter = {
        let exporter = MetricsExporter()
        MetricsSystem.bootstrap(exporter.factory)
        return exporter
    }()

    let registry = PrometheusCollectorRegistry()
    private let lock = NSLock()
    private var collectors: [@Sendable () -> Void] = []

    /// A separate registry (tests); `shared` is the one swift-metrics records into.
    package init() {}

    /// The swift-metrics factory that records into this registry.
    package var factory: any MetricsFactory { DocumentedPrometheusFactory(registry: registry) }

    /// Runs `collect` before each export, on the exporting thread: for values measured
    /// when asked (memory, a loop's stall), never for work that may block.
    package func addCollector(_ collect: @escaping @Sendable () -> Void) {
        lock.lock()
        collectors.append(collect)
        lock.unlock()
    }

    /// Every metric, in Prometheus' text exposition format (version 0.0.4).
    package func render() -> String {
        lock.lock()
        let all = collectors
        lock.unlock()
        for collect in all { collect() }
        factory.makeRecorder(label: MetricName.residentBytes, dimensions: [], aggregate: false)
            .record(Int64(ProcessMemory.residentBytes))
        return registry.emitToString()
    }
}
