import Foundation
import TesseraCore

/// Ended jobs of this run become `ArchivedJob`s once the loop is done with them: status, fetch and
/// retention need a dozen fields of a job that ended, not its tasks, plan and assembler state.
extension CoordinatorLoop {
    /// Replaces each ended job that nothing in the loop waits on (its receipts committed, its tiles written,
    /// out of `jobOrder`) and that ended over a rate window ago (the cluster's rate counts it until then) by
    /// its archived form. A late result or failure report of it is then dropped quietly (`isArchived`).
    func archiveEndedJobs(now: Double) {
        let after = configuration.rateWindowSeconds
        let ready = jobs.values.filter { job in
            guard !job.isActive, let finished = job.finished, now - finished >= after else { return false }
            return job.journalUnsynced.isEmpty && job.heldTiles.isEmpty && job.retrying == 0 && job.unwritten == 0
                && !jobOrder.contains(job.id)
        }
        for job in ready {
            archived[job.id] = job.archived
            jobs[job.id] = nil
            logger.debug("ended job archived", metadata: ["job": "\(job.id)", "state": "\(job.state)"])
        }
    }

    /// Whether `id` is an ended job no longer held as a `CoordinatorJob` (its late messages are not misbehaviour).
    func isArchived(_ id: UInt64) -> Bool { jobs[id] == nil && archived[id] != nil }
}

extension CoordinatorJob {
    /// The job as an `ArchivedJob`, with its counts and average rates as they ended.
    var archived: ArchivedJob {
        ArchivedJob(
            id: id, state: state, message: message, tasks: tasks.count, outputFiles: outputFiles, owner: owner,
            stem: stem, submitted: submitted, ended: ended ?? Date().timeIntervalSince1970, shared: shared != nil,
            fromStore: false, counts: (done, failures.count), rates: rates())
    }
}
