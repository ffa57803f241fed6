import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// Everything it takes to turn a submission into a `CoordinatorJob`: storing its
/// files (durably with a persistent store), planning its model (plans are cached
/// by model and engine settings), reading the image's header or transcoding an
/// upload, planning tasks and creating the map store. It holds no loop state, so
/// it runs on the preparation queue while the loop goes on serving (a large
/// upload takes seconds to transcode); resuming from the store uses it too.
struct JobFactory: Sendable {
    let configuration: CoordinatorService.Configuration
    let store: JobStore
    let persistent: Bool
    let plans: Locked<[String: ModelPlan]>
    let logger: Logger
    /// Set when the coordinator is asked to stop: a long preparation (a slide's `--tissue` view read
    /// in full) gives up rather than hold the shutdown, which waits for it.
    let stopRequested: Locked<Bool>

    /// Creates job `id` (its folder `dir` exists) from a submission.
    /// `uploaded`: the image arrived in parts and lies decoded in `dir/image.raw`, with this CRC-32 and size.
    func create(
        _ spec: Wire.JobSpec, options: JobOptions, id: UInt64, directory dir: String, owner: String?,
        uploaded: (crc: UInt32, bytes: Int)? = nil, reserved: UInt64 = 0
    ) throws -> CoordinatorJob {
        let job =
            options.storage == .shared
            ? try createSharedJob(spec, options: options, id: id, directory: dir, owner: owner)
            : try createUploadJob(
                spec, options: options, id: id, directory: dir, owner: owner, uploaded: uploaded, reserved: reserved)
        job.owner = owner
        return job
    }

    private func createUploadJob(
        _ spec: Wire.JobSpec, options: JobOptions, id: UInt64,
        directory dir: String, owner: String?, uploaded: (crc: UInt32, bytes: Int)?, reserved: UInt64
    ) throws -> CoordinatorJob {
        let proto = try fileBytes(spec.prototxt, "prototxt")
        let weights = try fileBytes(spec.weights, "weights")
        guard proto != nil || weights != nil else { throw ClusterError("the job names no model files") }
        let bundle = ModelBundle(prototxt: proto?.bytes ?? [], weights: weights?.bytes ?? [])
        let (imagePath, stem, imageCheck) =
            try uploaded.map { (dir + "/image.raw", OutputOptions.stem(forInput: Self.name(of: spec.image)), $0) }
            ?? storeImage(spec.image, directory: dir)
        if persistent {
            if !bundle.prototxt.isEmpty {
                try DurableFile.write(bundle.prototxt, to: dir + "/" + JobStore.modelFiles[0])
            }
            if !bundle.weights.isEmpty { try DurableFile.write(bundle.weights, to: dir + "/" + JobStore.modelFiles[1]) }
        }
        let job = try makeJob(
            id: id, directory: dir, options: options, mode: spec.mode, tile: Int(spec.tileSize),
            preprocessing: spec.preprocessing, model: bundle, imagePath: imagePath, stem: stem, reserved: reserved)
        if persistent {
            // Last: a whole entry is one with a record (and a reserved ending slot).
            try store.reserveEndingSlot(id)
            try store.writeRecord(
                JobRecord(
                    mode: spec.mode, tile: Int(spec.tileSize), stem: stem,
                    options: spec.outputOptions, preprocessing: spec.preprocessing,
                    modelDigest: bundle.digest.hex, imageCRC32: imageCheck.crc,
                    imageBytes: imageCheck.bytes, owner: owner), id)
        }
        return job
    }

    /// The file name a source gives (the path's last component).
    static func name(of source: Wire.FileSource) -> String {
        switch source {
        case .inline(let name, _): return name
        case .path(let path): return (path as NSString).lastPathComponent
        }
    }

