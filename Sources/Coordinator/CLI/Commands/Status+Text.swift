import Foundation
import TesseraCluster
import TesseraWire

/// `status`'s text: a job's (its own lines only, nothing cluster-wide) or the
/// cluster's, from a detailed reply; a plain reply (a coordinator of an earlier build)
/// is printed as such builds printed it.
extension Status {
    static func describe(_ s: Wire.JobStatus) -> String {
        guard let details = s.details else { return describePlain(s) }
        if s.jobID != nil, let j = details.jobs.first { return describe(job: j, outputs: s.outputFiles) }
        if let id = s.jobID { return "job \(id): \(s.state)" + (s.message.isEmpty ? "" : "\n\(s.message)") }
        return describe(cluster: s, details)
    }

    /// One job: state, image, owner; tasks; when submitted and ended; its rate and the
    /// workers on it while active; its note and outputs.
    static func describe(job j: Wire.JobSummary, outputs: [String]) -> String {
        let active = j.state == .queued || j.state == .running
        var lines = [
            "job \(j.id): \(StatusText.state(j))" + (j.image.isEmpty ? "" : ", \(j.image)")
                + (j.owner.isEmpty ? "" : " [\(j.owner)]"),
            // `failed` counts the tasks that failed at least once, done ones too (audit 29 N5: "1 done, 1 failed
            // (1 in all)" read as two tasks of one).
            "tasks: \(j.queued) queued, \(j.running) running, \(j.done) done (\(j.tasks) in all); "
                + "\(j.failed) failed at least once",
        ]
        var times: [String] = []
        if j.submitted > 0 { times.append("submitted \(time(j.submitted))") }
        if j.ended > 0 {
            times.append(
                "ended \(time(j.ended))"
                    + (j.submitted > 0 ? " (\(duration(j.ended - j.submitted)) after)" : ""))
        }
        if !times.isEmpty { lines.append(times.joined(separator: ", ")) }
        if active {
            lines.append(
                String(format: "throughput: %.2f tasks/s, %.3f Mpx/s", j.tasksPerSecond, j.pixelsPerSecond / 1e6)
                    + ", on \(j.workers) worker(s)")
            if j.waitingForWorkers {
                lines.append("no worker that can take its tasks is connected: they wait until one joins")
            }
        } else if j.tasksPerSecond > 0 || j.pixelsPerSecond > 0 {
            // An ended job's average over its run in this coordinator's life, as the README says (docs/CLI audit
            // 36 F9: only --json had it).
            lines.append(
                String(
                    format: "average throughput: %.2f tasks/s, %.3f Mpx/s", j.tasksPerSecond, j.pixelsPerSecond / 1e6))
        }
        if !j.message.isEmpty { lines.append(j.message) }
        if !outputs.isEmpty { lines.append("outputs: " + outputs.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }

    /// The cluster: its state, the workers, the active jobs' tasks and rate, the jobs
    /// counted by state, and the listed ones (with a note when some were left out).
    static func describe(cluster s: Wire.JobStatus, _ d: Wire.StatusDetails) -> String {
        let state =
            s.state == .done
            ? "idle"
            : s.workers == 0
                ? "waiting for workers (no worker is connected)"
                : s.state == .queued ? "waiting for workers (none connected may take the jobs' tasks)" : "running"
        let workers = d.workers.map {
            "\($0.name) (\($0.threads) threads, \($0.inFlight) in flight, \($0.tasksDone) done)"
        }
        var lines = [
            "cluster: \(state), \(d.activeJobs) active job(s)",
            "workers: \(d.workers.count)" + (workers.isEmpty ? "" : ": " + workers.joined(separator: ", ")),
            "tasks of active jobs: \(s.tasksQueued) queued, \(s.tasksRunning) running, \(s.tasksDone) done, "
                + "\(s.tasksFailed) failed",
            String(
                format: "throughput: %.2f tasks/s, %.3f Mpx/s (last %.0f s)", s.tasksPerSecond,
                s.pixelsPerSecond / 1e6, d.rateWindowSeconds),
        ]
        let counts = zip(Wire.StatusDetails.countedStates, d.jobCounts).map { "\($1) \($0)" }
        lines.append("jobs: " + counts.joined(separator: ", "))
        lines += d.jobs.map { StatusText.jobLine($0, owner: true) }
        if d.matched > UInt64(d.jobs.count) {
            lines.append(
                "(\(d.jobs.count) of \(d.matched) listed: the active ones and the last "
                    + "\(Wire.StatusQuery.recentEnded) ended; --all lists every one)")
        }
        return lines.joined(separator: "\n")
    }

    /// A plain reply, as earlier builds printed it.
    static func describePlain(_ s: Wire.JobStatus) -> String {
        var lines = [
            s.jobID.map { "job \($0): \(s.state)" }
                ?? "cluster: \(s.state == .done ? "idle" : s.state == .queued ? "waiting for workers" : "running")",
            "tasks: \(s.tasksQueued) queued, \(s.tasksRunning) running, \(s.tasksDone) done, \(s.tasksFailed) failed",
            "workers: \(s.workers)",
            String(format: "throughput: %.2f tasks/s, %.3f Mpx/s", s.tasksPerSecond, s.pixelsPerSecond / 1e6),
        ]
        if !s.message.isEmpty { lines.append(s.message) }
        if s.workers == 0, s.tasksQueued + s.tasksRunning > 0, s.state == .running || s.state == .queued {
            // (operator audit: a job read "running" with no worker left to run it)
            lines.append("no worker is connected: the tasks wait until one joins")
        }
        if !s.outputFiles.isEmpty { lines.append("outputs: " + s.outputFiles.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }

    /// "25 s", "4 min 10 s", "2 h 5 min".
    static func duration(_ seconds: Double) -> String {
        let s = Int(max(0, seconds).rounded())
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        return "\(s / 3600) h \(s % 3600 / 60) min"
    }
}
