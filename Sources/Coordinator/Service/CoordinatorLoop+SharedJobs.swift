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
/// tiles as coordinates; each worker reads its tile's regions, writes its chunks and
/// returns a receipt. The coordinator never reads or writes map values: it commits
/// receipts to the job's journal (many per fsync), and renames the store into place
/// once every tile is in.
extension CoordinatorLoop {
    /// The journal of committed receipts in a job's folder: one line per tile,
    /// `<task> <key>:<bytes>:<crc32 hex> …`, appended and fsynced in groups.
    static let receiptJournal = "receipts.log"

    /// A new shared-storage job: checks the paths, plans it from the image's header,
    /// creates its store, and records it (durably, with a persistent store).
    func createSharedJob(_ spec: Wire.JobSpec, options: JobOptions, id: UInt64, directory dir: String) throws
        -> CoordinatorJob
    {
        guard case .path(let imagePath) = spec.image else {
            throw ClusterError(.invalidOption, "a shared-storage job names its image by path, it does not upload it")
        }
        guard let out = options.outputDirectory else {
            throw ClusterError(.invalidOption, "a shared-storage job needs an output folder (--out) the workers share")
        }
        let image = try sharedPath(imagePath, "image")
        let outDir = try sharedPath(out, "output folder")
        let bundle = try modelBundle(spec)
        let stem = OutputOptions.stem(forInput: image)
        let token = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let job = try makeSharedJob(
            id: id, directory: dir, options: options, mode: spec.mode, tile: Int(spec.tileSize),
            preprocessing: spec.preprocessing, model: bundle, imagePath: image, stem: stem,
            storePath: "\(outDir)/.\(stem).\(options.storeKind == .zarr ? "zarr" : "chunks").partial-\(token)",
            create: true)
        if persistent {
            if !bundle.prototxt.isEmpty { try DurableFile.write(bundle.prototxt, to: dir + "/deploy.prototxt") }
            if !bundle.weights.isEmpty { try DurableFile.write(bundle.weights, to: dir + "/weights.caffemodel") }
            try store.writeRecord(
                JobRecord(
                    mode: spec.mode, tile: job.tile, stem: stem, options: spec.outputOptions,
                    preprocessing: spec.preprocessing, modelDigest: bundle.digest.hex, imageCRC32: 0, imageBytes: 0,
                    sharedImage: image, sharedStore: job.shared!.store.path), id)
        }
        return job
    }

    /// The model files of a submission (inline or by path).
    func modelBundle(_ spec: Wire.JobSpec) throws -> ModelBundle {
        func bytes(_ source: Wire.FileSource, _ what: String) throws -> [UInt8] {
            switch source {
            case .inline(_, let b): return b
            case .path(let path):
                guard configuration.allowLocalPaths || !configuration.sharedRoots.isEmpty else {
                    throw ClusterError("this coordinator does not read client-named paths: upload the \(what)")
                }
                let resolved = try sharedPath(path, what)
                guard let data = FileManager.default.contents(atPath: resolved) else {
                    throw ClusterError("cannot read the \(what) \(path)")
                }
                return [UInt8](data)
            }
        }
        let bundle = ModelBundle(prototxt: try bytes(spec.prototxt, "prototxt"), weights: try bytes(spec.weights, "weights"))
        guard !bundle.prototxt.isEmpty || !bundle.weights.isEmpty else { throw ClusterError("the job names no model files") }
        return bundle
    }

    /// `path` resolved, if clients may name it: anything on an embedded coordinator
    /// (`allowLocalPaths`), else only under `--shared-root` (links resolved).
    func sharedPath(_ path: String, _ what: String) throws -> String {
        let resolved = Self.resolve(path)
        if configuration.allowLocalPaths { return resolved }
        let roots = configuration.sharedRoots.map(Self.resolve)
        guard !roots.isEmpty else {
            throw ClusterError(
                .invalidOption, "this coordinator takes no shared-storage jobs: start it with --shared-root FOLDER")
        }
        guard roots.contains(where: { resolved == $0 || resolved.hasPrefix($0 == "/" ? "/" : $0 + "/") }) else {
            throw ClusterError(
                .invalidOption, "the \(what) \(path) is outside the coordinator's --shared-root "
                    + "(\(configuration.sharedRoots.joined(separator: ", ")))")
        }
        return resolved
    }

