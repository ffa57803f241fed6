import Foundation
import Logging
import TesseraCore
import TesseraImage
import TesseraWire

/// How a job ends: its outputs written off the loop thread and collected back on it,
/// a failure or a cancellation, and the end recorded in the store.
extension CoordinatorLoop {
    func finish(_ job: CoordinatorJob) {
        job.finishing = true
        // Copies of its tasks still queued on other workers (stragglers') are dropped there.
        revokes.append(job.id)
        if let shared = job.shared {
            finishShared(job, shared)
            return
        }
        guard let map = job.map, let image = job.image else { return }
        job.map = nil
        let options: OutputOptions
        do {
            options = try job.options.outputOptions(directory: job.outputDirectory, stem: job.stem)
            try FileManager.default.createDirectory(atPath: job.outputDirectory, withIntermediateDirectories: true)
        } catch {
            abort(job, state: .failed, message: "\(error)")
            return
        }
        let (id, raw) = (job.id, job.directory + "/image.raw")
        let (logger, completions, wake) = (self.logger, self.completions, self.wake)
        // The `.npy` in the job's own folder is served from the map's chunks (`NPYStoreView`):
        // the float map is written once. One asked for in another folder is written there.
        let servedNPY = options.kinds.contains(.npy) && job.options.outputDirectory == nil
        var rest = options
        if servedNPY { rest.kinds.remove(.npy) }
        let written = rest
        let (kept, netClasses) = (job.keptClasses, job.plan.classes)
        finishQueue.async {
            let result = Result {
                let (freeBefore, inodesBefore) = (freeBytes(written.directory), freeInodes(written.directory))
                var (keepStore, keepImage) = (false, false)
                defer {
                    // Derived files (the raw image, the map's chunks unless they serve the .npy).
                    if !keepStore { try? FileManager.default.removeItem(atPath: map.store.path) }
                    if !keepImage { try? FileManager.default.removeItem(atPath: raw) }
                }
                do {
                    try map.store.finish()
                    // (Nothing to stage when the served .npy is the only output.)
                    var files =
                        written.kinds.isEmpty
                        ? []
                        : try OutputStaging.write(written) { staged in
                            try writeOutputs(
                                map: KeptClassesMap(map.store, kept: kept, netClasses: netClasses), image: image,
                                options: staged, logger: logger)
                        }
                    if servedNPY {
                        _ = try NPYStoreView(map.store)  // checks that every chunk is there
                        keepStore = true
                        files.append(options.npyPath)
                    }
                    return files
                } catch  where OutputsNeedRoom.isOutOfRoom(error) {
                    // The computed map waits for room, on disk as it was (audit 55 F7: the job failed and lost it).
                    (keepStore, keepImage) = (true, true)
                    throw OutputsNeedRoom(
                        error: error, map: map, image: image, freeBefore: freeBefore, inodesBefore: inodesBefore)
                }
            }
            completions.withLock { $0.append((id, result)) }
            wake.signal()
        }
    }

