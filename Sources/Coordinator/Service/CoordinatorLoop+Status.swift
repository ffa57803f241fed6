import Foundation
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraWire

/// `status`: of one job, or of the cluster with the jobs the asking key may see. A
/// request with a `Wire.StatusQuery` gets the detailed answer (`Wire.StatusDetails`:
/// every job's record, the workers, the counts); a plain one the reply earlier builds
/// gave, its listing in `message`.
extension CoordinatorLoop {
    /// `message` of job `id`, preceded by why it makes no progress while its tile writes fail (a full
    /// store disk; operator audit: status showed a job stuck at 1/1 tiles with nothing said).
    func withStoreNote(_ message: String, _ id: UInt64) -> String {
        if let wait = jobs[id]?.outputsWait {
            let note = "\(Wire.JobStatus.storeWaitNote): \(wait.note)"
            return message.isEmpty ? note : note + "; " + message
        }
        let failed = storeTrouble.failures(of: id)
        let note: String
        if failed > 0 {
            note =
                "\(Wire.JobStatus.storeWaitNote): \(failed) tile write\(failed == 1 ? "" : "s") failed (a full "
                + "disk?); dispatching resumes when a write succeeds"
        } else if let job = jobs[id], job.isActive, job.shared == nil, !job.pending.isEmpty,
            storeTrouble.paused(monotonicSeconds()) || tilesHeld
        {
            // Its tasks wait too, though none of its writes failed (review 32: only the failing job said why).
            note =
                "\(Wire.JobStatus.storeWaitNote): another job's map tiles could not be written (a full disk?); "
                + "upload jobs' tasks wait until the store takes them"
        } else {
            return message
        }
        return message.isEmpty ? note : note + "; " + message
    }

    /// An active job's summary, its message with why it waits: the store, or a worker that can reach its files
    /// (`takers`).
    func activeSummary(_ job: CoordinatorJob, holders: Int) -> Wire.JobSummary {
        let takers = takers(job).count
        var summary = job.summary(holders: holders, connected: takers)
        summary.message = withStoreNote(summary.message, job.id)
        guard job.isActive, takers == 0, job.shared != nil else { return summary }
        var note: String?
        if let refusal = job.outOfReach, workers.values.allSatisfy({ $0.outsideRoots.contains(job.id) }) {
            // (It said "the workers connected" with none connected: audit 45 S4.)
            note =
                "waiting for a worker whose --shared-root holds its files: "
                + (workers.isEmpty
                    ? "the last worker connected refused them (" : "the workers connected refused them (")
                + refusal + ")"
        } else if !workers.isEmpty {
            note =
                "waiting for a worker whose writes reach the map store: the chunks the workers connected wrote are not "
                + "in it (do they see the same shared storage at the same path?)"
        }
        if let note { summary.message = summary.message.isEmpty ? note : note + "; " + summary.message }
        return summary
    }

    /// Why job `id` is not known: removed (by retention, or a cancelled or abandoned upload), or never was. `status`,
    /// `cancel` and `fetch` say the same (soak audit 31 F6: three different answers for one removed job).
    func unknownJob(_ id: UInt64) -> String {
        id > 0 && id <= max(retention.removedUpTo, store.highestRemovedID())
            ? "it ended and was removed from the store: by retention (serve --keep-finished, --max-store), or it was "
                + "cancelled or abandoned while its image uploaded"
            : "no such job"
    }

    /// The status of a job of this coordinator's life or of the store's past.
    func jobStatus(_ id: UInt64, detailed: Bool) -> WireMessage {
        var status: Wire.JobStatus
        var summary: Wire.JobSummary?
        if let u = uploads[id] {
            status = uploadStatus(u)
            summary = uploadSummary(u)
        } else if let job = jobs[id] {
            status = job.status(workers: workers.count)
            summary = activeSummary(job, holders: jobHolders()[id] ?? 0)
            status.message = summary!.message
        } else if let old = archived[id] {
            status = old.status(workers: workers.count)
            summary = old.summary
        } else {
            status = Wire.JobStatus(
                jobID: id, state: .unknown, workers: UInt32(workers.count), message: unknownJob(id))
        }
        if detailed {
            status.details = Wire.StatusDetails(
                jobs: summary.map { [Self.shown($0)] } ?? [], matched: summary == nil ? 0 : 1,
                rateWindowSeconds: configuration.rateWindowSeconds)
        }
        return .status(status)
    }

