/// Every metric Tessera exports, with its type and help text: the one list the
/// Prometheus backend takes help texts from (`DocumentedPrometheusFactory`), the
/// tests check exports against, and the README's metrics table follows.
///
/// Code records metrics through swift-metrics (`Counter(label: MetricName.tasksDone)`);
/// without `--metrics-address` nothing is bootstrapped and every recording is a no-op.
package enum MetricName {
    // Coordinator
    package static let jobs = "tessera_jobs"
    package static let tasks = "tessera_tasks"
    package static let tasksDone = "tessera_tasks_done_total"
    package static let tasksRetried = "tessera_tasks_retried_total"
    package static let pixelsMapped = "tessera_pixels_mapped_total"
    package static let workers = "tessera_workers"
    package static let workerTasksDone = "tessera_worker_tasks_done_total"
    package static let workerBusySeconds = "tessera_worker_busy_seconds_total"
    package static let heartbeatMisses = "tessera_heartbeat_misses_total"
    package static let refusals = "tessera_refusals_total"
    package static let jobsEvicted = "tessera_jobs_evicted_total"
    package static let storeBytes = "tessera_store_bytes"
    package static let modelBytes = "tessera_model_bytes"
    // Both
    package static let bytesReceived = "tessera_bytes_received_total"
    package static let bytesSent = "tessera_bytes_sent_total"
    package static let residentBytes = "process_resident_memory_bytes"
    package static let loopStallSeconds = "tessera_loop_stall_seconds"
    // Worker
    package static let workerRegistered = "tessera_worker_registered"
    package static let tasksComputed = "tessera_tasks_computed_total"
    package static let computeSeconds = "tessera_compute_seconds_total"
    package static let regionsPrefetched = "tessera_regions_prefetched_total"
}

package enum MetricCatalog {
    package enum Kind: String, Sendable { case counter, gauge }

    package struct Entry: Sendable {
        package let name: String
        package let kind: Kind
        package let labels: [String]
        package let help: String
        /// Who exports it: "coordinator", "worker" or "both".
        package let exporter: String
    }

    package static let entries: [Entry] = [
        Entry(
            name: MetricName.jobs, kind: .gauge, labels: ["state"],
            help: "Jobs the coordinator knows, by state (queued, running, done, failed, cancelled).",
            exporter: "coordinator"),
        Entry(
            name: MetricName.tasks, kind: .gauge, labels: ["state"],
            help: "Tasks of active jobs, by state (queued, running).", exporter: "coordinator"),
        Entry(
            name: MetricName.tasksDone, kind: .counter, labels: [],
            help: "Task results accepted from workers (tiles computed).", exporter: "coordinator"),
        Entry(
            name: MetricName.tasksRetried, kind: .counter, labels: [],
            help: "Tasks queued again after a worker failed, left or went silent.", exporter: "coordinator"),
        Entry(
            name: MetricName.pixelsMapped, kind: .counter, labels: [],
            help: "Map pixels in accepted task results (rate: pixels per second).", exporter: "coordinator"),
        Entry(
            name: MetricName.workers, kind: .gauge, labels: [],
            help: "Workers registered with the coordinator.", exporter: "coordinator"),
        Entry(
            name: MetricName.workerTasksDone, kind: .counter, labels: ["worker"],
            help: "Task results accepted, by the worker's claimed name.", exporter: "coordinator"),
        Entry(
            name: MetricName.workerBusySeconds, kind: .counter, labels: ["worker"],
            help: "Dispatch-to-result seconds of accepted tasks, by the worker's claimed name.",
            exporter: "coordinator"),
        Entry(
            name: MetricName.heartbeatMisses, kind: .counter, labels: [],
            help: "Workers declared dead after missing their heartbeats.", exporter: "coordinator"),
        Entry(
            name: MetricName.refusals, kind: .counter, labels: ["reason"],
            help: "Messages, results and submissions refused, by reason.", exporter: "coordinator"),
        Entry(
            name: MetricName.jobsEvicted, kind: .counter, labels: [],
            help: "Ended jobs removed by retention (--keep-finished, --max-store).", exporter: "coordinator"),
        Entry(
            name: MetricName.storeBytes, kind: .gauge, labels: [],
            help: "Bytes in the job store's jobs folder (measured every retention check).",
            exporter: "coordinator"),
        Entry(
            name: MetricName.modelBytes, kind: .gauge, labels: [],
            help: "Bytes of model files the coordinator holds in memory (active jobs only).",
            exporter: "coordinator"),
        Entry(
            name: MetricName.bytesReceived, kind: .counter, labels: ["endpoint"],
            help: "Bytes received on ZeroMQ sockets, by endpoint.", exporter: "both"),
        Entry(
            name: MetricName.bytesSent, kind: .counter, labels: ["endpoint"],
            help: "Bytes sent on ZeroMQ sockets, by endpoint.", exporter: "both"),
        Entry(
            name: MetricName.residentBytes, kind: .gauge, labels: [],
            help: "Resident set size of the process in bytes.", exporter: "both"),
        Entry(
            name: MetricName.loopStallSeconds, kind: .gauge, labels: [],
            help: "Seconds since the main loop last went round (/healthz fails above its limit).",
            exporter: "both"),
        Entry(
            name: MetricName.workerRegistered, kind: .gauge, labels: [],
            help: "1 while the worker is registered with a coordinator, else 0.", exporter: "worker"),
        Entry(
            name: MetricName.tasksComputed, kind: .counter, labels: ["outcome"],
            help: "Tasks this worker computed, by outcome (done, failed).", exporter: "worker"),
        Entry(
            name: MetricName.computeSeconds, kind: .counter, labels: [],
            help: "Seconds this worker spent computing tasks (busy time).", exporter: "worker"),
        Entry(
            name: MetricName.regionsPrefetched, kind: .counter, labels: [],
            help: "Shared-storage tiles whose input region was read while the tile before computed.",
            exporter: "worker"),
    ]

    /// Help text by metric name.
    package static let help: [String: String] = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.help) })
}
