/// When a running task counts as a straggler and gets a copy on another worker
/// (speculative execution, as in MapReduce's backup tasks and Spark's
/// `spark.speculation`): once a job has `minSamples` completed tasks, a task running
/// longer than `max(floor, factor × quantile of the job's task times)` is overdue.
/// Task time is dispatch → result, so it includes the wait behind the worker's other
/// task (credit): the factor covers that.
package struct StragglerPolicy: Sendable, Equatable {
    /// Never call a task late before this many seconds.
    package var floorSeconds: Double = 10
    package var factor: Double = 3
    /// Which quantile of the measured times (0.5 = median).
    package var quantile: Double = 0.5
    package var minSamples = 3
    /// The deadline while fewer than `minSamples` of the job's tasks are measured (and none is queued): a worker that keeps its session
    /// (heartbeats) but never answers held a job's first tasks for good (hostile-peer audit 54 F7: a 1-task job
    /// never ended).
    package var unmeasuredSeconds: Double = 300
    /// Copies a task of a job not yet measured may get, each once the newest attempt is overdue in its turn (a copy
    /// sent to another silent session got none: audit 54 F7, 8 such sessions stalled a 16-task job); a measured
    /// job's task gets one.
    package var maxCopies = 2
    /// The most recent task times kept per job.
    package static let window = 512

    package init(floorSeconds: Double = 10, factor: Double = 3, quantile: Double = 0.5, minSamples: Int = 3) {
        self.floorSeconds = floorSeconds
        self.factor = factor
        self.quantile = quantile
        self.minSamples = minSamples
    }

    /// The deadline for the job's tasks given its measured task times; nil while too few are (then
    /// `unmeasuredSeconds` holds, once none of the job's tasks waits).
    package func deadline(samples: [Double]) -> Double? {
        guard samples.count >= max(1, minSamples) else { return nil }
        let sorted = samples.sorted()
        let q = sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * quantile).rounded()))]
        return max(floorSeconds, factor * q)
    }
}
