import Foundation
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// Creating a job: its files stored (durably with a persistent store), its model
/// planned (plans are cached by model and engine settings), its image read and its
/// tasks planned. Resuming from the store builds jobs the same way.
extension CoordinatorLoop {
    /// Stores the job's files (durably, with a persistent store: the job exists once
    /// `submitted` is sent), loads its model and image, plans its tasks.
    func createJob(_ spec: Wire.JobSpec) throws -> UInt64 {
        preparingSince = monotonicSeconds()
        let options = try JobOptions(encoded: spec.outputOptions)
        if options.outputDirectory != nil && !configuration.allowLocalPaths && options.storage != .shared {
            throw ClusterError("this coordinator does not write outputs to client-chosen folders: use fetch")
        }
        let id = nextJobID
        nextJobID += 1
        let dir = store.directory(id)
        if persistent {
            try DurableFile.createDirectory(store.tilesDirectory(id))
        } else {
            try FileManager.default.createDirectory(atPath: store.tilesDirectory(id), withIntermediateDirectories: true)
        }
        do {
            return try createJob(spec, options: options, id: id, directory: dir)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
    }

    private func createJob(
        _ spec: Wire.JobSpec, options: JobOptions, id: UInt64,
        directory dir: String
    ) throws -> UInt64 {
        if options.storage == .shared {
            let job = try createSharedJob(spec, options: options, id: id, directory: dir)
            register(job)
            logStart(job)
            return id
        }
        let proto = try fileBytes(spec.prototxt, "prototxt")
        let weights = try fileBytes(spec.weights, "weights")
        guard proto != nil || weights != nil else { throw ClusterError("the job names no model files") }
        let bundle = ModelBundle(prototxt: proto?.bytes ?? [], weights: weights?.bytes ?? [])
        let (imagePath, stem, imageCheck) = try storeImage(spec.image, directory: dir)
        if persistent {
            if !bundle.prototxt.isEmpty { try DurableFile.write(bundle.prototxt, to: dir + "/deploy.prototxt") }
            if !bundle.weights.isEmpty { try DurableFile.write(bundle.weights, to: dir + "/weights.caffemodel") }
        }
        let job = try makeJob(
            id: id, directory: dir, options: options, mode: spec.mode, tile: Int(spec.tileSize),
            preprocessing: spec.preprocessing, model: bundle, imagePath: imagePath, stem: stem)
        if persistent {
            // Last: a whole entry is one with a record.
            try store.writeRecord(
                JobRecord(
                    mode: spec.mode, tile: Int(spec.tileSize), stem: stem,
                    options: spec.outputOptions, preprocessing: spec.preprocessing,
                    modelDigest: bundle.digest.hex, imageCRC32: imageCheck.crc,
                    imageBytes: imageCheck.bytes), id)
        }
        register(job)
        logStart(job)
        return id
    }

    private func logStart(_ job: CoordinatorJob) {
        logger.info(
            "job started",
            metadata: [
                "job": "\(job.id)", "image": "\(job.stem)",
                "prepared-s": "\(String(format: "%.2f", monotonicSeconds() - preparingSince))",
                "size": "\(job.imageSize.w)×\(job.imageSize.h)",
                "mode": "\(job.mode.rawValue)", "tile": "\(job.tile)",
                "tasks": "\(job.tasks.count)", "model": "\(job.model.digest.hex.prefix(12))",
                "storage": "\(job.shared == nil ? "upload" : "shared")",
            ])
        if job.tasks.isEmpty { finish(job) }
    }

    /// The bytes and file name of a submitted file: inline, or read from a path when
    /// this coordinator allows it. Nil for an empty inline model file (not given).
    private func fileBytes(_ source: Wire.FileSource, _ what: String) throws -> (bytes: [UInt8], name: String)? {
        switch source {
        case .inline(let name, let b):
            return b.isEmpty && what != "image" ? nil : (b, name)
        case .path(let path):
            guard configuration.allowLocalPaths else {
                throw ClusterError("this coordinator does not read client-named paths: upload the \(what)")
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ClusterError("cannot read the \(what) \(path)")
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
    /// or one read back from the store.
    func makeJob(
        id: UInt64, directory dir: String, options: JobOptions, mode wireMode: Wire.Mode, tile: Int,
        preprocessing: Wire.Preprocessing, model bundle: ModelBundle, imagePath: String,
        stem: String
    ) throws -> CoordinatorJob {
        let plan = try self.plan(bundle, options)
        // The image goes to disk as raw samples, decoded a band at a time: tasks read
        // their regions from there, so the coordinator's memory does not grow with it.
        let header = try RawPixelFile.transcode(png: imagePath, to: dir + "/image.raw", maxPixels: configuration.maxPixels)
        let image = try RawPixelFile(
            path: dir + "/image.raw", width: header.width, height: header.height, channels: header.channels,
            bitDepth: header.bitDepth, name: imagePath)
        let pre = try TaskCodec.preprocessing(preprocessing).validated(channels: plan.inputChannels)
        _ = try ChannelMapping.resolve(
            imageChannels: image.channels, netChannels: plan.inputChannels,
            order: pre.channelOrder)
        let mode = TaskCodec.mode(wireMode)
        let size = Size2(image.height, image.width)
        let (map, tasks) = try UploadMap.plan(
            mode: mode, image: size, tile: tile, geometry: plan.tasks, classes: plan.classes,
            storePath: dir + "/map.chunks")
        let limit = WireLimits.default.maxPixelsPerTask
        if let big = tasks.first(where: {
            let r = plan.tasks.inputRect($0); return r.height * r.width > limit
        }) {
            throw ClusterError("tile \(tile) is too large: task \(big) needs more than \(limit) input pixels")
        }
        let job = CoordinatorJob(
            id: id, options: options, mode: mode, tile: tile, model: bundle,
            plan: plan, preprocessing: TaskCodec.preprocessing(pre), image: image, imageSize: size, stem: stem,
            directory: dir, outputDirectory: options.outputDirectory ?? dir + "/out", tasks: tasks)
        job.map = map
        return job
    }

    /// The model's plan for these engine settings, made once and cached (four at most).
    func plan(_ bundle: ModelBundle, _ options: JobOptions) throws -> ModelPlan {
        let key = bundle.digest.hex + options.engine.encoded.map { String($0) }.joined(separator: ".")
        if let cached = plans[key] { return cached }
        let plan = try options.engine.plan(bundle).plan
        if plans.count >= 4 { plans.removeAll() }
        plans[key] = plan
        return plan
    }

    func register(_ job: CoordinatorJob) {
        jobs[job.id] = job
        jobOrder.append(job.id)
    }
}
