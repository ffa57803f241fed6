import ArgumentParser
import CoordinatorService
import Foundation
import Logging
import TesseraCUDA
import TesseraCluster
import TesseraCore
import TesseraEngine
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// `tessera-coordinator run`: maps images on this machine, by default through an
/// embedded coordinator and local worker processes (the same protocol as a cluster).
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute the probability maps of images and whole slides with a Caffe patch classifier.",
        discussion: """
            Modes: dense (exact, one pass of the dilated net: the default), shift (exact, S² strided \
            passes interlaced), fast (one strided pass, interpolated between grid points every S \
            pixels), naive (the classifier on every patch; a reference for small images). \
            dense, shift and naive give the same map to ~1e-5.

            By default an embedded coordinator on loopback hands the map tiles to --workers local \
            tessera-worker processes (found next to this executable, or --worker-binary / \
            $TESSERA_WORKER_BINARY), exactly as a cluster's shared-storage job: the workers read the \
            image and write the map's chunks themselves. --in-process computes in this process \
            instead. Both give byte-identical maps.

            Whole slides and large TIFFs (SVS, NDPI, MRXS, SCN, generic tiled TIFF/BigTIFF) are read tile \
            by tile at the pyramid level chosen by --level or --mpp and written as an OME-Zarr pyramid \
            (--outputs zarr, the default for them) and/or a pyramidal TIFF (tiff): memory stays flat at \
            any image size. --tissue skips tiles without tissue.

            Example:
              tessera-coordinator run --model models/demo/deploy.prototxt \\
                --weights models/demo/nuclei32.caffemodel \\
                --mean 134,151,171 --scale 0.015625 \\
                --mode dense --out out examples/ihc.png
            """
    )

    @OptionGroup var model: ModelOptions
    @OptionGroup var preprocessing: PreprocessingOptions
    @OptionGroup var output: OutputFlags
    @OptionGroup var job: JobFlags
    @OptionGroup var compute: DeviceFlags

    @Option(help: "Engine threads (default: all cores, shared between the workers).") var threads: Int?
    @Option(help: "Local worker processes.") var workers = 1
    @Flag(help: "Compute in this process, without coordinator or workers.") var inProcess = false
    @Option(help: ArgumentHelp("The tessera-worker executable.", valueName: "path")) var workerBinary: String?
    @Option(help: "Job store folder for the embedded coordinator (default: temporary).") var store: String?
    @Option(
        help: ArgumentHelp(
            "Refuse PNG images with more pixels than this, before decoding them (slides and TIFFs are read "
                + "region by region, never whole, so any size maps)."))
    var maxPixels = PNGReader.defaultMaxPixels
    @OptionGroup var slide: SlideFlags
    @Option(
        help: ArgumentHelp(
            "After mapping, classify N random pixels with the exact patch classifier and report "
                + "the map's deviation (log and <stem>.check.json). Default: 256 for nets that are "
                + "not exact (--allow-padding), else 0. In-process runs.", valueName: "N"))
    var check: Int?
    @Argument(
        help: ArgumentHelp(
            "Images to map: PNG, TIFF/BigTIFF, or whole slides (SVS, NDPI, MRXS, SCN…).",
            valueName: "image"))
    var images: [String]

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one PNG image") }
        do { try OutputOptions.checkDistinctStems(images) } catch { throw ValidationError("\(error)") }
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be between 1 and 1024") }
        guard (1...256).contains(workers) else { throw ValidationError("--workers must be between 1 and 256") }
        if let check, check < 0 || check > 1_000_000 { throw ValidationError("--check must be between 0 and 1000000") }
    }

    /// The .npy is written from the store, which holds the zarr's samples: with a smaller
    /// dtype it is the quantised map (as float32), which the user is told.
    private var quantisedNPYNote: String? {
        guard slide.dtype != .float32, let outputs = output.outputs,
            let kinds = try? OutputOptions.parseKinds(outputs), kinds.contains(.zarr), kinds.contains(.npy)
        else { return nil }
        return "--outputs \(outputs) with --dtype \(slide.dtype.rawValue): the .npy holds the \(slide.dtype.rawValue) "
            + "zarr's quantised values (as float32), not the exact map; drop zarr (tiff alone keeps the .npy exact) "
            + "or use --dtype float32 for the exact values"
    }

    /// `--check` samples the map as it is computed, so it runs in this process.
    private func needsInProcess() throws -> String? {
        if let check, check > 0 { return "--check" }
        return nil
    }

    func run() throws {
        let interruption = RunInterruption(out: output.out, images: images, removeOutputs: store == nil)
        do {
            try mapImages(interruption)
        } catch {
            // Stopping the workers makes the mapping fail: the handler ends the process.
            interruption.parkIfInterrupted()
            throw error
        }
        interruption.parkIfInterrupted()  // finished as the signal came: the handler exits 130
    }

    private func mapImages(_ interruption: RunInterruption) throws {
        let logger = Logger(label: "tessera.run")
        if let note = quantisedNPYNote { logger.warning("\(note)") }
        var inProcess = self.inProcess
        if !inProcess, let reason = try needsInProcess() {
            logger.info("mapping in this process: \(reason) runs there")
            inProcess = true
        }
        let settings = job.engineSettings(model)
        let device = try compute.resolve()
        // Embedded runs compute on the workers: this process only plans, from the model's plan.
        let (plan, loaded) = try settings.plan(prototxtPath: model.model, weightsPath: model.weights, logger: logger)
        try output.checkBeforeMapping(
            classes: plan.classes, kept: slide.keptClasses(netClasses: plan.classes),
            kinds: output.outputs.map(OutputOptions.parseKinds))
        if !inProcess && check == nil && !plan.geometry.isExact {
            logger.info("mapping in this process: the net is not exact, so the map is checked (--check 0 skips it)")
            inProcess = true
        }
        let prep = try preprocessing.resolve(channels: loaded.net.inputChannels, logger: logger)
        let slides = try images.contains { try SlideFormat.detect(path: $0) != .png }
        var budget = job.memoryBudgetBytes(slide: slides)
        if case .cuda(let index, _) = device {
            if inProcess {
                let gpu = try CUDAContext.get(device: index)
                logger.info("GPU \(gpu.summary)")
                budget = try device.tileMemoryBudget(cpuBudget: budget)
            } else {
                budget = max(budget, 4 << 30)  // a GPU worker holds large tiles; the workers report their own limits
            }
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        try FileManager.default.createDirectory(atPath: output.out, withIntermediateDirectories: true)
        if inProcess {
            let engine = try MapEngine(plan: plan, device: device)
            let blas = try BLAS.get()
            logger.info("BLAS kernel \(blas.coreName) (\(blas.coreChoice))")
            let mapper = LocalMapper(
                engine: engine, preprocessing: prep, threads: threads ?? cores, memoryBudget: budget)
            interruption.mainThreadWrites()
            try runInProcess(mapper, loaded: loaded, plan: plan, interruption: interruption, logger: logger)
        } else {
            // Embedded runs compute on the workers: this process only plans (no engine, no BLAS).
            try runEmbedded(
                plan, memoryBudget: budget, settings: settings, preprocessing: prep,
                workerThreads: threads ?? max(1, cores / workers), interruption: interruption, logger: logger)
        }
    }

    private func runInProcess(
        _ mapper: LocalMapper, loaded: LoadedModel, plan: ModelPlan, interruption: RunInterruption, logger: Logger
    ) throws {
        let progress = Progress(stream: stderr)
        for path in images {
            let opened = try ImageInput.open(path: path, level: slide.level, mpp: slide.mpp, maxPixels: maxPixels)
            let image = opened.source
            if image.channels == 1 && loaded.net.inputChannels == 3 {
                logger.info("gray image expanded to 3 channels", metadata: ["image": "\(path)"])
            }
            if let warning = try ImageInput.header(path: path, level: slide.level, mpp: slide.mpp, maxPixels: maxPixels)
                .sixteenBitWarning(path: path, rawScale: mapper.preprocessing.rawScale)
            {
                logger.warning("\(warning)")
            }
            let kept = try slide.keptClasses(netClasses: plan.classes)
            let options = try output.options(forImage: path, isPNG: opened.format == .png, keeping: kept != nil)
            let size = Size2(image.height, image.width)
            let start = Date()
            var t = try job.tile ?? mapper.defaultTile(mode: job.mode, image: size)
            var levels = 1
            if options.kinds.contains(where: \.isChunked) {
                (t, levels) = MapPyramid.fit(
                    tile: t, image: size, stride: plan.tasks.stride, fixedTile: job.tile != nil)
            } else if job.mode == .shift {
                t = MapPyramid.multiple(t, of: max(plan.tasks.stride.h, plan.tasks.stride.w))
            }
            var skip: ((PixelRect) -> Bool)?
            var share = 1.0
            if slide.tissue {
                let mask = try ImageInput.tissueMask(opened, path: path)
                skip = { !mask.containsTissue($0) }
                share = mask.tissueFraction
                logger.info(
                    "tissue",
                    metadata: [
                        "image": "\(path)",
                        "fraction": "\(String(format: "%.3f", mask.tissueFraction))",
                    ])
            }
            logger.info(
                "mapping",
                metadata: [
                    "image": "\(path)", "size": "\(image.width)×\(image.height)",
                    "level": "\(opened.levelDescription)", "mode": "\(job.mode.rawValue)",
                    "tile": "\(t)",
                ])
            let sink = try ChunkedMapOutput(
                options: options, classes: plan.classes, height: size.h, width: size.w,
                tile: t, dtype: slide.dtype, levels: levels, kept: kept, micronsPerPixel: opened.mpp)
            let checks = check ?? (plan.geometry.isExact ? 0 : 256)
            var checker =
                checks > 0
                ? MapChecker(
                    count: checks, image: size,
                    keep: skip.map { skip in
                        { y, x in !skip(PixelRect(y: y, x: x, height: 1, width: 1)) }
                    }) : nil
            let counts: TileCounts
            let written: [String]
            do {
                counts = try mapper.mapTiles(
                    image, mode: job.mode, tile: t, skip: skip,
                    progress: { done, total in
                        progress.update(
                            label: OutputOptions.stem(forInput: path), done: done, total: total,
                            pixels: Int(Double(image.width * image.height) * share), since: start)
                    },
                    emit: { tile in
                        if interruption.isInterrupted { throw ClusterError("interrupted") }
                        checker?.record(tile)
                        try sink.write(tile.rect, values: tile.values)
                    })
                progress.finish()
                written = try sink.finish(image: image, logger: logger)
                if let checker {
                    let result = try checker.finish(mapper, image: image)
                    let report = "\(options.directory)/\(options.stem).check.json"
                    try result.json().write(to: URL(fileURLWithPath: report), options: .atomic)
                    logger.info(
                        "check against the exact classifier: \(result.summary)",
                        metadata: ["image": "\(path)", "report": "\(report)"])
                }
            } catch {
                progress.finish()
                sink.abandon()
                throw error
            }
            logger.info(
                "done",
                metadata: [
                    "image": "\(path)",
                    "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(start)))",
                    "tiles": "\(counts.computed) computed, \(counts.skipped) skipped",
                    "read-s": "\(String(format: "%.2f", counts.readSeconds))",
                    "compute-s": "\(String(format: "%.2f", counts.computeSeconds))",
                    "files": "\(written.count)",
                ])
        }
    }

    private func runEmbedded(
        _ plan: ModelPlan, memoryBudget: Int, settings: EngineSettings, preprocessing prep: Preprocessing,
        workerThreads: Int, interruption: RunInterruption, logger: Logger
    ) throws {
        let binary = locateWorkerBinary(workerBinary)
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw ClusterError("no tessera-worker at \(binary): build it, pass --worker-binary, or use --in-process")
        }
        let context = try ZMQContext()
        var config = CoordinatorService.Configuration(
            workerEndpoint: "tcp://127.0.0.1:*", clientEndpoint: "inproc://tessera-run-\(UUID().uuidString)",
            storeDirectory: store)
        config.allowLocalPaths = true
        var coordinatorLogger = Logger(label: "tessera.coordinator")
        coordinatorLogger.logLevel = .warning
        let service = CoordinatorService(context: context, configuration: config, logger: coordinatorLogger)
        let (workerEndpoint, clientEndpoint) = try service.start()
        defer { service.stop() }
        interruption.add { service.stop() }
        // The workers read the images and write into --out: exactly those folders are shared.
        // An image given through a link is read at its target (the coordinator resolves links).
        let folders = images.flatMap { [$0, SharedRoots.resolve($0)] }.map {
            ($0 as NSString).deletingLastPathComponent
        }
        let roots = Set([output.out] + folders)
            .map { $0.isEmpty ? "." : $0 }
        let pool = try LocalWorkers(
            binary: binary, count: workers, endpoint: workerEndpoint, threads: workerThreads,
            arguments: ["--device", compute.device, "--precision", compute.precision]
                + roots.sorted().flatMap { ["--shared-root", $0] })
        defer { pool.stop() }
        interruption.add { pool.stop() }
        logger.info(
            "embedded coordinator",
            metadata: [
                "workers": "\(workers)", "threads": "\(workerThreads)",
                "endpoint": "\(workerEndpoint)",
            ])
        let client = try ClusterClient(endpoint: clientEndpoint, context: context)
        let progress = Progress(stream: stderr)
        for path in images {
            try mapShared(
                path, client: client, pool: pool, plan: plan, memoryBudget: memoryBudget, preprocessing: prep,
                progress: progress,
                logger: logger)
        }
    }

    /// One image as a shared-storage job of the embedded coordinator: the workers read
    /// the image and write the map's chunks themselves (the OME-Zarr output, or a raw
    /// temporary store); then the other outputs are written here from the store.
    private func mapShared(
        _ path: String, client: ClusterClient, pool: LocalWorkers, plan: ModelPlan, memoryBudget: Int,
        preprocessing prep: Preprocessing,
        progress: Progress, logger: Logger
    ) throws {
        let header = try ImageInput.header(path: path, level: slide.level, mpp: slide.mpp, maxPixels: maxPixels)
        if let warning = header.sixteenBitWarning(path: path, rawScale: prep.rawScale) { logger.warning("\(warning)") }
        let size = Size2(header.height, header.width)
        let kept = try slide.keptClasses(netClasses: plan.classes)
        let options = try output.options(forImage: path, isPNG: header.format == .png, keeping: kept != nil)
        let keepZarr = options.kinds.contains(.zarr)
        let stride = plan.tasks.stride
        var t = try job.tile ?? plan.defaultTile(mode: job.mode, image: size, memoryBudget: memoryBudget)
        if keepZarr {
            if let given = job.tile, let note = MapPyramid.levelNote(tile: given, image: size, stride: stride) {
                logger.warning("\(note)")
            }
            t = MapPyramid.fit(tile: t, image: size, stride: stride, fixedTile: job.tile != nil).tile
        } else if job.mode == .shift {
            t = MapPyramid.multiple(t, of: max(stride.h, stride.w))
        }
        let start = Date()
        logger.info(
            "mapping",
            metadata: [
                "image": "\(path)", "size": "\(header.width)×\(header.height)",
                "level": "\(header.level)", "mode": "\(job.mode.rawValue)", "tile": "\(t)",
            ])
        var jobOptions = job.jobOptions(model, output, outputDirectory: output.out)
        jobOptions.storage = .shared
        jobOptions.level = header.format == .png ? nil : header.level
        jobOptions.tissue = slide.tissue
        jobOptions.dtype = slide.dtype
        jobOptions.keptClasses = kept
        jobOptions.storeKind = keepZarr ? .zarr : .raw
        func spec() -> Wire.JobSpec {
            Wire.JobSpec(
                mode: TaskCodec.mode(job.mode), tileSize: UInt32(t), preprocessing: TaskCodec.preprocessing(prep),
                outputOptions: jobOptions.encoded,
                prototxt: model.model.map { .path($0) } ?? .inline(name: "deploy.prototxt", bytes: []),
                weights: model.weights.map { .path($0) } ?? .inline(name: "weights.caffemodel", bytes: []),
                image: .path(path))
        }
        func submit() throws -> UInt64 {
            guard case .submitted(let id) = try client.request(.submit(spec()), timeout: 600, attemptTimeout: 60) else {
                throw ClusterError("unexpected reply to submit")
            }
            return id
        }
        if store != nil {
            // With --store, the same command again is the same job: an interrupted one is
            // resumed from the store (its coordinator restored it) instead of mapped twice.
            jobOptions.token = nil  // (a fresh random one otherwise, for retried submissions)
            // Files by path, size and modification time: a changed model or image is a new job.
            func file(_ p: String?) -> String {
                guard let p else { return "" }
                let a = try? FileManager.default.attributesOfItem(atPath: p)
                let size = (a?[.size] as? NSNumber)?.int64Value ?? -1
                let time = (a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                return "\(SharedRoots.resolve(p)):\(size):\(time)"
            }
            let identity =
                "\(jobOptions.encoded)|\(job.mode.rawValue)|\(t)|\(prep)|\(file(path))|"
                + "\(file(model.model))|\(file(model.weights))"
            jobOptions.token =
                "run-"
                + SHA256.hash(Array(identity.utf8)).prefix(16).map { String(format: "%02x", $0) }
                .joined()
        }
        var id = try submit()
        if jobOptions.token != nil, case let s = try client.status(id), s.state == .done,
            !(s.outputFiles.first.map { FileManager.default.fileExists(atPath: "\(output.out)/\($0)") } ?? false)
        {
            // Mapped by an earlier run whose map is gone (moved, or a temporary store): map again.
            jobOptions.token = nil
            id = try submit()
        }
        let status = try client.wait(
            job: id, label: OutputOptions.stem(forInput: path), pixels: header.width * header.height, progress: progress
        ) {
            try pool.checkAlive()
        }
        guard let name = status.outputFiles.first else { throw ClusterError("job \(id) wrote no map store") }
        let storePath = "\(output.out)/\(name)"
        defer { if !keepZarr { try? FileManager.default.removeItem(atPath: storePath) } }
        let store = try MapStore.open(at: storePath)
        let overlay = options.kinds.contains(.overlay)
        let image =
            overlay ? try ImageInput.open(path: path, level: jobOptions.level, maxPixels: maxPixels).source : nil
        let written = try ChunkedMapOutput.export(store, image: image, options: options, logger: logger)
        var metadata: Logger.Metadata = [
            "image": "\(path)",
            "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(start)))",
            "tiles": "\(status.tasksDone)",
            "files": "\(written.count + (keepZarr ? 1 : 0))",
        ]
        // The coordinator's note: how much tissue --tissue found, or what a resumed job restored.
        if !status.message.isEmpty { metadata["note"] = "\(status.message)" }
        logger.info("done", metadata: metadata)
    }
}

