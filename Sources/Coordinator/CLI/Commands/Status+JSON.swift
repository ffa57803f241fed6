import Foundation
import TesseraWire

/// `status --json`: one JSON object on one line, keys sorted, its fields documented in
/// the README ("status --json"). Keys are only ever added, never renamed or removed.
extension Status {
    static func json(_ s: Wire.JobStatus) -> String {
        let object = s.jobID == nil ? clusterObject(s) : jobObject(s)
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// `status JOB --json` when the coordinator refuses to answer (another key's job): its id and why.
    static func refusalJSON(job: UInt64, _ reason: String) -> String {
        let object: [String: Any] = ["id": job, "state": "refused", "message": reason]
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// `status JOB --json`: the job's record and its outputs; an unknown job: its id,
    /// state "unknown" and the reason.
    static func jobObject(_ s: Wire.JobStatus) -> [String: Any] {
        guard let j = s.details?.jobs.first else {
            return ["id": s.jobID ?? 0, "state": "\(s.state)", "message": s.message]
        }
        var object = job(j)
        object["outputs"] = s.outputFiles
        return object
    }

    /// A job of a listing or `status JOB`.
    static func job(_ j: Wire.JobSummary) -> [String: Any] {
        [
            "id": j.id,
            "state": "\(j.state)",
            "waiting_for_workers": j.waitingForWorkers,
            "image": j.image,
            "owner": j.owner.isEmpty ? NSNull() : j.owner,
            "tasks": [
                "total": j.tasks, "queued": j.queued, "running": j.running, "done": j.done, "failed": j.failed,
            ],
            "workers": j.workers,
            "tasks_per_second": rounded(j.tasksPerSecond, 3),
            "pixels_per_second": rounded(j.pixelsPerSecond, 0),
            "submitted": timestamp(j.submitted),
            "ended": timestamp(j.ended),
            "message": j.message,
        ]
    }

    /// `status --json`: the cluster, its workers and the listed jobs.
    static func clusterObject(_ s: Wire.JobStatus) -> [String: Any] {
        let d = s.details ?? Wire.StatusDetails()
        // (queued: active jobs that no connected worker may take.)
        let state = s.state == .done ? "idle" : s.workers == 0 || s.state == .queued ? "waiting_for_workers" : "running"
        var counts: [String: Any] = [:]
        for (state, count) in zip(Wire.StatusDetails.countedStates, d.jobCounts) { counts["\(state)"] = count }
        return [
            "state": state,
            "workers": d.workers.map {
                ["name": $0.name, "threads": $0.threads, "tasks_in_flight": $0.inFlight, "tasks_done": $0.tasksDone]
            },
            "tasks": [
                "queued": s.tasksQueued, "running": s.tasksRunning, "done": s.tasksDone, "failed": s.tasksFailed,
            ],
            "tasks_per_second": rounded(s.tasksPerSecond, 3),
            "pixels_per_second": rounded(s.pixelsPerSecond, 0),
            "rate_window_seconds": d.rateWindowSeconds,
            "active_jobs": d.activeJobs,
            "job_counts": counts,
            "jobs_matched": d.matched,
            "jobs": d.jobs.map(job),
        ]
    }

    private static func rounded(_ v: Double, _ digits: Int) -> Double {
        let scale = pow(10, Double(digits))
        return (v * scale).rounded() / scale
    }
}
