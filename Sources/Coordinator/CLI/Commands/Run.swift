import ArgumentParser
import CLISupport
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
        abstract: "Compute the probability maps of images and whole slides with a patch classifier (Caffe or ONNX).",
        discussion: """
            Modes: dense (exact, one pass of the dilated net: the default), shift (exact, S² strided \
            passes interlaced), fast (one strided pass, interpolated between grid points every S \
            pixels), naive (the classifier on every patch; a reference for small images). \
            dense, shift and naive give the same map to ~1e-5.

            By default an embedded coordinator (over a Unix socket only this user can reach) hands the map tiles to --workers local \
            tessera-worker processes (found next to this executable, or --worker-binary / \
            $TESSERA_WORKER_BINARY), exactly as a cluster's shared-storage job: the workers read the \
            image and write the map's chunks themselves. --in-process computes in this process \
            instead. Both give byte-identical maps.

            Whole slides and large TIFFs (SVS, NDPI, MRXS, SCN, generic tiled TIFF/BigTIFF) are read tile \
            by tile at the pyramid level chosen by --level or --mpp and written as an OME-Zarr pyramid \
            (--outputs zarr, the default for them) and/or a pyramidal TIFF (tiff): memory stays flat at \
            any image size. --tissue skips tiles without tissue. A TIFF of several images (an OME-TIFF's \
            scenes, separate pages) is mapped as its image 1, or the image --image N names.

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

    @Option(parsing: .unconditional, help: "Engine threads (default: all cores, shared between the workers).")
    var threads: Int?
    @Option(parsing: .unconditional, help: "Local worker processes (default: 1).") var workers: Int?
    /// `--workers`, or its default.
    var workerCount: Int { workers ?? 1 }
    @Flag(help: "Compute in this process, without coordinator or workers.") var inProcess = false
    @Flag(
        help: ArgumentHelp(
            "With several images, map the others when one fails (a damaged or unreadable file), then exit 1 "
                + "naming the failed ones.",
            discussion: "Without it, every image's header is read before any is mapped, so a missing or unreadable "
                + "file ends the run before it begins, and a failure while mapping ends it there (the images after it "
                + "on the command line are not mapped)."))
    var keepGoing = false
    @Option(help: ArgumentHelp("The tessera-worker executable.", valueName: "path")) var workerBinary: String?
    @Option(
        help: ArgumentHelp(
            "Job store folder for the embedded coordinator (default: temporary).",
            discussion: "With a store, the same command again resumes an interrupted run (Ctrl-C, a crash, the "
                + "machine going down) from the tiles already computed, instead of starting over.",
            valueName: "folder"))
    var store: String?
    @Option(
        help: ArgumentHelp(
            "Refuse PNG images with more pixels than this, before decoding them (slides and tiled TIFFs are "
                + "read region by region, never whole, so any size maps; a striped TIFF whose one strip holds "
                + "over 256 MiB is refused, with the tiffcp command that tiles it)."))
    var maxPixels = PNGReader.defaultMaxPixels
    @OptionGroup var slide: SlideFlags
    @Option(
        parsing: .unconditional,  // so that `--check -5` is a bad value, not a missing one
        help: ArgumentHelp(
            "After mapping, classify N random pixels with the exact patch classifier and report "
                + "the map's deviation (log and <stem>.check.json). Default: 256 for nets that are "
                + "not exact (--allow-padding) outside naive, else 0. A checked run maps in this process (no "
                + "local workers).", valueName: "N"))
    var check: Int?
    @Argument(
        help: ArgumentHelp(
            "Images to map: PNG, TIFF/BigTIFF, or whole slides (SVS, NDPI, MRXS, SCN…).",
            valueName: "image"))
    var images: [String]

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image") }
        do {
            try OutputOptions.checkDistinctStems(images)
            try OutputOptions.checkInputsAreNotOutputs(images, out: output.out, image: slide.image ?? 1)
            try OutputOptions.checkStemLengths(images, image: slide.image ?? 1)
        } catch { throw ValidationError("\(error)") }
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be between 1 and 1024") }
        guard (1...256).contains(workerCount) else { throw ValidationError("--workers must be between 1 and 256") }
        if let check, check < 0 || check > 1_000_000 { throw ValidationError("--check must be between 0 and 1000000") }
        // --store resumes runs through the embedded coordinator; these map in this process, where it was ignored
        // without a word (docs/CLI audit 36 F16).
        if store != nil, inProcess {
            throw ValidationError(
                "--store keeps the tiles of a run through the embedded coordinator, to resume it; --in-process maps "
                    + "without one: drop one of them")
        }
        if store != nil, let check, check > 0 {
            throw ValidationError(
                "--check \(check) maps in this process, without the --store that resumes a run: drop one of them "
                    + "(--check 0 keeps the store)")
        }
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

    /// Before an image is mapped: what its outputs should be told of (`--keep-classes` narrowing a PNG's
    /// defaults, a `--dtype` with nothing to apply to), and a folder standing where an output file goes.
    func checkOutputs(_ options: OutputOptions, kept: [Int]?, isPNG: Bool, classes: Int, logger: Logger) throws {
        if let note = output.keptDefaultNote(kept: kept, isPNG: isPNG) { logger.notice("\(note)") }
        if let note = unusedDtypeNote(options) { logger.notice("\(note)") }
        if let blocked = options.folderInTheWay(classCount: kept?.count ?? classes) {
            throw ClusterError(
                "\(blocked) is a folder: it stands where an output file goes (move it, or choose another --out)")
        }
    }

    /// A note when `--dtype` has nothing to apply to (no zarr or tiff output): it was ignored without a word
    /// (user review).
    func unusedDtypeNote(_ options: OutputOptions) -> String? {
        guard slide.dtype != .float32, !options.kinds.contains(where: \.isChunked) else { return nil }
        return "--dtype \(slide.dtype.rawValue) applies to the zarr and tiff outputs, and this run writes neither: "
            + "its outputs are written from the float32 map"
    }

    /// `--check` samples the map as it is computed, so it runs in this process.
    private func needsInProcess() throws -> String? {
        if let check, check > 0 { return "--check" }
        return nil
    }

    func run() throws {
        // Another run (or coordinator) mapping one of these images into --out now: both computed the map
        // and the last replaced the first without a word (user audit F18).
        for path in images {
            let stem = OutputOptions.stem(forInput: path, image: slide.image ?? 1)
            if let writer = PartialOutputs.liveWriter(stem: stem, in: output.out) {
                throw ClusterError(
                    "\(writer) is writing the outputs of \(path) in \(output.out) now: wait for it to end, or give "
                        + "this run another --out")
            }
        }
        // What a run killed outright (SIGKILL, a power loss) left of these images' outputs: a half-written
        // `.NAME.map.tiff.tmp-PID-…` stayed for good (whole-slide audit 35 F6).
        let stems = images.map { OutputOptions.stem(forInput: $0, image: slide.image ?? 1) }
        let stale = RunInterruption.removeStaleTemporaries(
            in: output.out, stems: stems, finishedStores: store == nil)
        if !stale.isEmpty {
            Logger(label: "tessera.run").notice(
                "removed what a run killed earlier left unfinished: \(stale.joined(separator: ", "))")
        }
        let interruption = RunInterruption(
            out: output.out, images: images, image: slide.image ?? 1, removeOutputs: store == nil)
        let outExisted = FileManager.default.fileExists(atPath: output.out)
        do {
            try mapImages(interruption)
        } catch {
            // Stopping the workers makes the mapping fail: the handler ends the process.
            interruption.parkIfInterrupted()
            // A run refused or failed before writing anything leaves no empty --out it made (user review).
            if !outExisted, (try? FileManager.default.contentsOfDirectory(atPath: output.out))?.isEmpty == true {
                try? FileManager.default.removeItem(atPath: output.out)
            }
            throw error
        }
        interruption.parkIfInterrupted()  // finished as the signal came: the handler exits 130
    }

    private func mapImages(_ interruption: RunInterruption) throws {
        let logger = Logger(label: "tessera.run")
        if let note = quantisedNPYNote { logger.warning("\(note)") }
        var inProcess = self.inProcess
        // What asks for this process says so of the local workers' options (audit 44 D6: they were dropped without
        // a word).
        if workers != nil || workerBinary != nil, inProcess || (check ?? 0) > 0 {
            let why = inProcess ? "--in-process" : "--check \(check ?? 0)"
            logger.warning("--workers and --worker-binary are not used: \(why) maps in this process, without workers")
        }
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
        if !inProcess && check == nil && !plan.geometry.isExact && job.mode != .naive {
            if store != nil {
                // What the user asked for wins over a default: a resumable run.
                logger.notice(
                    """
                    the net is not exact, but the map is not checked: --store maps through the embedded \
                    coordinator, and the check runs in this process (run without --store to check it)
                    """)
            } else {
                logger.info("mapping in this process: the net is not exact, so the map is checked (--check 0 skips it)")
                inProcess = true
            }
        }
        let prep = try preprocessing.resolve(loaded, logger: logger)
        // With --keep-going an unreadable image fails in its turn, not here.
        let slides = try images.contains {
            try (keepGoing ? ((try? SlideFormat.detect(path: $0)) ?? .png) : SlideFormat.detect(path: $0)) != .png
        }
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
        try checkSpace(plan: plan, memoryBudget: budget, logger: logger)
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
                workerThreads: threads ?? max(1, cores / workerCount), interruption: interruption, logger: logger)
        }
    }
}

extension Run {
    /// What a failure or an interruption says once the zarr `storePath` is complete and in place, while the other
    /// outputs of `options` were still to be written from it: that it is kept, and the `export` that writes the rest.
    func keptMapNote(_ storePath: String, options: OutputOptions, image path: String) -> String {
        let rest = options.kinds.subtracting([.zarr]).map(\.rawValue).sorted().joined(separator: ",")
        return "The map itself is complete and kept: \(storePath); `tessera-coordinator export "
            + "\(shellQuoted(storePath)) --outputs \(rest) --out \(shellQuoted(output.out))"
            + (options.kinds.contains(.overlay) ? " --image \(shellQuoted(path))" : "") + "` writes the rest from it"
    }

    /// Maps each image with `body`; with `--keep-going`, an image that fails is logged and the next one is
    /// mapped, and the run then fails naming every image that did (user audit: one damaged slide left the
    /// rest of a batch unmapped). An interruption always ends the run.
    func forEachImage(
        interruption: RunInterruption, logger: Logger, _ body: (String) throws -> Void
    ) throws {
        var failed: [(path: String, error: any Error)] = []
        for path in images {
            do {
                do {
                    try body(path)
                } catch let error as ModelError {
                    // The net's and engine's errors name a layer or task, not the image (whole-slide audit 35 F9:
                    // "layer 'conv1': its output would be …" for a 2³¹-pixel-wide file; verification audit 34 L1: which
                    // of several images overflowed was left to guess).
                    throw ClusterError("\(path): \(error)")
                } catch let error as EngineError {
                    throw ClusterError("\(path): \(error)")
                }
            } catch {
                guard keepGoing, images.count > 1, !interruption.isInterrupted else { throw error }
                interruption.parkIfInterrupted()
                logger.error(
                    "image failed: going on with the next (--keep-going)",
                    metadata: [
                        "image": "\(path)", "error": "\(error)",
                    ])
                failed.append((path, error))
            }
        }
        guard !failed.isEmpty else { return }
        throw ClusterError(
            "\(failed.count) of \(images.count) images failed: "
                + failed.map { "\($0.path) (\($0.error))" }.joined(separator: "; "))
    }
}

extension MapMode: ExpressibleByArgument {}
extension MapDType: ExpressibleByArgument {}