/// The worker processes of an embedded `run`: started with the coordinator's
/// endpoint, stopped with SIGTERM (SIGKILL after 5 s); they also exit on their own
/// when this process dies (`--parent-pid`).
final class LocalWorkers {
    private var processes: [Process] = []

    init(binary: String, count: Int, endpoint: String, threads: Int, arguments: [String] = []) throws {
        for i in 0..<count {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments =
                [
                    "--coordinator", endpoint, "--threads", "\(threads)", "--name", "local-\(i + 1)",
                    "--log-level", "warning", "--parent-pid", "\(getpid())",
                ] + arguments
            // Only these flags configure them: TESSERA_WORKER_* meant for other workers
            // (CURVE keys, another coordinator) must not reach the embedded ones.
            p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("TESSERA_WORKER_") }
            do {
                try p.run()
            } catch {
                stop()
                throw ClusterError("cannot start \(binary): \(error)")
            }
            processes.append(p)
        }
    }

    /// Throws when every worker has exited.
    func checkAlive() throws {
        if !processes.isEmpty, processes.allSatisfy({ !$0.isRunning }) {
            let codes = processes.map { "\($0.terminationStatus)" }.joined(separator: ", ")
            throw ClusterError("all local workers exited (status \(codes))")
        }
    }

    func stop() {
        for p in processes where p.isRunning { p.terminate() }
        let deadline = Date().addingTimeInterval(5)
        while processes.contains(where: \.isRunning) && Date() < deadline { usleep(20_000) }
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in processes { p.waitUntilExit() }
        processes.removeAll()
    }
}

extension MapMode: ExpressibleByArgument {}
extension MapDType: ExpressibleByArgument {}