    /// The cluster's status: task counts and rate over the active jobs (every key's),
    /// the workers, and the jobs `requester` may see (its own; every job for an admin
    /// or without CURVE) that `query` selects: by default the active ones and the last
    /// ended ones. The counts by state are over the same jobs as the listing, so that
    /// they agree with it.
    func clusterStatus(for requester: String?, query: Wire.StatusQuery?) -> WireMessage {
        let active = jobs.values.filter(\.isActive)
        // Over the window, or since the oldest job that completed tasks in it began (what a job's own
        // rate does): a cluster busy for 5 s must not read as 5 s of work spread over 30.
        let now = monotonicSeconds()
        let recent = jobs.values.filter { $0.isActive || ($0.finished ?? -.infinity) > now - clusterRate.seconds }
        let busySince = recent.map(\.started).min() ?? began
        let (tasksPerSecond, pixelsPerSecond) = clusterRate.rates(at: now, since: max(began, busySince))
        let visible = visibleJobs(for: requester)
        let q = query ?? Wire.StatusQuery()
        var listed = visible.filter { q.matches($0.state, owner: $0.owner) }
        let matched = listed.count
        if !q.listsAll {
            let ended = listed.filter { !Self.isActive($0.state) }.suffix(Wire.StatusQuery.recentEnded)
            listed = (listed.filter { Self.isActive($0.state) } + ended).sorted { $0.id < $1.id }
        }
        // The wire's list limit: the most recent jobs are the ones kept.
        listed = Array(listed.suffix(WireLimits.default.maxListCount))
        let admin = CoordinatorService.isAdmin(requester)
        var status = Wire.JobStatus(
            // Queued: jobs wait, and no connected worker may take any of their tasks (audit 45 S4: it read
            // "running" while every worker refused them).
            jobID: nil, state: active.isEmpty ? .done : active.allSatisfy({ takers($0).isEmpty }) ? .queued : .running,
            tasksQueued: UInt64(active.reduce(0) { $0 + $1.pending.count }),
            tasksRunning: UInt64(active.reduce(0) { $0 + $1.running }),
            tasksDone: UInt64(active.reduce(0) { $0 + $1.done }),
            tasksFailed: UInt64(active.reduce(0) { $0 + $1.failures.count }), workers: UInt32(workers.count),
            tasksPerSecond: tasksPerSecond, pixelsPerSecond: pixelsPerSecond)
        let counts = Wire.StatusDetails.countedStates.map { s in UInt64(visible.count { $0.state == s }) }
        if query != nil {
            status.details = Wire.StatusDetails(
                jobs: listed,
                workers: workerOrder.compactMap { id in
                    workers[id].map {
                        Wire.WorkerSummary(
                            name: $0.name, threads: $0.threads, inFlight: UInt32(clamping: $0.inFlight.count),
                            tasksDone: UInt64($0.tasksDone))
                    }
                },
                jobCounts: counts, matched: UInt64(matched), activeJobs: UInt64(active.count),
                rateWindowSeconds: configuration.rateWindowSeconds)
        } else {
            status.message = plainListing(
                visible: visible.count, active: visible.count { Self.isActive($0.state) }, listed: listed,
                owners: admin)
        }
        return .status(status)
    }

    private static func isActive(_ state: Wire.JobState) -> Bool { state == .queued || state == .running }

    /// Every job `requester` may see, oldest first: this life's, the store's past ones,
    /// and those still uploading.
    private func visibleJobs(for requester: String?) -> [Wire.JobSummary] {
        let admin = CoordinatorService.isAdmin(requester)
        func visible(_ owner: String?) -> Bool { admin || submitted(by: requester, owner: owner) }
        let holders = jobHolders()
        var all = jobs.values.filter { visible($0.owner) }.map { activeSummary($0, holders: holders[$0.id] ?? 0) }
        all += archived.values.filter { visible($0.owner) && jobs[$0.id] == nil }.map(\.summary)
        all += uploads.values.filter { visible($0.owner) && jobs[$0.id] == nil }.map(uploadSummary)
        return all.map(Self.shown).sorted { $0.id < $1.id }
    }

    /// A job as status shows it: without CURVE every job is "anonymous"'s, which names no key; an admin key's
    /// is its name's, without the role's `admin/` (a key's identity in either client role: `submitted(by:owner:)`;
    /// `status --owner root` missed root's own jobs).
    private static func shown(_ job: Wire.JobSummary) -> Wire.JobSummary {
        var job = job
        if job.owner == "anonymous" { job.owner = "" }
        if CoordinatorService.isAdmin(job.owner) { job.owner.removeFirst(CoordinatorService.adminPrefix.count) }
        return job
    }

    /// Per active job, the workers holding one of its tasks now.
    func jobHolders() -> [UInt64: Int] {
        var holders: [UInt64: Int] = [:]
        for worker in workers.values {
            for job in Set(worker.inFlight.map(\.jobID)) { holders[job, default: 0] += 1 }
        }
        return holders
    }

    private func uploadSummary(_ u: PendingUpload) -> Wire.JobSummary {
        var name = ""
        if case .inline(let file, _) = u.spec.image { name = OutputOptions.stem(forInput: file) }
        return Wire.JobSummary(
            id: u.id, state: .queued, image: name, owner: u.owner ?? "", submitted: u.began,
            message: uploadStatus(u).message)
    }

    /// The plain reply's text (`status` of an earlier build prints it as it is): the
    /// totals, the workers and one line per listed job, cut to the wire's string limit
    /// (oldest lines first) with a note of how many were left out.
    private func plainListing(visible: Int, active: Int, listed: [Wire.JobSummary], owners: Bool) -> String {
        let head =
            "\(active) active job(s) of \(visible); workers: "
            + workerOrder.compactMap {
                workers[$0].map { "\($0.name)(\($0.threads) threads, \($0.tasksDone) tasks)" }
            }
            .joined(separator: ", ")
        var lines = listed.map { StatusText.jobLine($0, owner: owners) }
        let limit = WireLimits.default.maxStringBytes - 64
        var cut = 0
        while !lines.isEmpty && (([head] + lines).joined(separator: "\n").utf8.count > limit) {
            lines.removeFirst()
            cut += 1
        }
        if cut > 0 { lines.insert("(\(cut) older job(s) not listed)", at: 0) }
        return ([head] + lines).joined(separator: "\n")
    }
}
