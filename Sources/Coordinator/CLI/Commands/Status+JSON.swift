import Foundation
import TesseraCore
import TesseraWire

/// `status --json`: one JSON object on one line, keys sorted, its fields documented in
/// the README ("status --json"). Keys are only ever added, never renamed or removed.
extension Status {
    static func json(_ s: Wire.JobStatus) -> String {
        (s.jobID == nil ? clusterObject(s) : jobObject(s)).text
    }

    /// `status JOB --json` when the coordinator refuses to answer (another key's job): its id and why.
    static func refusalJSON(job: UInt64, _ reason: String) -> String {
        JSONValue.object(["id": .unsigned(job), "state": .string("refused"), "message": .string(reason)]).text
    }

    /// `status JOB --json`: the job's record and its outputs; an unknown job: its id,
    /// state "unknown" and the reason.
    static func jobObject(_ s: Wire.JobStatus) -> JSONValue {
        guard let j = s.details?.jobs.first else {
            return .object([
                "id": .unsigned(s.jobID ?? 0), "state": .string("\(s.state)"), "message": .string(s.message),
            ])
        }
        var object = job(j)
        object["outputs"] = .array(s.outputFiles.map { .string($0) })
        return .object(object)
    }

    /// A job of a listing or `status JOB`.
    static func job(_ j: Wire.JobSummary) -> [String: JSONValue] {
        [
            "id": .unsigned(j.id),
            "state": .string("\(j.state)"),
            "waiting_for_workers": .bool(j.waitingForWorkers),
            "image": .string(j.image),
            "owner": .string(j.owner.isEmpty ? nil : j.owner),
            "tasks": .object([
                "total": .unsigned(j.tasks), "queued": .unsigned(j.queued), "running": .unsigned(j.running),
                "done": .unsigned(j.done), "failed": .unsigned(j.failed),
            ]),
            "workers": .unsigned(UInt64(j.workers)),
            "tasks_per_second": rounded(j.tasksPerSecond, 3),
            "pixels_per_second": rounded(j.pixelsPerSecond, 0),
            "submitted": timestamp(j.submitted),
            "ended": timestamp(j.ended),
            "message": .string(j.message),
        ]
    }

    /// `status --json`: the cluster, its workers and the listed jobs.
    static func clusterObject(_ s: Wire.JobStatus) -> JSONValue {
        let d = s.details ?? Wire.StatusDetails()
        // (queued: active jobs that no connected worker may take.)
        let state = s.state == .done ? "idle" : s.workers == 0 || s.state == .queued ? "waiting_for_workers" : "running"
        var counts: [String: JSONValue] = [:]
        for (state, count) in zip(Wire.StatusDetails.countedStates, d.jobCounts) {
            counts["\(state)"] = .unsigned(count)
        }
        return .object([
            "state": .string(state),
            "workers": .array(
                d.workers.map {
                    .object([
                        "name": .string($0.name), "threads": .unsigned(UInt64($0.threads)),
                        "tasks_in_flight": .unsigned(UInt64($0.inFlight)), "tasks_done": .unsigned($0.tasksDone),
                    ])
                }),
            "tasks": .object([
                "queued": .unsigned(s.tasksQueued), "running": .unsigned(s.tasksRunning),
                "done": .unsigned(s.tasksDone), "failed": .unsigned(s.tasksFailed),
            ]),
            "tasks_per_second": rounded(s.tasksPerSecond, 3),
            "pixels_per_second": rounded(s.pixelsPerSecond, 0),
            "rate_window_seconds": .number(d.rateWindowSeconds),
            "active_jobs": .unsigned(d.activeJobs),
            "job_counts": .object(counts),
            "jobs_matched": .unsigned(d.matched),
            "jobs": .array(d.jobs.map { .object(job($0)) }),
        ])
    }

    private static func rounded(_ v: Double, _ digits: Int) -> JSONValue {
        let scale = pow(10, Double(digits))
        return .number((v * scale).rounded() / scale)
    }
}
