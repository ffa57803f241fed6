import Foundation
import TesseraCore
import TesseraImage

/// A written (or failed) map tile of an upload job, from the store queue to the loop thread.
struct TileWritten: Sendable {
    let job: UInt64
    let tile: UploadMap.FinishedTile
    let result: Result<TileReceipt, any Error>
}

/// Upload jobs' map tiles: a tile complete on the loop thread is written into the
/// job's raw chunk store on the store queue; the loop learns the outcome
/// (`collectWritten`), journals the chunk's receipt (group commit, as for
/// shared-storage receipts) and finishes the job once every tile is done and
/// written. The values are written once: the chunk store is both what the outputs
/// are made from and what a restarted coordinator resumes from.
///
/// A write that fails (a full disk) keeps its tile in memory and pauses dispatching;
/// the tile is written again every couple of seconds until the store takes it, and
/// the job goes on from there. The log says so once per job, with a count.
extension CoordinatorLoop {
    /// Hands a finished tile to the store queue (the values are counted in the backlog
    /// that pauses dispatching until they are on disk).
    func writeTile(_ tile: UploadMap.FinishedTile, of job: CoordinatorJob) {
        guard let store = job.map?.store else { return }
        job.unwritten += 1
        let (id, written, backlog) = (job.id, written, storeBacklog)
        backlog.withLock { $0 += tile.bytes }
        storeQueue.async {
            let result = Result { try UploadMap.write(tile, to: store) }
            if case .success = result { backlog.withLock { $0 -= tile.bytes } }
            written.withLock { $0.append(TileWritten(job: id, tile: tile, result: result)) }
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
            switch w.result {
            case .success(let receipt):
                job.unwritten -= 1
                guard job.isActive else { continue }
                if persistent { job.journalUnsynced.append(ReceiptJournal.line(w.tile.index, receipt.chunks)) }
                if job.writeFailures > 0 && job.heldTiles.isEmpty && job.unwritten == 0 {
                    logger.notice(
                        "the store writes again: the job goes on",
                        metadata: ["job": "\(job.id)", "failed-writes": "\(job.writeFailures)"])
                    job.writeFailures = 0
                }
                if job.done == job.tasks.count && job.unwritten == 0 { finish(job) }
            case .failure(let error):
                job.unwritten -= 1
                guard job.isActive else {
                    storeBacklog.withLock { $0 -= w.tile.bytes }
                    continue
                }
                job.heldTiles.append(w.tile)
                job.writeFailures += 1
                storeFailing.withLock { f in
                    f.until = now + 2
                    f.count += 1
                }
                if job.writeFailures == 1 {
                    logger.error(
                        """
                        cannot write the map's tiles (a full disk?): dispatching pauses, and the tiles are \
                        kept in memory and written again until the store takes them
                        """,
                        metadata: ["job": "\(job.id)", "tile": "\(w.tile.index)", "error": "\(error)"])
                }
            }
        }
        retryHeldTiles(now)
    }

    /// Writes held tiles again once the pause after the last failure is over.
    private func retryHeldTiles(_ now: Double) {
        guard storeFailing.withLock({ $0.until }) <= now else { return }
        for id in jobOrder {
            guard let job = jobs[id], job.isActive, !job.heldTiles.isEmpty else { continue }
            let held = job.heldTiles
            job.heldTiles.removeAll()
            logger.info(
                "writing held map tiles again",
                metadata: ["job": "\(id)", "tiles": "\(held.count)", "failed-writes": "\(job.writeFailures)"])
            for tile in held {
                // Counted in the backlog already: `writeTile` counts it again, so take it off first.
                storeBacklog.withLock { $0 -= tile.bytes }
                writeTile(tile, of: job)
            }
        }
    }

    /// Drops what a job that ended still holds of its tiles.
    func releaseHeldTiles(_ job: CoordinatorJob) {
        let bytes = job.heldTiles.reduce(0) { $0 + $1.bytes }
        if bytes > 0 { storeBacklog.withLock { $0 -= bytes } }
        job.heldTiles.removeAll()
    }
}
