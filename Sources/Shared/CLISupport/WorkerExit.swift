/// Exit statuses of `tessera-worker` that tell its supervisor something (an embedded `run`'s `LocalWorkers`).
package enum WorkerExit {
    /// The compute device could not be opened (no GPU, no CUDA library): starting the worker again cannot help
    /// (EX_CONFIG of sysexits.h).
    package static let deviceUnavailable: Int32 = 78
}
