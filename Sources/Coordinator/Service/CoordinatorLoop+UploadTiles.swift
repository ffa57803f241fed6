import Foundation
import TesseraCore
import TesseraImage

/// A written (or failed) map tile of an upload job, from the store queue to the loop thread.
struct TileWritten: Sendable {
    let job: UInt64
    let tile: UploadMap.FinishedTile
    let result: Result<TileReceipt, any Error>
    /// A held tile written again.
    let retry: Bool
}

/// Upload jobs' map tiles: a tile complete on the loop thread is written into the
/// job's raw chunk store on the store queue; the loop learns the outcome
/// (`collectWritten`), journals the chunk's receipt (group commit, as for
/// shared-storage receipts) and finishes the job once every tile is done and
/// written. The values are written once: the chunk store is both what the outputs
/// are made from and what a restarted coordinator resumes from.
///
/// A write that fails (a full disk) keeps its tile in memory and pauses dispatching
/// (`StoreTrouble`, which logs once per job, with a count); the tile is written again
/// after each pause until the store takes it, and the job goes on from there: no
/// result is thrown away.
extension CoordinatorLoop {
    /// Hands a finished tile to the store queue (the values are counted in the backlog
    /// that pauses dispatching until they are on disk).
    func writeTile(_ tile: UploadMap.FinishedTile, of job: CoordinatorJob, retry: Bool = false) {
        guard let store = job.map?.store else { return }
        job.unwritten += 1
        if retry { job.retrying += 1 }
        let (id, written, backlog, wake) = (job.id, written, storeBacklog, wake)
        backlog.withLock { $0 += tile.bytes }
        storeQueue.async {
            let result = Result { try UploadMap.write(tile, to: store) }
            if case .success = result { backlog.withLock { $0 -= tile.bytes } }
            written.withLock { $0.append(TileWritten(job: id, tile: tile, result: result, retry: retry)) }
            wake.signal()
        }
    }

    /// The outcomes of the store queue's tile writes since the last call.
    func collectWritten() {
        let outcomes = written.withLock { w in
            defer { w.removeAll() }
            return w
        }
        let now = monotonicSeconds()
        for w in outcomes {
            guard let job = jobs[w.job] else { continue }
            if w.retry { job.retrying -= 1 }
            switch w.result {
            case .success(let receipt):
                job.unwritten -= 1
                guard job.isActive else { continue }
                storeTrouble.succeeded(job.id)
                if persistent { job.journalUnsynced.append(ReceiptJournal.line(w.tile.index, receipt.chunks)) }
                if job.done == job.tasks.count && job.unwritten == 0 && job.heldTiles.isEmpty { finish(job) }
            case .failure(let error):
                job.unwritten -= 1
                guard job.isActive else {
                    storeBacklog.withLock { $0 -= w.tile.bytes }
                    continue
                }
                // Dispatching pauses; logged once per job (`StoreTrouble`).
                job.heldTiles.append(w.tile)
                storeTrouble.failed(job.id, "map tile \(w.tile.index) (kept in memory, written again)", error)
            }
        }
        retryHeldTiles(now)
    }

    /// Writes held tiles again once the pause after the last failure is over.
    private func retryHeldTiles(_ now: Double) {
        guard !storeTrouble.paused(now) else { return }
        for id in jobOrder {
            guard let job = jobs[id], job.isActive, !job.heldTiles.isEmpty else { continue }
            let held = job.heldTiles
            job.heldTiles.removeAll()
            logger.debug("writing held map tiles again", metadata: ["job": "\(id)", "tiles": "\(held.count)"])
            for tile in held {
                // Counted in the backlog already: `writeTile` counts it again, so take it off first.
                storeBacklog.withLock { $0 -= tile.bytes }
                writeTile(tile, of: job, retry: true)
            }
        }
    }

    /// Whether some job's map tiles wait for the store (held after a failed write, or
    /// being written again): no new work is dispatched meanwhile.
    var tilesHeld: Bool {
        jobOrder.contains { jobs[$0].map { !$0.heldTiles.isEmpty || $0.retrying > 0 } ?? false }
    }

    /// Drops what a job that ended still holds of its tiles.
    func releaseHeldTiles(_ job: CoordinatorJob) {
        let bytes = job.heldTiles.reduce(0) { $0 + $1.bytes }
        if bytes > 0 { storeBacklog.withLock { $0 -= bytes } }
        job.heldTiles.removeAll()
    }
}