    static func resolve(_ path: String) -> String {
        if let real = realpath(path, nil) {
            defer { free(real) }
            return String(cString: real)
        }
        return URL(fileURLWithPath: path).standardizedFileURL.path
    }

    /// Plans a shared-storage job from the image's header and creates (or, resuming,
    /// opens) its store: one task per map tile, tiles without tissue left out.
    func makeSharedJob(
        id: UInt64, directory dir: String, options: JobOptions, mode wireMode: Wire.Mode, tile requested: Int,
        preprocessing: Wire.Preprocessing, model bundle: ModelBundle, imagePath: String, stem: String,
        storePath: String, create: Bool
    ) throws -> CoordinatorJob {
        let plan = try self.plan(bundle, options)
        let header = try ImageInput.header(path: imagePath, level: options.level, mpp: options.mpp)
        let pre = try TaskCodec.preprocessing(preprocessing).validated(channels: plan.inputChannels)
        _ = try ChannelMapping.resolve(
            imageChannels: header.channels, netChannels: plan.inputChannels, order: pre.channelOrder)
        let mode = TaskCodec.mode(wireMode)
        let size = Size2(header.height, header.width)
        let stride = plan.tasks.stride
        var tile = mode == .shift ? TilePlan.roundUp(requested, max(stride.h, stride.w)) : requested
        var levels = 1
        if options.storeKind == .zarr {
            (tile, levels) = MapPyramid.fit(tile: tile, image: size, stride: stride, fixedTile: true)
        }
        var tiles = TilePlan.mapTiles(mode: mode, image: size, tile: tile, stride: stride)
        if options.tissue {
            let opened = try ImageInput.open(path: imagePath, level: header.level)
            let mask = try ImageInput.tissueMask(opened, path: imagePath)
            tiles = tiles.filter { mask.containsTissue($0) }
        }
        let limit = WireLimits.default.maxPixelsPerTask
        if let big = tiles.first, big.height * big.width > limit {
            throw ClusterError("tile \(tile) is too large: more than \(limit) pixels")
        }
        let layout = try MapLayout(
            classes: plan.classes, height: size.h, width: size.w, tileSize: tile,
            dtype: options.storeKind == .zarr ? options.dtype : .float32, levels: levels,
            compressed: options.storeKind == .zarr)
        let mapStore: MapStore
        if create {
            mapStore = try MapStore.create(at: storePath, layout: layout)
        } else {
            mapStore = try MapStore.open(at: storePath)
            guard mapStore.layout == layout else {
                throw ClusterError("the map store \(storePath) does not have the layout this job plans")
            }
        }
        let outDir = (storePath as NSString).deletingLastPathComponent
        let finalPath =
            options.storeKind == .zarr
            ? "\(outDir)/\(stem).zarr"
            : "\(outDir)/.\(stem).chunks-\(id)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
        let files = SharedJobFiles(imagePath: imagePath, level: header.level, store: mapStore, finalPath: finalPath)
        return CoordinatorJob(
            id: id, options: options, mode: mode, tile: tile, model: bundle, plan: plan,
            preprocessing: TaskCodec.preprocessing(pre), image: nil, imageSize: size, shared: files, stem: stem,
            directory: dir, outputDirectory: outDir,
            tasks: tiles.map { TileTask(mode: mode, rect: $0, image: size) })
    }

