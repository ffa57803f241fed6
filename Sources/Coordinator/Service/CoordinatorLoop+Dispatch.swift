import Foundation
import TesseraCore
import TesseraWire

/// Scheduling: which worker gets which task next, with per-worker credit, keys and
/// then each key's jobs given equal work (`FairShare`), copies of overdue tasks
/// (stragglers) sent to other workers, and failed tasks retried elsewhere after a delay.
extension CoordinatorLoop {
    /// Gives each worker tasks up to its credit: first a copy of an overdue task that
    /// another worker holds (a straggler), then queued tasks, taking jobs in turn.
    func dispatch(_ socket: borrowing ZMQSocket) {
        let now = monotonicSeconds()
        // Upload jobs' map tiles are written by this coordinator: no new upload work while the store is behind, while
        // tiles it refused (a full disk) wait in memory to be written again, nor for a moment after each failed
        // write. A shared job's workers write its map themselves: its tasks still go out (audit 55 F1: one upload
        // job on a full store stalled every job, for good).
        let uploadsWait = storeBacklog.withLock({ $0 }) >= Self.maxStoreBacklog || storeTrouble.paused(now) || tilesHeld
        var overdue: [Overdue] = []
        if now - lastStragglerScan >= 0.1 {
            lastStragglerScan = now
            overdue = overdueTasks(now)
        }
        guard
            !overdue.isEmpty
                || jobOrder.contains(where: { jobs[$0].map { $0.isActive && !$0.pending.isEmpty } ?? false })
        else { return }
        var turn = rotation
        fairShare.keep(Set(jobs.values.filter(\.isActive).map { $0.owner ?? "" }))
        // Per job, the connected workers that may take its tasks (`takers`), found when first needed.
        var takersOf: [UInt64: Set<RoutingID>] = [:]
        func takers(_ job: CoordinatorJob) -> Set<RoutingID> {
            if let known = takersOf[job.id] { return known }
            let found = self.takers(job)
            takersOf[job.id] = found
            return found
        }
        for id in workerOrder {
            guard let w = workers[id] else { continue }
            while w.inFlight.count < configuration.credit {
                // (Not to a worker that cannot reach the job's files, or whose receipts it cannot see.)
                // Nor to a worker that failed the task (audit 45 S1: copies went again and again to the one free
                // worker, which failed them at once).
                if let k = overdue.firstIndex(where: {
                    !(uploadsWait && $0.job.map != nil) && !$0.holders.contains(w.id) && takers($0.job).contains(w.id)
                        && !($0.job.failedOn[$0.index]?.contains(w.id) ?? false)
                }) {
                    let late = overdue.remove(at: k)
                    guard late.job.isActive, case .running(let attempts) = late.job.states[late.index],
                        attempts.count == late.holders.count
                    else { continue }
                    guard send(late.job, late.index, to: w, socket) else { break }
                    late.job.copiesSent += 1
                    logger.warning(
                        "straggler: task overdue, a copy sent to another worker",
                        metadata: [
                            "job": "\(late.job.id)", "task": "\(late.index)",
                            "worker": "\(attempts.map { workers[$0.worker]?.name ?? "?" }.joined(separator: ", "))",
                            "copy-to": "\(w.name)",
                            "running": "\(String(format: "%.2f", now - (attempts.map(\.since).max() ?? now)))s",
                            "deadline": "\(String(format: "%.2f", late.deadline))s",
                        ])
                    continue
                }
                // A task that failed on this worker goes to another one while another that may take it is
                // connected, so one broken worker (a bad mount, a failing GPU) cannot use up a task's 3 attempts.
                // (Once it failed on every connected worker that may take it, any of them may try again: counting
                // the workers that refuse the job's tasks, a shared job's failed task waited for good while one
                // without --shared-root was connected, audit 44 D1.) A failed task also waits its retry delay first.
                func eligible(_ job: CoordinatorJob) -> Int? {
                    // A shared job's paths outside this worker's --shared-root: none of its tasks. Its receipts
                    // not found as written: its tasks go to the others, unless none can reach them and no receipt
                    // of the job ever checked out (then the failures say why, and fail the job; see `takers`).
                    if !takers(job).contains(w.id) || (uploadsWait && job.map != nil) { return nil }
                    return job.pending.lastIndex { task in
                        guard let failed = job.failedOn[task] else { return true }
                        if let at = job.retryAt[task], at > now { return false }
                        return !failed.contains(w.id) || takers(job).isSubset(of: failed)
                    }
                }
                let candidates = jobOrder.compactMap { jobs[$0] }.filter { $0.isActive && eligible($0) != nil }
                if candidates.isEmpty { break }
                let job = candidates[fairShare.pick(candidates.map { ($0.owner ?? "", $0.given) }, turn: turn)]
                turn += 1
                let index = job.pending.remove(at: eligible(job)!)
                guard send(job, index, to: w, socket) else {
                    job.pending.append(index)
                    break
                }
            }
        }
        rotation = turn
    }

    /// The connected workers that may take `job`'s tasks: not those its paths are outside of, nor those whose
    /// receipts it did not find as written while another worker can reach its files or one's receipts checked out
    /// (then the job waits for such a worker: audit 45 S3, a good worker's restart let the known-bad one fail the
    /// job). Only while no worker's receipt was ever found do they get its tasks, whose failures then say why.
    func takers(_ job: CoordinatorJob) -> Set<RoutingID> {
        let inside = workers.values.filter { !$0.outsideRoots.contains(job.id) }
        let reaching = inside.filter { !$0.cannotReach.contains(job.id) }
        let proven = job.shared != nil && !job.receipts.isEmpty
        return Set((reaching.isEmpty && !proven ? inside : reaching).map(\.id))
    }

