import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraWire

/// The worker endpoint's results: each checked against what was asked of whom (job, task, worker, shape,
/// values) before it is placed; the first result of a task wins. Its attempt number is logged, not compared
/// (audit 54 F14): a task's values do not depend on its attempt, so a result from the worker that holds
/// the task counts, whatever number it carries.
extension CoordinatorLoop {
    /// Checks a result against what was asked of whom, then places it (first result wins).
    func handleResult(_ r: Wire.TaskResult, from worker: Worker) {
        guard
            let (job, index, mine) = runningAttempt(
                of: Wire.TaskRef(jobID: r.jobID, taskID: r.taskID), r.attempt, from: worker)
        else { return }
        guard job.shared == nil else {
            attemptFailed(job, index, worker, "\(worker.name): sent values for a shared-storage task")
            return
        }
        let task = job.tasks[index]
        let size = job.plan.tasks.outputSize(task)
        guard Int(r.classes) == job.resultClasses, Int(r.height) == size.h, Int(r.width) == size.w else {
            rejects.warning(
                "bad-result", "rejected a result of the wrong shape",
                metadata: [
                    "worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)",
                    "got": "\(r.classes)×\(r.height)×\(r.width)",
                    "expected": "\(job.resultClasses)×\(size.h)×\(size.w)",
                ])
            attemptFailed(job, index, worker, "\(worker.name): result of the wrong shape")
            return
        }
        if let bad = Self.impossibleValue(
            r.values, probabilities: job.plan.classifier.layers.last?.op.isProbability ?? false)
        {
            // A worker's engine gives finite values, in [0, 1] after a softmax or sigmoid: anything else is a
            // broken or hostile worker (operator audit: all-2.0 and all-NaN maps ended "done").
            rejects.warning(
                "bad-result", "rejected a result holding values no net of this job gives",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)", "value": "\(bad)"])
            attemptFailed(job, index, worker, "\(worker.name): result holds \(bad), which this net cannot give")
            return
        }
        markDone(job, index, mine, by: worker)
        if let tile = job.map?.add(index, task, values: r.values, rows: Int(r.height), cols: Int(r.width)) {
            writeTile(tile, of: job)
        }
        if job.done == job.tasks.count && job.unwritten == 0 && job.heldTiles.isEmpty { finish(job) }
    }

    /// The first value of a result no engine gives: NaN or infinite, or, where the net ends in a softmax or
    /// sigmoid, outside [0, 1] (beyond float rounding); nil when all are possible.
    static func impossibleValue(_ values: [Float], probabilities: Bool) -> Float? {
        let (low, high): (Float, Float) = probabilities ? (-1e-5, 1 + 1e-5) : (-.infinity, .infinity)
        for v in values where !v.isFinite || v < low || v > high { return v }
        return nil
    }

    /// Records task `index` as done by `worker`. The other copy, if any, stays in its
    /// worker's in-flight set: its result will be recognised as a duplicate, and the
    /// worker gets no new task while still busy.
    func markDone(_ job: CoordinatorJob, _ index: Int, _ mine: CoordinatorJob.Attempt, by worker: Worker) {
        let now = monotonicSeconds()
        job.recordTaskTime(now - mine.since, policy: configuration.stragglers)
        // Its work: from when the worker began it (after its task before, if any) to now. What the job and its
        // key were charged for it is corrected by that (`FairShare`).
        let seconds = now - max(mine.since, worker.lastDone)
        worker.lastDone = now
        let rect = job.tasks[index].rect
        let perPixel = seconds / Double(max(1, rect.height * rect.width))
        job.secondsPerPixel = job.secondsPerPixel.map { 0.75 * $0 + 0.25 * perPixel } ?? perPixel
        lastSecondsPerPixel = perPixel
        job.given += seconds - mine.estimate
        fairShare.charge(job.owner ?? "", seconds - mine.estimate)
        job.running -= 1
        job.states[index] = .done
        job.done += 1
        job.computed += 1
        worker.tasksDone += 1
        // Map pixels the task produced: a whole tile in a shared-storage job, its outputs otherwise.
        let size =
            job.shared != nil
            ? Size2(job.tasks[index].rect.height, job.tasks[index].rect.width)
            : job.plan.tasks.outputSize(job.tasks[index])
        metrics.taskDone(by: worker.name, since: mine.since, pixels: size.h * size.w)
        job.rate.record(at: now, pixels: size.h * size.w)
        clusterRate.record(at: now, pixels: size.h * size.w)
        job.workersUsed.insert(worker.name)
    }

    /// The job, task index and attempt a result answers: nil (logged) for a result of
    /// an unknown job or task, from a worker that was not assigned it, or for a task
    /// that no longer runs there (a duplicate of a done task, or a late one). The task
    /// leaves the worker's in-flight set once it was assigned there.
    func runningAttempt(
        of ref: Wire.TaskRef, _ attempt: UInt32,
        from worker: Worker
    ) -> (CoordinatorJob, Int, CoordinatorJob.Attempt)? {
        let r = (jobID: ref.jobID, taskID: ref.taskID, attempt: attempt)
        guard let job = jobs[r.jobID] else {
            if isArchived(r.jobID) || worker.inFlight.contains(ref) {
                // Ended a while ago (`archiveEndedJobs`), or removed by retention, while this worker still computed
                // the task: its slot is free again (verification audit 34 F1: a result of a removed job kept it taken,
                // and the worker got no task again).
                worker.inFlight.remove(ref)
                logger.debug("result for an ended job dropped", metadata: ["job": "\(r.jobID)", "task": "\(r.taskID)"])
                return nil
            }
            rejects.warning(
                "unknown-task", "rejected a result for an unknown job",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            return nil
        }
        guard r.taskID < UInt64(job.tasks.count) else {
            rejects.warning(
                "unknown-task", "rejected a result for an unknown task",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            return nil
        }
        guard job.isActive || worker.inFlight.contains(ref) else {
            // Cancelled or failed meanwhile: the job's tasks were taken back, so workers
            // still computing them are not misbehaving.
            logger.debug("result for an ended job dropped", metadata: ["job": "\(r.jobID)", "task": "\(r.taskID)"])
            return nil
        }
        guard worker.inFlight.contains(ref) else {
            rejects.warning(
                "not-assigned", "rejected a result from a worker that was not assigned the task",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            return nil
        }
        worker.inFlight.remove(ref)
        let index = Int(r.taskID)
        guard job.isActive, case .running(let attempts) = job.states[index],
            let mine = attempts.first(where: { $0.worker == worker.id })
        else {
            if job.states[index] == .done {
                job.duplicatesDropped += 1
                logger.info(
                    "duplicate result dropped: the task was already done (first result wins)",
                    metadata: [
                        "worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)",
                        "attempt": "\(r.attempt)",
                    ])
            } else {
                logger.debug("late result dropped", metadata: ["job": "\(r.jobID)", "task": "\(r.taskID)"])
            }
            return nil
        }
        return (job, index, mine)
    }
}
