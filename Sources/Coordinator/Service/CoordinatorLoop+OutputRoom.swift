import Foundation
import TesseraCore
import TesseraImage

/// An upload job whose outputs do not fit the store (a full disk, a quota) keeps its computed map and image on disk
/// and waits, instead of failing with the map thrown away (audit 55 F7): its status says so, a client may cancel it,
/// and `finish` is tried again once the disk has more room than the failed try had.
extension CoordinatorLoop {
    func waitForRoom(_ job: CoordinatorJob, _ failure: OutputsNeedRoom) {
        job.map = failure.map
        job.image = failure.image
        let now = monotonicSeconds()
        job.outputsWait = OutputsWait(
            reason: "\(failure.error)", freeBefore: failure.freeBefore, inodesBefore: failure.inodesBefore, tried: now,
            tries: (job.outputsWait?.tries ?? 0) + 1, nextCheck: now + OutputsWait.checkSeconds)
        guard job.outputsWait!.tries == 1 else { return }
        logger.warning(
            "no room in the store for the job's outputs: its map is kept, and they are written once the disk has more room (cancel the job to give up)",
            metadata: ["job": "\(job.id)", "error": "\(failure.error)"])
    }

    /// Tries again the outputs of the jobs waiting for room (`housekeeping`): when the disk holding them has
    /// more room than before the failed try (by a quarter, 1 MiB at least) or more free inodes (by a quarter, 64 at
    /// least: files cannot be made without), or every `OutputsWait.retrySeconds` (a quota is not seen there).
    func retryOutputs(_ now: Double) {
        for id in jobOrder {
            guard let job = jobs[id], job.isActive, var wait = job.outputsWait, !wait.trying,
                wait.nextCheck <= now
            else { continue }
            let (bytes, inodes) = (wait.freeBefore ?? 0, wait.inodesBefore ?? 0)
            let roomier =
                freeBytes(job.outputDirectory).map { $0 >= bytes + max(1 << 20, bytes / 4) } ?? false
                || freeInodes(job.outputDirectory).map { $0 >= inodes + max(64, inodes / 4) } ?? false
            guard roomier || now - wait.tried >= OutputsWait.retrySeconds else {
                wait.nextCheck = now + OutputsWait.checkSeconds
                job.outputsWait = wait
                continue
            }
            job.outputsWait!.trying = true
            finish(job)
        }
    }
}

/// Why and since when an upload job waits for room for its outputs (`CoordinatorJob.outputsWait`).
struct OutputsWait {
    static let checkSeconds = 2.0
    static let retrySeconds = 300.0

    /// The failed try's error.
    let reason: String
    /// The bytes and inodes free where the outputs go before the failed try (nil: unknown).
    let freeBefore: UInt64?
    let inodesBefore: UInt64?
    /// When it failed, and how many tries failed so (monotonic seconds).
    let tried: Double
    let tries: Int
    /// When the free space is looked at next.
    var nextCheck: Double
    /// A try is under way (`finish`): too late to cancel until it ends.
    var trying = false

    /// The job's status note.
    var note: String {
        "no room for the outputs (\(reason)); every tile is computed and kept, and the outputs are written once the "
            + "disk has more room (cancel the job to give up)"
    }
}

/// Writing an upload job's outputs failed for want of room: the job's map and image, kept, go back to it.
struct OutputsNeedRoom: Error {
    let error: any Error
    let map: UploadMap
    let image: RawPixelFile
    let freeBefore: UInt64?
    let inodesBefore: UInt64?

    /// Whether `error` is a full disk or an exhausted quota (told by its text: the outputs' writers name the errno).
    static func isOutOfRoom(_ error: any Error) -> Bool {
        let text = "\(error)"
        return [ENOSPC, EDQUOT].contains { text.contains(String(cString: strerror($0))) }
    }
}