    struct Overdue {
        let job: CoordinatorJob
        let index: Int
        /// The workers running it now.
        let holders: Set<RoutingID>
        let deadline: Double
    }

    /// Running tasks whose newest attempt has run past their job's deadline (with copies to spare), most overdue
    /// first.
    func overdueTasks(_ now: Double) -> [Overdue] {
        var out: [(Overdue, Double)] = []
        let policy = configuration.stragglers
        for id in jobOrder {
            guard let job = jobs[id], job.isActive, job.running > 0 else { continue }
            // Unmeasured, only once none of the job's tasks waits: its slow first tasks must not push its queued
            // ones back.
            guard job.taskDeadline != nil || job.pending.isEmpty else { continue }
            let limit = job.taskDeadline ?? policy.unmeasuredSeconds
            for (index, state) in job.states.enumerated() {
                // A second copy only while unmeasured (a copy sent to another silent session); a measured job's
                // slow task gets one, as before.
                if case .running(let a) = state, a.count <= (job.taskDeadline == nil ? policy.maxCopies : 1),
                    let newest = a.map(\.since).max(),
                    now - newest > limit
                {
                    out.append(
                        (
                            Overdue(job: job, index: index, holders: Set(a.map(\.worker)), deadline: limit),
                            now - newest - limit
                        ))
                }
            }
        }
        return out.sorted { $0.1 > $1.1 }.map(\.0)
    }

    /// Sends task `index` of `job` to `w` as a new attempt. False if the send failed
    /// (the task is not dispatched; an unreachable worker is retired).
    func send(_ job: CoordinatorJob, _ index: Int, to w: Worker, _ socket: borrowing ZMQSocket) -> Bool {
        let attempt = (job.attempts[index] ?? 0) + 1
        guard let message = job.message(index, attempt: attempt) else {
            abort(
                job, state: .failed,
                message:
                    "task \(index): cannot read its input region from the stored image, or it does not fit the wire")
            return true
        }
        guard send(message, to: w, socket) else { return false }
        let now = monotonicSeconds()
        w.lastSent = now
        job.attempts[index] = attempt
        if job.state == .queued { job.state = .running }
        // Charged its estimated work now (`FairShare`), corrected when done (`markDone`).
        let estimate =
            Double(job.tasks[index].rect.height * job.tasks[index].rect.width)
            * (job.secondsPerPixel ?? lastSecondsPerPixel)
        job.given += estimate
        fairShare.charge(job.owner ?? "", estimate)
        let a = CoordinatorJob.Attempt(worker: w.id, number: attempt, since: now, estimate: estimate)
        if case .running(let others) = job.states[index] {
            job.states[index] = .running(others + [a])
        } else {
            job.states[index] = .running([a])
            job.running += 1
        }
        let ref = Wire.TaskRef(jobID: job.id, taskID: UInt64(index))
        w.inFlight.insert(ref)
        w.sent.removeAll { $0 == ref }  // sent to it again (after it failed there): its new place counts
        w.sent.append(ref)
        if w.sent.count > 4 * configuration.credit + 8 { w.sent.removeAll { !w.inFlight.contains($0) } }
        return true
    }
}

/// The order jobs get tasks in, by the work each was given (start-time fair queuing): the key with work
/// that was given the fewest seconds of worker time gets the next task, then that key's job given the
/// fewest, so a user with ten jobs gets the share of a user with one, and one with large tiles the share of
/// one with small tiles. A task is charged its estimate when sent (its pixels × its job's measured seconds
/// per pixel) and corrected by its measured time when done. Taking turns per task instead, a key whose tasks
/// took 100 times longer held nearly every worker (audit 46 F2: a 2.3 s job took 23.6 s beside one 16-task
/// job). A key that had no work starts level with the least served key with work, so idle time is not banked.
/// Equal charges go in turn (`turn`). Without CURVE every job has the same key.
struct FairShare {
    /// Seconds of work given to each key with active jobs.
    private(set) var keys: [String: Double] = [:]

    /// The index in `jobs` (each candidate's key and the work given to it, in job order) of the job that gets
    /// the next task.
    mutating func pick(_ jobs: [(key: String, given: Double)], turn: Int) -> Int {
        var order: [String] = []
        var members: [String: [Int]] = [:]
        for (i, job) in jobs.enumerated() {
            if members[job.key] == nil { order.append(job.key) }
            members[job.key, default: []].append(i)
        }
        let level = order.compactMap { keys[$0] }.min() ?? 0
        for key in order where keys[key] == nil { keys[key] = level }
        let key = Self.least(order, turn: turn) { keys[$0]! }
        return Self.least(members[key]!, turn: turn) { jobs[$0].given }
    }

    /// The first of `items`, from position `turn` on (wrapping), whose value is the least.
    private static func least<T>(_ items: [T], turn: Int, _ value: (T) -> Double) -> T {
        let start = turn % items.count
        let rotated = items[start...] + items[..<start]
        let floor = rotated.map(value).min()!
        return rotated.first { value($0) <= floor + 1e-9 }!
    }

    /// Adds `seconds` (negative: a correction) to what `key` was given.
    mutating func charge(_ key: String, _ seconds: Double) { keys[key, default: 0] += seconds }

    /// Forgets the keys without active jobs: one that comes back starts level again.
    mutating func keep(_ active: Set<String>) { keys = keys.filter { active.contains($0.key) } }
}
