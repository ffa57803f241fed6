import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraWire

/// The worker endpoint's failures: a task's failure reports, its retries (after a delay, elsewhere when
/// another worker is connected), damaged input skipped on request, and the job's failure at the limit.
extension CoordinatorLoop {
    func handleFailure(_ report: Wire.TaskFailure, from worker: Worker) {
        // A peer's text, for the log and other users' `status`: control characters (a newline that forges log
        // lines, escapes for a terminal) become '?', as in a worker's name (hostile-peer audit 54 F11); its line
        // breaks become "; " first, so a multi-line error stays readable.
        var f = report
        let joined = report.message.joinedLines()
        f.message = joined.isEmpty ? "(no reason given)" : joined.printable(limit: 4096)
        let ref = Wire.TaskRef(jobID: f.jobID, taskID: f.taskID)
        if isArchived(f.jobID) || jobs[f.jobID].map({ !$0.isActive }) == true {
            worker.inFlight.remove(ref)
            // Cancelled or failed meanwhile (its shared map removed, so a tile write fails).
            logger.debug(
                "failure report for an ended job dropped",
                metadata: ["worker": "\(worker.name)", "job": "\(f.jobID)", "task": "\(f.taskID)"])
            return
        }
        let held = worker.inFlight.remove(ref) != nil
        if held { worker.lastDone = monotonicSeconds() }
        guard held, let job = jobs[f.jobID] else {
            if held {
                // Its job was removed by retention meanwhile (the slot is free again).
                logger.debug(
                    "failure report for a removed job dropped",
                    metadata: ["worker": "\(worker.name)", "job": "\(f.jobID)", "task": "\(f.taskID)"])
                return
            }
            rejects.warning(
                "not-assigned", "ignored a failure report for a task the worker does not hold",
                metadata: ["worker": "\(worker.name)", "job": "\(f.jobID)", "task": "\(f.taskID)"])
            return
        }
        let index = Int(f.taskID)
        // A worker without --shared-root, or with one that does not hold this job's files (operator audit: it
        // failed 254 tasks of a job that others completed): its tasks go to the workers that can reach them,
        // uncounted. With none connected the job waits for one (user review F31: it failed after 3 tries),
        // saying why in its status (`activeSummary`, whenever no connected worker can take its tasks).
        if job.shared != nil, Self.outOfReach(f.message) {
            worker.cannotReach.insert(job.id)
            let first = worker.outsideRoots.insert(job.id).inserted
            if first {
                job.outOfReach = f.message
                let metadata: Logger.Metadata = [
                    "worker": "\(worker.name)", "job": "\(job.id)", "reason": "\(f.message)",
                ]
                if workers.values.contains(where: { !$0.outsideRoots.contains(job.id) }) {
                    logger.warning(
                        "a worker cannot reach a shared-storage job's files: it gets none of its tasks",
                        metadata: metadata)
                } else {
                    logger.warning(
                        "no connected worker can reach a shared-storage job's files: it waits for a worker whose --shared-root holds them",
                        metadata: metadata)
                }
            }
            removeAttempt(job, index, worker.id)
            // Refused, not computed: a job none of whose tasks a worker took is still queued (audit 44 D2: it
            // read "running", and `status --state queued` did not list it).
            if job.state == .running, job.running == 0, job.done == 0, job.failedOn.isEmpty { job.state = .queued }
            return
        }
        if job.states[index] == .done {
            // A straggler's copy of a task another worker completed (concurrency audit 42 F6: logged as a warning,
            // "retried in 2 s", though nothing is).
            logger.debug(
                "failure report for a task already done dropped",
                metadata: ["worker": "\(worker.name)", "job": "\(f.jobID)", "task": "\(f.taskID)"])
            removeAttempt(job, index, worker.id)
            return
        }
        // Damaged input under --corrupt-tiles skip: expected, and logged once when the tile is given up.
        let expected = job.options.skipCorruptTiles && f.message.hasPrefix(Wire.TaskFailure.corruptInput)
        let message = "\(worker.name): \(Self.explained(f.message, image: job.shared?.image ?? 1))"
        let next = afterFailure(job, index, worker, message)
        logger.log(
            level: expected ? .debug : .warning,
            "task failed on a worker",
            metadata: [
                "worker": "\(worker.name)", "job": "\(job.id)",
                "task": "\(index)", "error": "\(f.message)",
                "next": "\(next)",
            ])
        attemptFailed(job, index, worker, message, next: next)
    }

