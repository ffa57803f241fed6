import Foundation
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// Shared-storage jobs (docs/ARCHITECTURE.md §7): the image and the map store lie on
/// storage the workers see too. The coordinator reads the image's header (and, for
/// `--tissue`, a thumbnail level), creates the store's metadata, and hands out map
/// tiles as coordinates; each worker reads its tile's regions, writes its pieces of
/// every level and returns a receipt. The coordinator commits receipts to the job's
/// journal (many per fsync) and reads no map values while the job runs; once every
/// tile is in, it joins the upper levels' small pieces into chunks (`MapStore.finish`,
/// a few per cent of the map's bytes) and renames the store into place.
extension CoordinatorLoop {
    func handleReceipt(_ r: Wire.TileReceipt, from worker: Worker) {
        guard
            let (job, index, mine) = runningAttempt(
                of: Wire.TaskRef(jobID: r.jobID, taskID: r.taskID), r.attempt, from: worker)
        else { return }
        guard let shared = job.shared else {
            attemptFailed(job, index, worker, "\(worker.name): sent a receipt for an upload task")
            return
        }
        let layout = shared.store.layout
        let rect = job.tasks[index].rect
        guard let tile = layout.tile(for: rect),
            r.chunks.map(\.key) == (0..<layout.levels).map({ layout.chunkKey(tile, level: $0) })
        else {
            rejects.warning(
                "bad-receipt", "rejected a receipt that does not name the tile's chunks",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            attemptFailed(job, index, worker, "\(worker.name): receipt for the wrong chunks")
            return
        }
        // Every chunk it names must be there as the worker says: a stat each (one per pyramid level), no read
        // (ops audit: receipts of chunks never written ended jobs "done" with NaN maps, at level 0 and, when only
        // it was checked, at the upper levels).
        if let why = r.chunks.lazy.compactMap({
            shared.store.writtenProblem(TileReceipt.Chunk(key: $0.key, size: Int(clamping: $0.size), crc32: $0.crc32))
        }).first {
            rejects.warning(
                "unwritten-receipt", "rejected a receipt whose chunk is not in the map store",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)", "why": "\(why)"])
            // Its writes do not reach this store (another disk at the same path, or none): like a worker that
            // cannot reach the job's files, it gets none of its tasks while another worker can, uncounted
            // (verification of the fix: it kept taking tasks and could use up a tile's attempts).
            // Once a worker's receipts checked out, the job waits for one whose writes reach the store (audit 45
            // S3: a good worker's restart let this one use up a tile's attempts).
            worker.cannotReach.insert(job.id)
            if !job.receipts.isEmpty || workers.values.contains(where: { !$0.cannotReach.contains(job.id) }) {
                removeAttempt(job, index, worker.id)
                return
            }
            attemptFailed(
                job, index, worker,
                "\(worker.name): its receipt names a chunk the coordinator does not find as written: \(why) (does the "
                    + "worker see the same shared storage at the same path?)")
            return
        }
        markDone(job, index, mine, by: worker)
        let chunks = r.chunks.map { TileReceipt.Chunk(key: $0.key, size: Int(clamping: $0.size), crc32: $0.crc32) }
        job.receipts[index] = chunks
        if persistent { job.journalUnsynced.append(ReceiptJournal.line(index, chunks)) }
        if job.done == job.tasks.count { finish(job) }
    }

    /// Appends the receipts received since the last commit to their jobs' journals,
    /// with one fsync per journal, at most every 50 ms (or now, with `force`): the
    /// store costs one write per group of completions, not one per task. A receipt not
    /// yet committed when the coordinator dies costs recomputing that tile.
    func commitReceipts(force: Bool = false) {
        let now = monotonicSeconds()
        guard persistent, force || now - lastReceiptCommit >= 0.05 else { return }
        lastReceiptCommit = now
        var batches: [(String, [String])] = []
        for id in jobOrder {
            guard let job = jobs[id], !job.journalUnsynced.isEmpty else { continue }
            batches.append((job.directory + "/" + ReceiptJournal.fileName, job.journalUnsynced))
            job.journalUnsynced.removeAll()
        }
        guard !batches.isEmpty else { return }
        let (logger, committed, failing) = (logger, batches, failingJournals)
        storeQueue.async {
            for (path, lines) in committed {
                do {
                    try DurableFile.append(Array((lines.joined(separator: "\n") + "\n").utf8), to: path)
                    if failing.withLock({ $0.remove(path) }) != nil {
                        logger.notice("tile receipts are committed again", metadata: ["journal": "\(path)"])
                    }
                } catch {
                    // Once per run of failures (audit 55 F9: 36 lines in one full-disk episode).
                    guard failing.withLock({ $0.insert(path).inserted }) else { continue }
                    logger.error(
                        "cannot commit tile receipts (recomputed after a restart; said once until a commit succeeds)",
                        metadata: ["journal": "\(path)", "error": "\(error)"])
                }
            }
        }
    }

    /// Completes a shared-storage job off the loop thread: the store's metadata is
    /// marked complete and the folder renamed to its final name (replacing an older
    /// map of the same name). The only map values read are the upper levels'
    /// small pieces, which `MapStore.finish()` joins into chunks.
    func finishShared(_ job: CoordinatorJob, _ shared: SharedJobFiles) {
        let id = job.id
        let (completions, wake) = (completions, wake)
        let (owner, curve, logger) = (job.owner, configuration.curve != nil, logger)
        let damaged = job.corruptSkipped.map { job.tasks[$0.index].rect }
        let receipts = job.receipts
        finishQueue.async {
            let result = Result { () throws -> [String] in
                defer { shared.lock?.release() }
                // A job that fails here leaves no partial map (audit 55 F6: a join that filled the disk left 9 MB on
                // it, for good), unless it is this job's finished map kept beside another key's (below). After the
                // rename the path is gone.
                var keepPartial = false
                defer { if !keepPartial { try? FileManager.default.removeItem(atPath: shared.store.path) } }
                // Late copies of a task (stragglers) may still be writing: they only ever
                // rename complete chunks into place, and their temporary files are swept here.
                shared.store.removeInterruptedWrites()
                // The metadata as a resume checks it: damage while the job ran (a level's .zarray deleted or
                // changed) ended "done" with an unreadable map (ops audit).
                let reread = try MapStore.open(at: shared.store.path)
                guard reread.layout == shared.store.layout else {
                    throw ClusterError(
                        "\(shared.store.path): the map store's metadata changed while the job ran (another layout "
                            + "than the job's): the map is not finished")
                }
                // Every chunk a receipt named, still there with its size (a stat each, no read): chunks deleted
                // or cut on the shared storage while the job ran ended "done" with NaN holes (chaos audit 28).
                let problems = receipts.values.joined().compactMap { shared.store.writtenProblem($0) }
                if let first = problems.first {
                    throw ClusterError(
                        "\(problems.count) of the map's chunks changed on the shared storage after their tiles were "
                            + "written (the first: \(first)): the map is not finished; submit the job again")
                }
                let now = FileIdentity(path: shared.imagePath)
                if let planned = shared.imageIdentity, now.map({ !$0.isSameFile(as: planned) }) ?? true {
                    throw ClusterError(
                        "\(shared.imagePath) changed while the job ran (planned: \(planned); now: "
                            + (now.map { "\($0)" } ?? "unreadable")
                            + "): its tiles may come from two images, so the map is not finished; submit the job again")
                }
                let key = PartialOutputs.submittingKey(shared.store.path)
                if let joined = try shared.store.finish(damaged: damaged, submittedBy: key) {
                    logger.info("map store: \(joined)", metadata: ["job": "\(id)"])
                }
                PartialOutputs.finish(shared.store.path)
                try MapStore.checkReplaceable(shared.finalPath)
                // Checked at submission; again here, for a map that appeared meanwhile.
                if curve, let mapOwner = PartialOutputs.mapOwner(shared.finalPath),
                    !Self.submitted(by: owner, owner: mapOwner, curve: curve), !CoordinatorService.isAdmin(owner)
                {
                    keepPartial = true
                    throw ClusterError(
                        "\(shared.finalPath) became the map of a job of key \(mapOwner) while this one ran: "
                            + "it is not replaced (this job's map stays at \(shared.store.path))")
                }
                let replacing = FileManager.default.fileExists(atPath: shared.finalPath)
                if replacing { try FileManager.default.removeItem(atPath: shared.finalPath) }
                guard rename(shared.store.path, shared.finalPath) == 0 else {
                    throw ClusterError(
                        "cannot move the finished map \(shared.store.path) to \(shared.finalPath): "
                            + String(cString: strerror(errno)))
                }
                // Outputs `export` wrote beside the map this one replaced no longer match it (docs audit 49 F1).
                // Only beside a replaced map (the owner check above covered it), and only a zarr's (`run`'s other
                // outputs come from a hidden temporary store: review).
                let folder = (shared.finalPath as NSString).deletingLastPathComponent
                let name = (shared.finalPath as NSString).lastPathComponent
                let earlier =
                    replacing && name.hasSuffix(".zarr") && !name.hasPrefix(".")
                    ? OutputOptions.existingOutputs(directory: folder, stem: String(name.dropLast(5))) : []
                for file in earlier { try? FileManager.default.removeItem(atPath: file) }
                if !earlier.isEmpty {
                    logger.info(
                        "removed outputs of the map this job's replaced: \(earlier.joined(separator: ", "))",
                        metadata: ["job": "\(id)"])
                }
                return [shared.finalPath]
            }
            completions.withLock { $0.append((id, result)) }
            wake.signal()
        }
    }

    /// Resumes a shared-storage job: the store is reopened, every journalled receipt
    /// whose chunks are present and match (size, CRC-32) counts as done, the rest is queued.
    func resumeShared(
        _ id: UInt64, _ record: JobRecord, options: JobOptions, bundle: ModelBundle
    ) throws
        -> CoordinatorJob
    {
        // The roots are this coordinator's, which may have changed since the job was submitted (audit 46 F4: a
        // root taken away still had its jobs resumed, and their maps written and renamed there).
        do {
            _ = try factory.sharedPath(record.sharedImage!, "image")
            _ = try factory.sharedPath((record.sharedStore! as NSString).deletingLastPathComponent, "output folder")
        } catch {
            throw ClusterError("\(error) (it was submitted when the coordinator's --shared-root allowed it)")
        }
        let job = try factory.makeSharedJob(
            id: id, directory: store.directory(id), options: options, mode: record.mode, tile: record.tile,
            preprocessing: record.preprocessing, model: bundle, imagePath: record.sharedImage!, stem: record.stem,
            storePath: record.sharedStore!, create: false)
        if let planned = record.sharedImageIdentity, let now = job.shared!.imageIdentity,
            FileIdentity(recorded: planned).map({ !now.isSameFile(as: $0) }) ?? (now.description != planned)
        {
            throw ClusterError(
                "\(record.sharedImage!) changed while the coordinator was stopped (planned: \(planned); now: \(now)): "
                    + "the map's tiles would come from two images; submit the job again")
        }
        job.shared!.lock = PartialLock(record.sharedStore!)  // (a store from before the record: none)
        let layout = job.shared!.store.layout
        if job.shared!.store.isFinished {
            // Stopped while finishing: every tile was in and the upper levels are joined (their
            // pieces may be gone), so nothing is recomputed; the job goes on to its rename.
            for i in job.tasks.indices { job.states[i] = .done }
            job.done = job.tasks.count
            job.restored = job.tasks.count
            job.resumed = true
            job.message =
                "resumed: the map was complete, stopped while finishing"
                + (job.message.isEmpty ? "" : "; " + job.message)
            return job
        }
        var byTile: [TileIndex: Int] = [:]
        for (i, task) in job.tasks.enumerated() { if let t = layout.tile(for: task.rect) { byTile[t] = i } }
        var unusable = 0
        if let damage = ReceiptJournal.damage(in: store.directory(id), store: job.shared!.store) {
            logger.warning("store: \(damage)", metadata: ["job": "\(id)"])
        }
        for (index, chunks) in ReceiptJournal.entries(in: store.directory(id)) {
            guard index < job.tasks.count, job.states[index] == .pending,
                let tile = layout.tile(for: job.tasks[index].rect), byTile[tile] == index
            else { continue }
            do {
                guard let chunks, chunks.count == layout.levels else { throw ClusterError("a torn journal line") }
                try job.shared!.store.verify(TileReceipt(tile: tile, chunks: chunks))
                job.receipts[index] = chunks
                job.states[index] = .done
                job.done += 1
                job.restored += 1
            } catch {
                unusable += 1
                logger.warning(
                    "store: a written tile does not match its receipt: recomputing it",
                    metadata: ["job": "\(id)", "task": "\(index)", "reason": "\(error)"])
            }
        }
        job.resumed = true
        // The plan's own note (--tissue's) stays after the resume's.
        job.message =
            "resumed: \(job.restored)/\(job.tasks.count) tiles verified in the map store"
            + (unusable > 0 ? " (\(unusable) did not match their receipts)" : "")
            + (job.message.isEmpty ? "" : "; " + job.message)
        return job
    }
}
