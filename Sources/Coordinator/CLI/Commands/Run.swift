import ArgumentParser
import Foundation
import Logging
import CoordinatorService
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
        abstract: "Compute the probability maps of PNG images with a Caffe patch classifier.",
        discussion: """
            Modes: dense (exact, one pass of the dilated net: the default), shift (exact, S² strided \
            passes interlaced), fast (one strided pass, interpolated between grid points every S \
            pixels), naive (the classifier on every patch; a reference for small images). \
            dense, shift and naive give the same map to ~1e-5.

            By default an embedded coordinator on loopback hands the tiles to --workers local \
            tessera-worker processes (found next to this executable, or --worker-binary / \
            $TESSERA_WORKER_BINARY); --in-process computes in this process instead. Both give \
            byte-identical maps.

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
    @Option(help: "Refuse images with more pixels than this, before decoding them.")
    var maxPixels = PNGReader.defaultMaxPixels
    @Argument(help: ArgumentHelp("PNG images to map.", valueName: "image")) var images: [String]

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one PNG image") }
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be between 1 and 1024") }
        guard (1...256).contains(workers) else { throw ValidationError("--workers must be between 1 and 256") }
    }

    func run() throws {
        let logger = Logger(label: "tessera.run")
        let settings = job.engineSettings(model)
        let device = try compute.resolve()
        // Embedded runs compute on the workers: this process's engine only plans tiles.
        let (plan, loaded) = try settings.plan(prototxtPath: model.model, weightsPath: model.weights, logger: logger)
        let engine = try MapEngine(plan: plan, device: inProcess ? device : .cpu)
        let prep = try preprocessing.resolve(channels: loaded.net.inputChannels, logger: logger)
        let blas = try BLAS.get()
        logger.info("BLAS kernel \(blas.coreName) (\(blas.coreChoice))")
        var budget = job.memoryBudget << 20
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
        let mapper = LocalMapper(engine: engine, preprocessing: prep, threads: threads ?? cores, memoryBudget: budget)
        try FileManager.default.createDirectory(atPath: output.out, withIntermediateDirectories: true)
        if inProcess {
            try runInProcess(mapper, loaded: loaded, logger: logger)
        } else {
            try runEmbedded(mapper, settings: settings, preprocessing: prep,
                            workerThreads: threads ?? max(1, cores / workers), logger: logger)
        }
    }

    private func runInProcess(_ mapper: LocalMapper, loaded: LoadedModel, logger: Logger) throws {
        let progress = Progress(stream: stderr)
        for path in images {
            let image = try PNGReader.read(path: path, maxPixels: maxPixels)
            if image.channels == 1 && loaded.net.inputChannels == 3 {
                logger.info("gray image expanded to 3 channels", metadata: ["image": "\(path)"])
            }
            let start = Date()
            let t = try job.tile ?? mapper.defaultTile(mode: job.mode, image: Size2(image.height, image.width))
            logger.info("mapping", metadata: ["image": "\(path)", "size": "\(image.width)×\(image.height)",
                                              "mode": "\(job.mode.rawValue)", "tile": "\(t)"])
            let map = try mapper.map(image, mode: job.mode, tile: t) { done, total in
                progress.update(label: OutputOptions.stem(forInput: path), done: done, total: total,
                                pixels: image.width * image.height, since: start)
            }
            progress.finish()
            let written = try writeOutputs(map: map, image: image, options: output.options(forImage: path), logger: logger)
            logger.info("done", metadata: ["image": "\(path)",
                                           "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(start)))",
                                           "files": "\(written.count)"])
        }
    }

    private func runEmbedded(_ mapper: LocalMapper, settings: EngineSettings, preprocessing prep: Preprocessing,
                             workerThreads: Int, logger: Logger) throws {
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
        let pool = try LocalWorkers(binary: binary, count: workers, endpoint: workerEndpoint, threads: workerThreads,
                                    arguments: ["--device", compute.device, "--precision", compute.precision])
        defer { pool.stop() }
        logger.info("embedded coordinator", metadata: ["workers": "\(workers)", "threads": "\(workerThreads)",
                                                       "endpoint": "\(workerEndpoint)"])
        let client = try ClusterClient(endpoint: clientEndpoint, context: context)
        let progress = Progress(stream: stderr)
        for path in images {
            let header = try PNGReader.header(path: path, maxPixels: maxPixels)
            let start = Date()
            let t = try job.tile ?? mapper.defaultTile(mode: job.mode, image: Size2(header.height, header.width))
            logger.info("mapping", metadata: ["image": "\(path)", "size": "\(header.width)×\(header.height)",
                                              "mode": "\(job.mode.rawValue)", "tile": "\(t)"])
            let options = job.jobOptions(model, output, outputDirectory: output.out)
            let spec = Wire.JobSpec(
                mode: TaskCodec.mode(job.mode), tileSize: UInt32(t), preprocessing: TaskCodec.preprocessing(prep),
                outputOptions: options.encoded,
                prototxt: model.model.map { .path($0) } ?? .inline(name: "deploy.prototxt", bytes: []),
                weights: model.weights.map { .path($0) } ?? .inline(name: "weights.caffemodel", bytes: []),
                image: .path(path))
            guard case .submitted(let id) = try client.request(.submit(spec), timeout: 600, isIdempotent: false) else {
                throw ClusterError("unexpected reply to submit")
            }
            let status = try client.wait(job: id, label: OutputOptions.stem(forInput: path),
                                         pixels: header.width * header.height, progress: progress) {
                try pool.checkAlive()
            }
            logger.info("done", metadata: ["image": "\(path)",
                                           "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(start)))",
                                           "files": "\(status.outputFiles.count)"])
        }
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
            p.arguments = ["--coordinator", endpoint, "--threads", "\(threads)", "--name", "local-\(i + 1)",
                           "--log-level", "warning", "--parent-pid", "\(getpid())"] + arguments
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