    /// Whether a worker failed a shared-storage task because the job's files are out of its reach (its
    /// `--shared-root`), which another worker's need not be.
    static func outOfReach(_ message: String) -> Bool {
        message.contains("this worker takes no shared-storage tasks")
            || message.contains("outside this worker's --shared-root")
    }

    /// A worker's failure message, with what the coordinator knows about its cause;
    /// `image`: the image of the file the task maps (`--image`).
    static func explained(_ message: String, image: Int = 1) -> String {
        if image != 1, message.hasPrefix(Wire.TaskFailure.unreadable), message.contains("level ") {
            // A worker built before images could be chosen refuses the level field of a task for
            // another image than the first (`Wire.TileTaskSpec.levelField`) rather than map image 1.
            return message
                + " (a worker built before --image, which reads image 1 of a file only, refused this task for "
                + "image \(image): upgrade it)"
        }
        guard message == EngineSettings.notUnderstood else { return message }
        // Options bits are added for nets older workers would compute differently
        // (`EngineSettings.forWorkers(of:)`); their tasks go to up-to-date workers.
        return message + " (a worker built before this coordinator: upgrade it to compute this model)"
    }

    /// Failed attempts after which a task fails its job (or, damaged input under
    /// `--corrupt-tiles skip`, is given up).
    static let maxTaskFailures = 3

    /// Seconds a task waits after its `n`-th failure before it is sent again: a fault
    /// that passes (a storage server failing over, a mount coming back, a GPU reset)
    /// would otherwise use up all attempts within milliseconds, on every worker at
    /// once when they share the fault. The waits add up to 8 s; other tasks run meanwhile.
    static func retryDelay(afterFailures n: Int) -> Int { n <= 1 ? 2 : 6 }

    /// What a failure of task `index` on `worker` leads to (asked before `attemptFailed` records it).
    enum AfterFailure: CustomStringConvertible {
        /// Sent again after this many seconds (to a worker that has not failed it, while one is connected).
        case retry(seconds: Int)
        /// Another copy of it (a straggler's) still runs: the task is judged when that one ends.
        case copyRuns
        /// Given up: the job fails (or, damaged input under `--corrupt-tiles skip`, the tile is left empty).
        case end
        var description: String {
            switch self {
            case .retry(let s): "retried in \(s) s"
            case .copyRuns: "none: another copy of it still runs"
            case .end: "none"
            }
        }
    }

    /// The rule: a task is given up after `maxTaskFailures` failures, unless a connected worker that may take it
    /// has not failed it (then it goes there, up to twice as many failures: audit 45 S2, three broken workers failed
    /// a job while a good one was idle), or its failures are all damaged input (the same on every worker). A copy
    /// that fails while another runs is not judged (audit 45 S1: copies of a task computing fine elsewhere, failing
    /// on one broken worker, failed the job).
    func afterFailure(_ job: CoordinatorJob, _ index: Int, _ worker: Worker, _ message: String) -> AfterFailure {
        if case .running(let attempts) = job.states[index], attempts.contains(where: { $0.worker != worker.id }) {
            return .copyRuns
        }
        let failures = (job.failures[index] ?? []) + [message]
        let failedOn = (job.failedOn[index] ?? []).union([worker.id])
        // Damaged data does not heal with time: under --corrupt-tiles skip such a task goes to
        // another worker at once (its 8 s of waits made a slide with damaged tiles end that late).
        let damaged = job.options.skipCorruptTiles && message.contains(Wire.TaskFailure.corruptInput)
        let retry = AfterFailure.retry(seconds: damaged ? 0 : Self.retryDelay(afterFailures: failures.count))
        if failures.count < Self.maxTaskFailures { return retry }
        // Damaged input fails the same way on any worker (`SlideError.isCorruptData`).
        let corrupt = failures.allSatisfy { $0.contains(Wire.TaskFailure.corruptInput) }
        if !corrupt, failures.count < 2 * Self.maxTaskFailures, !takers(job).isSubset(of: failedOn) { return retry }
        return .end
    }