    /// A worker wrote a tile: check the receipt names exactly the tile's chunks, mark
    /// the task done and queue the receipt for the journal. The chunks are not read.
    func handleReceipt(_ r: Wire.TileReceipt, from worker: Worker) {
        guard let (job, index, mine) = runningAttempt(of: Wire.TaskRef(jobID: r.jobID, taskID: r.taskID), r.attempt, from: worker)
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
        markDone(job, index, mine, by: worker)
        if persistent {
            let chunks = r.chunks.map { "\($0.key):\($0.size):\(String($0.crc32, radix: 16))" }
            job.sharedUnsynced.append("\(index) " + chunks.joined(separator: " "))
        }
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
            guard let job = jobs[id], !job.sharedUnsynced.isEmpty else { continue }
            batches.append((job.directory + "/" + Self.receiptJournal, job.sharedUnsynced))
            job.sharedUnsynced.removeAll()
        }
        guard !batches.isEmpty else { return }
        let (logger, committed) = (logger, batches)
        storeQueue.async {
            for (path, lines) in committed {
                do {
                    try DurableFile.append(Array((lines.joined(separator: "\n") + "\n").utf8), to: path)
                } catch {
                    logger.error(
                        "cannot commit tile receipts (those tiles will be recomputed after a restart)",
                        metadata: ["journal": "\(path)", "error": "\(error)"])
                }
            }
        }
    }

    /// Completes a shared-storage job off the loop thread: the store's metadata is
    /// marked complete and the folder renamed to its final name (replacing an older
    /// map of the same name). No map values are read.
    func finishShared(_ job: CoordinatorJob, _ shared: SharedJobFiles) {
        let id = job.id
        let completions = completions
        finishQueue.async {
            let result = Result { () throws -> [String] in
                // Late copies of a task (stragglers) may still be writing: they only ever
                // rename complete chunks into place, and their temporary files are swept here.
                shared.store.removeInterruptedWrites()
                try shared.store.finish()
                if FileManager.default.fileExists(atPath: shared.finalPath) {
                    try FileManager.default.removeItem(atPath: shared.finalPath)
                }
                guard rename(shared.store.path, shared.finalPath) == 0 else {
                    throw ClusterError(
                        "cannot move the finished map \(shared.store.path) to \(shared.finalPath): "
                            + String(cString: strerror(errno)))
                }
                return [shared.finalPath]
            }
            completions.withLock { $0.append((id, result)) }
        }
    }

    /// Resumes a shared-storage job: the store is reopened, every journalled receipt
    /// whose chunks are present and match (size, CRC-32) counts as done, the rest is queued.
    func resumeShared(_ id: UInt64, _ record: JobRecord, options: JobOptions, bundle: ModelBundle) throws
        -> CoordinatorJob
    {
        let job = try makeSharedJob(
            id: id, directory: store.directory(id), options: options, mode: record.mode, tile: record.tile,
            preprocessing: record.preprocessing, model: bundle, imagePath: record.sharedImage!, stem: record.stem,
            storePath: record.sharedStore!, create: false)
        let layout = job.shared!.store.layout
        var byTile: [TileIndex: Int] = [:]
        for (i, task) in job.tasks.enumerated() { if let t = layout.tile(for: task.rect) { byTile[t] = i } }
        let text = (try? String(contentsOfFile: store.directory(id) + "/" + Self.receiptJournal, encoding: .utf8)) ?? ""
        var unusable = 0
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let index = Int(fields.first ?? ""), index < job.tasks.count, job.states[index] == .pending,
                let tile = layout.tile(for: job.tasks[index].rect), byTile[tile] == index
            else { continue }
            let chunks = fields.dropFirst().compactMap { field -> TileReceipt.Chunk? in
                let parts = field.split(separator: ":")
                guard parts.count == 3, let size = Int(parts[1]), let crc = UInt32(parts[2], radix: 16) else { return nil }
                return TileReceipt.Chunk(key: String(parts[0]), size: size, crc32: crc)
            }
            do {
                guard chunks.count == layout.levels else { throw ClusterError("a torn journal line") }
                try job.shared!.store.verify(TileReceipt(tile: tile, chunks: chunks))
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
        job.message =
            "resumed: \(job.restored)/\(job.tasks.count) tiles verified in the map store"
            + (unusable > 0 ? " (\(unusable) did not match their receipts)" : "")
        return job
    }
}