    func collectCompletions() {
        let done = completions.withLock { completions in
            defer { completions.removeAll() }
            return completions
        }
        for (id, result) in done {
            guard let job = jobs[id] else { continue }
            if case .failure(let failure as OutputsNeedRoom) = result {
                guard job.isActive else {
                    // (Unreachable while a try cannot be cancelled; kept so that nothing stays behind if it can.)
                    let paths = [failure.map.store.path, job.directory + "/image.raw"]
                    storeQueue.async { for p in paths { try? FileManager.default.removeItem(atPath: p) } }
                    continue
                }
                waitForRoom(job, failure)
                continue
            }
            if let wait = job.outputsWait, case .success = result {
                logger.notice(
                    "the job's outputs are written: the store has room again",
                    metadata: ["job": "\(id)", "failed-tries": "\(wait.tries)"])
            }
            job.outputsWait = nil
            job.finished = monotonicSeconds()
            job.image = nil
            job.releaseModel()
            storeTrouble.ended(id)
            switch result {
            case .success(let files):
                job.outputFiles = files
                job.state = .done
                logger.info(
                    "job finished",
                    metadata: [
                        "job": "\(id)", "seconds": "\(String(format: "%.2f", job.finished! - job.started))",
                        "tasks": "\(job.tasks.count)", "restored": "\(job.restored)", "computed": "\(job.computed)",
                        "copies": "\(job.copiesSent)", "duplicates": "\(job.duplicatesDropped)",
                        "workers": "\(job.workersUsed.count)", "files": "\(files.count)",
                        // The worker endpoint's traffic since the coordinator started, all jobs and peers together.
                        "worker-endpoint-bytes-in-total": "\(workerBytesIn)",
                        "worker-endpoint-bytes-out-total": "\(workerBytesOut)",
                        "cpu-s": "\(String(format: "%.3f", ResourceUsage.cpuSeconds()))",
                        "loop-cpu-s": "\(String(format: "%.3f", ResourceUsage.cpuSeconds(thisThread: true)))",
                    ])
            case .failure(let error):
                job.state = .failed
                job.message = "writing the outputs failed: \(error)"
                logger.error("job failed", metadata: ["job": "\(id)", "error": "\(error)"])
            }
            // Its receipts are in the journal before its ending (the same queue): a served chunk of a done job
            // without one is damage (`ServedChunkCheck`).
            commitReceipts(force: true)
            persistEnding(job)
        }
    }

    /// Records in the store how the job ended (so a restart does not resume it).
    /// Queued after the job's tile writes.
    func persistEnding(_ job: CoordinatorJob) {
        guard persistent else { return }
        let ending = JobEnding(
            state: job.state, message: job.message, tasks: job.tasks.count,
            files: job.outputFiles.map { ($0 as NSString).lastPathComponent })
        let (store, logger, id) = (store, logger, job.id)
        storeQueue.async {
            do {
                try store.writeEnding(ending, id)
                // Only a resume reads the model files, and an ended job is never resumed: each job kept its own
                // copy for good (soak audit 31 F3: 325 KB of a 256² job's 888 KiB; a large model's size per job).
                for name in JobStore.modelFiles { unlink(store.directory(id) + "/" + name) }
            } catch {
                logger.error(
                    "cannot record the job's end in the store (a restart will redo it)",
                    metadata: ["job": "\(id)", "error": "\(error)"])
            }
        }
    }

    func abort(_ job: CoordinatorJob, state: Wire.JobState, message: String) {
        guard job.isActive else { return }
        job.state = state
        job.message = message
        job.finished = monotonicSeconds()
        job.pending.removeAll()
        job.outputsWait = nil
        if let map = job.map {
            // After the tile writes already queued for it.
            let paths = [map.store.path, job.directory + "/image.raw"]
            storeQueue.async { for p in paths { try? FileManager.default.removeItem(atPath: p) } }
        }
        releaseHeldTiles(job)
        job.map = nil
        job.image = nil
        job.releaseModel()
        storeTrouble.ended(job.id)
        // The job's tasks stay in their workers' in-flight sets until reported (then dropped): freed at once, a
        // worker got more tasks than its credit, refused one and that job was charged a failure (concurrency
        // audit 42 F4). Its workers are told to drop those not started (`revoke`), which they report at once; the
        // ones being computed finish.
        revokes.append(job.id)
        job.running = 0
        job.journalUnsynced.removeAll()
        if let shared = job.shared {
            shared.lock?.release()
            // No partial map is left looking like a result (late worker writes then fail harmlessly).
            let path = shared.store.path
            finishQueue.async { try? FileManager.default.removeItem(atPath: path) }
        }
        if state == .failed {
            logger.error("job failed", metadata: ["job": "\(job.id)", "error": "\(message)"])
        } else {
            logger.info("job cancelled", metadata: ["job": "\(job.id)"])
        }
        persistEnding(job)
    }
}