    /// Records a failed attempt and acts on `afterFailure` (`next`, when the caller already asked it): the task is
    /// requeued (sent again after `retryDelay`), left to the copy that still runs, or given up (the job fails).
    func attemptFailed(
        _ job: CoordinatorJob, _ index: Int, _ worker: Worker, _ message: String, next: AfterFailure? = nil
    ) {
        guard job.isActive else { return }
        let next = next ?? afterFailure(job, index, worker, message)
        guard removeAttempt(job, index, worker.id) != nil else { return }
        job.failures[index, default: []].append(message)
        job.failedOn[index, default: []].insert(worker.id)
        let failures = job.failures[index]!
        switch next {
        case .copyRuns: return
        case .retry(let seconds):
            job.retryAt[index] = monotonicSeconds() + Double(seconds)
            return
        case .end: break
        }
        // Damaged input fails the same way on any worker (`SlideError.isCorruptData`).
        let corrupt = failures.allSatisfy { $0.contains(Wire.TaskFailure.corruptInput) }
        guard corrupt, job.options.skipCorruptTiles, job.shared != nil else {
            abort(
                job, state: .failed,
                message: "task \(index) failed \(failures.count) times: " + Self.summary(failures)
                    + (corrupt ? " (--corrupt-tiles skip maps the rest and leaves such tiles empty)" : ""))
            return
        }
        // Another copy may still run (a straggler's): it ends the same way, and is judged then.
        guard job.states[index] == .pending else { return }
        skipCorrupt(job, index, reason: failures.last!)
    }

    /// Leaves task `index` of a `--corrupt-tiles skip` job undone (its map tile keeps the
    /// fill value), logs it and lists it in the job's note; the job goes on, and finishes
    /// if that was its last task.
    private func skipCorrupt(_ job: CoordinatorJob, _ index: Int, reason: String) {
        job.pending.removeAll { $0 == index }
        job.states[index] = .done
        job.done += 1
        if job.noteBeforeSkips == nil { job.noteBeforeSkips = job.message }
        let rect = job.tasks[index].rect
        let plain = reason.replacingOccurrences(of: Wire.TaskFailure.corruptInput, with: "")
        job.corruptSkipped.append((index, plain))
        logger.warning(
            "map tile left empty: its input is damaged",
            metadata: [
                "job": "\(job.id)", "task": "\(index)",
                "tile": "y \(rect.y) x \(rect.x) \(rect.height)×\(rect.width)", "error": "\(plain)",
            ])
        let first = job.tasks[job.corruptSkipped[0].index].rect
        let skipped = job.corruptSkipped.count
        let note =
            "\(skipped) map tile\(skipped == 1 ? "" : "s") \(Wire.JobStatus.emptyTilesNote): input damaged "
            + "(first at y \(first.y) x \(first.x): \(job.corruptSkipped[0].reason))"
        job.message = [job.noteBeforeSkips ?? "", note].filter { !$0.isEmpty }.joined(separator: "; ")
        guard job.done == job.tasks.count else { return }
        if job.corruptSkipped.count == job.tasks.count {
            // Not a map with holes: nothing at all (damaged tables, a file cut short early).
            abort(
                job, state: .failed,
                message: "the input of every map tile is damaged (\(skipped) tiles), so nothing could be mapped: "
                    + job.corruptSkipped[0].reason)
            return
        }
        finish(job)
    }

    /// Messages joined with "; ", each distinct one once, with its count when repeated.
    /// How a worker's loss reads when it went silent with a message part-way across the link.
    static let slowLink = "a message part-way across the link"

    static func summary(_ messages: [String]) -> String {
        var counts: [String: Int] = [:]
        var order: [String] = []
        for m in messages {
            if counts[m] == nil { order.append(m) }
            counts[m, default: 0] += 1
        }
        return order.map { counts[$0]! > 1 ? "\($0) (\(counts[$0]!)×)" : $0 }.joined(separator: "; ")
    }

    /// Removes `worker`'s attempt at task `index`; with no copy left the task is
    /// queued again. Returns nil if the worker had no attempt running, else how many
    /// copies still run.
    @discardableResult
    func removeAttempt(_ job: CoordinatorJob, _ index: Int, _ worker: RoutingID) -> Int? {
        guard case .running(var attempts) = job.states[index], attempts.contains(where: { $0.worker == worker }) else {
            return nil
        }
        attempts.removeAll { $0.worker == worker }
        if attempts.isEmpty {
            metrics.taskRetried()
            job.running -= 1
            job.states[index] = .pending
            job.pending.append(index)
        } else {
            job.states[index] = .running(attempts)
        }
        return attempts.count
    }
}