    private func fileBytes(_ source: Wire.FileSource, _ what: String) throws -> (bytes: [UInt8], name: String)? {
        switch source {
        case .inline(let name, let b):
            return b.isEmpty && what != "image" ? nil : (b, name)
        case .path(let path):
            guard configuration.allowLocalPaths else {
                throw ClusterError("this coordinator does not read client-named paths: upload the \(what)")
            }
            if what == "prototxt", let onnx = try Self.onnxBytes(path) {
                return (onnx, (path as NSString).lastPathComponent)
            }
            if what == "image" {
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw ClusterError("cannot read the image \(path)")
                }
                return ([UInt8](data), (path as NSString).lastPathComponent)
            }
            let data: Data
            do {
                // Checked first: a regular file under 2 GiB (hostile-input audit: a client-named 1.9 GB
                // sparse file, read whole and copied, aborted the coordinator).
                data = try ModelFiles.read(path, what: what)
            } catch let e as ModelError {
                throw ClusterError(e.description)
            }
            return ([UInt8](data), (path as NSString).lastPathComponent)
        }
    }

    /// Where the job reads its image and the stem of its output names. The embedded
    /// `run` (local paths, no persistent store) reads the image where it is; every
    /// other image is written into the job's folder, with the size and CRC-32 its
    /// record keeps so a resume can check it.
    private func storeImage(
        _ source: Wire.FileSource, directory dir: String
    ) throws
        -> (path: String, stem: String, check: (crc: UInt32, bytes: Int))
    {
        switch source {
        case .path(let path) where configuration.allowLocalPaths && !persistent:
            return (path, OutputOptions.stem(forInput: path), (0, 0))
        default:
            guard let image = try fileBytes(source, "image") else { throw ClusterError("empty image") }
            let imagePath = dir + "/image.png"
            try DurableFile.write(image.bytes, to: imagePath)
            return (
                imagePath, OutputOptions.stem(forInput: image.name), (CRC32.checksum(image.bytes), image.bytes.count)
            )
        }
    }

    /// Plans (or reuses the plan of) the model, reads the image and plans the tasks: a new job,
    /// or (`resume`) one read back from the store, keeping its map store.
    func makeJob(
        id: UInt64, directory dir: String, options: JobOptions, mode wireMode: Wire.Mode, tile: Int,
        preprocessing: Wire.Preprocessing, model bundle: ModelBundle, imagePath: String,
        stem: String, resume: Bool = false, reserved: UInt64 = 0
    ) throws -> CoordinatorJob {
        let plan = try self.plan(bundle, options)
        let image: RawPixelFile
        if let shape = options.rawImage {
            // Decoded by the client and sent in parts (`CoordinatorLoop+Uploads`).
            image = try RawPixelFile(
                path: dir + "/image.raw", width: shape.width, height: shape.height, channels: shape.channels,
                bitDepth: shape.bitDepth, name: "\(stem) (uploaded)")
        } else {
            // The image goes to disk as raw samples, decoded a band at a time: tasks read
            // their regions from there, so the coordinator's memory does not grow with it.
            let header = try RawPixelFile.transcode(
                png: imagePath, to: dir + "/image.raw", maxPixels: configuration.maxPixels,
                warn: { [logger] in
                    logger.warning("\($0)", metadata: ["job": "\(id)", "image": "\(stem.printable(limit: 300))"])
                })
            image = try RawPixelFile(
                path: dir + "/image.raw", width: header.width, height: header.height, channels: header.channels,
                bitDepth: header.bitDepth, name: imagePath)
        }
        let pre = try TaskCodec.preprocessing(preprocessing).validated(channels: plan.inputChannels)
        _ = try ChannelMapping.resolve(
            imageChannels: image.channels, netChannels: plan.inputChannels,
            order: pre.channelOrder)
        let mode = TaskCodec.mode(wireMode)
        let size = Size2(image.height, image.width)
        if let kept = options.keptClasses, let bad = kept.first(where: { $0 >= plan.classes }) {
            throw ClusterError(.invalidOption, "kept class \(bad) does not exist (the net has \(plan.classes) classes)")
        }
        // Workers send only the kept classes' planes, and the map holds only those.
        let kept = options.keptClasses == Array(0..<plan.classes) ? nil : options.keptClasses
        if let kept, let kinds = try? options.outputOptions(directory: dir, stem: stem).kinds,
            !kinds.isDisjoint(with: [.labels, .overlay])
        {
            throw ClusterError(
                .invalidOption,
                "--keep-classes keeps only classes \(kept): labels and overlays need every class "
                    + "(choose --outputs among npy, prob)")
        }
        // The plan lists every task: bound it before it is made (a small --tile in shift is S² tasks a tile).
        let perTile = TilePlan.tasksPerTile(mode: mode, stride: plan.tasks.stride)
        let side = mode == .shift ? TilePlan.roundUp(tile, TilePlan.shiftUnit(plan.tasks.stride)) : tile
        if let why = TilePlan.tooManyTiles(image: size, tile: side, tasksPerTile: perTile) {
            throw ClusterError(.invalidOption, why)
        }
        let (map, tasks) = try UploadMap.plan(
            mode: mode, image: size, tile: tile, geometry: plan.tasks, classes: kept?.count ?? plan.classes,
            storePath: dir + "/map.chunks", resume: resume)
        if let why = UploadTaskLimits.problem(
            tasks, geometry: plan.tasks, tile: tile, classes: kept?.count ?? plan.classes,
            maxResultBytes: configuration.maxWorkerMessageBytes)
        {
            throw ClusterError(.invalidOption, why)
        }
        if !resume {
            try checkRoom(map: map.store.layout, directory: dir, stem: stem, reserved: reserved)
        }
        let job = CoordinatorJob(
            id: id, options: options, mode: mode, tile: tile, model: bundle,
            plan: plan, preprocessing: TaskCodec.preprocessing(pre), image: image, imageSize: size, stem: stem,
            directory: dir, outputDirectory: options.outputDirectory ?? dir + "/out", tasks: tasks)
        job.map = map
        return job
    }

    /// Refuses an upload job whose map cannot fit in the store's free space (its image is in already): its float32
    /// chunks (its `.npy` is served from them; its PNGs wait for room if they do not fit: `OutputsWait`).
    /// Accepted, a 100 000² slide filled the disk tile by tile and then waited for good (audit 55). `reserved`: what
    /// the jobs under way have still to write there (`CoordinatorLoop.reservedStoreBytes`): two jobs that each fit
    /// alone filled the disk together and neither could finish (review 33).
    private func checkRoom(map layout: MapLayout, directory dir: String, stem: String, reserved: UInt64) throws {
        guard let disk = freeBytes(dir),
            let refusal = AdmissionRefusal.storeFull(
                "image \(stem.printable(limit: 300)): its map",
                detail: "\(layout.classes) class\(layout.classes == 1 ? "" : "es") × \(layout.width)×\(layout.height) "
                    + "float32 values", need: layout.levelZeroBytes, disk: disk,
                reserved: reserved, remedy: "keep fewer classes (--keep-classes), ")
        else { return }
        throw refusal
    }

    /// The model's plan for these engine settings, made once and cached (four at most).
    func plan(_ bundle: ModelBundle, _ options: JobOptions) throws -> ModelPlan {
        let key = bundle.digest.hex + options.engine.encoded.map { String($0) }.joined(separator: ".")
        if let cached = plans.withLock({ $0[key] }) { return cached }
        let plan = try options.engine.plan(bundle).plan
        plans.withLock { plans in
            if plans.count >= 4 { plans.removeAll() }
            plans[key] = plan
        }
        return plan
    }

    /// A new shared-storage job: checks the paths, plans it from the image's header,
    /// creates its store, and records it (durably, with a persistent store).
    func createSharedJob(
        _ spec: Wire.JobSpec, options: JobOptions, id: UInt64, directory dir: String, owner: String?
    ) throws -> CoordinatorJob {
        guard case .path(let imagePath) = spec.image else {
            throw ClusterError(.invalidOption, "a shared-storage job names its image by path, it does not upload it")
        }
        guard let out = options.outputDirectory else {
            throw ClusterError(.invalidOption, "a shared-storage job needs an output folder (--out) the workers share")
        }
        let image = try sharedPath(imagePath, "image")
        let outDir = try sharedPath(out, "output folder")
        let bundle = try modelBundle(spec)
        let stem = OutputOptions.stem(forInput: image, image: options.image)
        let token = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        if let writer = PartialOutputs.liveWriter(stem: stem, in: outDir, ownStore: store.root) {
            throw ClusterError(
                .invalidOption,
                "\(writer) is writing the map of \(image) in \(outDir) now: give this job another --out, or submit "
                    + "it once that one ends")
        }
        PartialOutputs.removeOrphans(stem: stem, in: outDir, logger: logger)
        let storePath = "\(outDir)/.\(stem).\(options.storeKind == .zarr ? "zarr" : "chunks").partial-\(token)"
        if persistent { try PartialOutputs.plan(storePath, jobFolder: dir) }
        // The partial map's folder appears with its owner record, locked, before the job is planned (a
        // `--tissue` view can take a while) and its store written: a second run of the image into this folder
        // checked in between found it unowned and mapped it too (its map then replaced this one's).
        var lock: PartialLock?
        do {
            guard mkdir(storePath, 0o755) == 0 else {
                throw ClusterError(
                    .storage, "cannot create the partial map \(storePath): \(String(cString: strerror(errno)))")
            }
            try PartialOutputs.markOwner(storePath, storeRoot: store.root, key: owner)
            lock = PartialLock(storePath)
            let job = try makeSharedJob(
                id: id, directory: dir, options: options, mode: spec.mode, tile: Int(spec.tileSize),
                preprocessing: spec.preprocessing, model: bundle, imagePath: image, stem: stem, storePath: storePath,
                create: true)
            job.shared!.lock = lock
            try recordSharedJob(job, spec, bundle: bundle, stem: stem, image: image, owner: owner, id: id, dir: dir)
            return job
        } catch {
            // Nothing refers to the new partial map (a store begun on a disk that filled, audit 55 F6: an empty
            // partial map was left): it must not stay in the shared folder.
            try? FileManager.default.removeItem(atPath: storePath)
            lock?.release()
            throw error
        }
    }

    /// Writes a new shared job's model and record (with a persistent store).
    private func recordSharedJob(
        _ job: CoordinatorJob, _ spec: Wire.JobSpec, bundle: ModelBundle, stem: String, image: String,
        owner: String?, id: UInt64, dir: String
    ) throws {
        if persistent {
            if !bundle.prototxt.isEmpty {
                try DurableFile.write(bundle.prototxt, to: dir + "/" + JobStore.modelFiles[0])
            }
            if !bundle.weights.isEmpty { try DurableFile.write(bundle.weights, to: dir + "/" + JobStore.modelFiles[1]) }
            try store.reserveEndingSlot(id)
            var record = JobRecord(
                mode: spec.mode, tile: job.tile, stem: stem, options: spec.outputOptions,
                preprocessing: spec.preprocessing, modelDigest: bundle.digest.hex, imageCRC32: 0, imageBytes: 0,
                sharedImage: image, sharedStore: job.shared!.store.path, owner: owner)
            record.sharedImageIdentity = job.shared!.imageIdentity?.description
            try store.writeRecord(record, id)
        }
    }

    /// An ONNX model named by path, with the external-data files next to it put inside
    /// (workers receive one file); nil for any other model file.
    static func onnxBytes(_ path: String, dataWithin: ((String) -> Bool)? = nil) throws -> [UInt8]? {
        guard ONNXFiles.isONNX(nil, name: path) else { return nil }
        do {
            return try ONNXFiles.selfContainedBytes(path, dataWithin: dataWithin)
        } catch let e as ModelError {
            throw ClusterError(e.description)
        }
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
                // External data lies next to the model as named, not next to the file a link leads
                // to (the Hugging Face cache links each file to a blob elsewhere; user audit: `run`
                // read the blob folder's files). Read for others, its links must stay in the roots.
                let roots = SharedRoots(configuration.sharedRoots)
                let within: ((String) -> Bool)? =
                    configuration.allowLocalPaths ? nil : { roots.contains($0) != nil }
                let named = URL(fileURLWithPath: path).standardizedFileURL.path
                if what == "prototxt", let onnx = try Self.onnxBytes(named, dataWithin: within) { return onnx }
                do {
                    // A regular file under 2 GiB (hostile-input audit: a 1.9 GB sparse file named as the
                    // weights was read whole, copied, and aborted the coordinator).
                    return [UInt8](try ModelFiles.read(resolved, what: what))
                } catch let e as ModelError {
                    throw ClusterError("the \(what) \(path): \(e.message)")
                }
            }
        }
        let bundle = ModelBundle(
            prototxt: try bytes(spec.prototxt, "prototxt"), weights: try bytes(spec.weights, "weights"))
        guard !bundle.prototxt.isEmpty || !bundle.weights.isEmpty else {
            throw ClusterError("the job names no model files")
        }
        return bundle
    }

    /// `path` resolved, if clients may name it: anything on an embedded coordinator
    /// (`allowLocalPaths`), else only under `--shared-root` (links resolved).
    func sharedPath(_ path: String, _ what: String) throws -> String {
        // (`run`'s own coordinator serves no one else: its user's names are taken as they are.)
        if configuration.allowLocalPaths { return SharedRoots.resolve(path) }
        try Self.checkPrintable(path, what)
        let roots = SharedRoots(configuration.sharedRoots)
        guard !roots.roots.isEmpty else {
            throw ClusterError(
                .invalidOption, "this coordinator takes no shared-storage jobs: start it with --shared-root FOLDER")
        }
        guard let resolved = roots.contains(path) else {
            throw ClusterError(
                .invalidOption,
                "the \(what) \(path) is outside the coordinator's --shared-root "
                    + "(\(roots.given.joined(separator: ", ")))")
        }
        return resolved
    }

    /// Refuses a client's name or path with control characters (a newline, an escape; a tab is fine) or bidi
    /// overrides: it goes into log lines and other users' `status`, where a newline forged whole log lines and an
    /// escape reached their terminals (hostile-peer audit 54 F11). Other format characters (a ZWNJ in a Persian
    /// name, an emoji's ZWJ) are names' own (review 31).
    static func checkPrintable(_ name: String, _ what: String) throws {
        let hostile = name.unicodeScalars.contains {
            ($0.properties.generalCategory == .control && $0 != "\t") || (0x202A...0x202E).contains($0.value)
                || (0x2066...0x2069).contains($0.value)
        }
        guard hostile else { return }
        throw ClusterError(
            .invalidOption,
            "the \(what) \(name.printable(limit: 200)) has control characters in its name (a newline, an escape; "
                + "'?' here): rename it")
    }

    /// Plans a shared-storage job from the image's header and creates (or, resuming,
    /// opens) its store: one task per map tile, tiles without tissue left out.
    func makeSharedJob(
        id: UInt64, directory dir: String, options: JobOptions, mode wireMode: Wire.Mode, tile requested: Int,
        preprocessing: Wire.Preprocessing, model bundle: ModelBundle, imagePath: String, stem: String,
        storePath: String, create: Bool
    ) throws -> CoordinatorJob {
        let plan = try self.plan(bundle, options)
        // Before the header is read: the image the job plans, checked again when it finishes.
        let identity = FileIdentity(path: imagePath)
        // A PNG (decoded whole by each worker, to its disk) within serve --max-pixels, as an upload's (audit 54 F8).
        let header = try ImageInput.header(
            path: imagePath, image: options.image, level: options.level, mpp: options.mpp,
            maxPixels: configuration.maxPixels)
        let pre = try TaskCodec.preprocessing(preprocessing).validated(channels: plan.inputChannels)
        _ = try ChannelMapping.resolve(
            imageChannels: header.channels, netChannels: plan.inputChannels, order: pre.channelOrder)
        let mode = TaskCodec.mode(wireMode)
        let size = Size2(header.height, header.width)
        let stride = plan.tasks.stride
        var tile = mode == .shift ? TilePlan.roundUp(requested, TilePlan.shiftUnit(stride)) : requested
        var levels = 1
        // A raw store (`run` without the zarr) keeps exact float32 values, with the pyramid its TIFF needs.
        if options.storeKind == .zarr || (try? OutputOptions.parseKinds(options.outputs))?.contains(.tiff) == true {
            (tile, levels) = MapPyramid.fit(tile: tile, image: size, stride: stride, fixedTile: true)
        }
        if let why = TilePlan.tooManyTiles(image: size, tile: tile) { throw ClusterError(why) }
        var tiles = TilePlan.mapTiles(mode: mode, image: size, tile: tile, stride: stride)
        var tissue: (fraction: Double, skippedTiles: Int)?
        var tissueRemarks = ""
        if options.tissue {
            let mask: TissueMask
            do {
                mask = try ImageInput.tissueMask(
                    path: imagePath, header: header, tolerateDamage: options.skipCorruptTiles,
                    announce: { [logger] in logger.notice("\($0)", metadata: ["image": "\(imagePath)"]) },
                    stop: { stopRequested.withLock { $0 } })
            } catch is CancellationError {
                throw ClusterError("the coordinator is stopping: --tissue's view of \(imagePath) was not finished")
            }
            let all = tiles.count
            tiles = tiles.filter { mask.containsTissue($0) }
            tissue = (mask.tissueFraction, all - tiles.count)
            if mask.feature == .brightness { tissueRemarks = " (a dark background: its bright parts are the tissue)" }
            if mask.paleCells > 0 {
                tissueRemarks += String(
                    format: " (%.1f %% of the view barely coloured but darker than the glass: counted as tissue)",
                    100 * Double(mask.paleCells) / Double(max(1, mask.cells.count)))
            }
            if mask.damagedCells > 0 {
                tissueRemarks += String(
                    format: " (%.1f %% of the view unreadable: its tiles are tried)",
                    100 * Double(mask.damagedCells) / Double(max(1, mask.width * mask.height)))
            }
            if tiles.isEmpty { tissueRemarks += " (no tissue found: nothing to compute; map without --tissue?)" }
        }
        let limit = WireLimits.default.maxPixelsPerTask
        if let big = tiles.first, big.height * big.width > limit {
            throw ClusterError("tile \(tile) is too large: more than \(limit) pixels")
        }
        if let kept = options.keptClasses, let bad = kept.first(where: { $0 >= plan.classes }) {
            throw ClusterError(.invalidOption, "kept class \(bad) does not exist (the net has \(plan.classes) classes)")
        }
        let kept = options.keptClasses == Array(0..<plan.classes) ? nil : options.keptClasses
        let layout = try MapLayout(
            classes: kept?.count ?? plan.classes, height: size.h, width: size.w,
            tileSize: MapLayout.chunkSide(tile: tile, height: size.h, width: size.w, levels: levels),
            dtype: options.storeKind == .zarr ? options.dtype : .float32, levels: levels,
            compression: options.storeKind == .zarr ? .blosc : .none, kept: kept, netClasses: plan.classes,
            micronsPerPixel: header.mpp, micronsPerPixelY: header.mppY,
            source: MapSource(file: imagePath, image: header.image, level: header.level, scale: header.scale))
        let mapStore: MapStore
        if create {
            mapStore = try MapStore.create(at: storePath, layout: layout, besides: [PartialOutputs.ownerFile])
        } else {
            mapStore = try MapStore.open(at: storePath)
            // A store begun before maps recorded microns per pixel, or before upper levels
            // were joined (every level chunked by tile), resumes as it is.
            let planned = try MapLayout(
                classes: layout.classes, height: layout.height, width: layout.width, tileSize: layout.tileSize,
                dtype: layout.dtype, levels: layout.levels, compression: layout.compression, kept: layout.kept,
                netClasses: layout.netClasses, micronsPerPixel: mapStore.layout.micronsPerPixel,
                micronsPerPixelY: mapStore.layout.micronsPerPixelY,
                tileLevels: mapStore.layout.tileLevels, source: mapStore.layout.source)
            guard mapStore.layout == planned else {
                throw ClusterError("the map store \(storePath) does not have the layout this job plans")
            }
        }
        let outDir = parentPath(storePath)
        let finalPath =
            options.storeKind == .zarr
            ? "\(outDir)/\(stem).zarr"
            // The finished tile store `run` writes its outputs from, then removes: named for this process, so
            // the next run's sweep removes it when a kill -9 left it (review 32 R4: it stayed for good).
            : "\(outDir)/.\(stem).chunks.tmp-\(getpid())-\(id)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
        let files = SharedJobFiles(
            imagePath: imagePath, imageIdentity: identity, image: header.image, level: header.level, store: mapStore,
            finalPath: finalPath, tissue: tissue)
        let job = CoordinatorJob(
            id: id, options: options, mode: mode, tile: tile, model: bundle, plan: plan,
            preprocessing: TaskCodec.preprocessing(pre), image: nil, imageSize: size, shared: files, stem: stem,
            directory: dir, outputDirectory: outDir,
            tasks: tiles.map { TileTask(mode: mode, rect: $0, image: size) })
        if let tissue {
            job.message =
                String(
                    format: "tissue: %.1f %% of the image", 100 * tissue.fraction)
                + tissueRemarks
                + "; \(tissue.skippedTiles) of \(tissue.skippedTiles + tiles.count) tiles hold none and are not computed"
        }
        return job
    }
}
