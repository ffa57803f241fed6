import ArgumentParser
import CLISupport
import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraWire

/// How a client command reaches the coordinator: its client endpoint and CURVE keys.
struct CoordinatorOption: ParsableArguments {
    @Option(help: ArgumentHelp("The coordinator's client endpoint.", valueName: "endpoint"))
    var coordinator = "tcp://127.0.0.1:5556"
    @Option(help: "Seconds to keep retrying while the coordinator does not answer (a restart).")
    var reconnectTimeout = 60.0
    @OptionGroup var curve: CurveClientOptions

    /// A client connected to `--coordinator` (keys read and checked first).
    func connect(_ context: ZMQContext) throws -> ClusterClient {
        let security = try curve.security()
        if security == nil && !isLoopback(coordinator) {
            FileHandle.standardError.write(
                Data(
                    "warning: \(coordinator) without --curve: the connection is neither authenticated nor encrypted\n"
                        .utf8))
        }
        return try ClusterClient(
            endpoint: coordinator, curve: security, context: context,
            reconnectTimeout: reconnectTimeout)
    }
}

/// `tessera-coordinator submit`: uploads model files and images as jobs.
struct Submit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit images to a coordinator (model files and images are uploaded).",
        discussion: "Each image becomes one job; the job ids are printed. With --wait, progress is shown and "
            + "the outputs are downloaded into --out. Uploads travel in one message (up to 1 GiB)."
    )

    @OptionGroup var endpoint: CoordinatorOption
    @OptionGroup var model: ModelOptions
    @OptionGroup var preprocessing: PreprocessingOptions
    @OptionGroup var output: OutputFlags
    @OptionGroup var job: JobFlags
    @Flag(help: "Wait for the jobs, show progress, and download the outputs into --out.") var wait = false
    @Argument(help: ArgumentHelp("PNG images to map.", valueName: "image")) var images: [String]

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one PNG image") }
        for path in images where (try? SlideFormat.detect(path: path)).map({ $0 != .png }) ?? false {
            throw ValidationError(
                "\(path) is not a PNG: slides and TIFFs are mapped by `run` (in its own process) "
                    + "so far; the cluster path takes PNG images")
        }
        if let chunked = try? OutputOptions.parseKinds(output.outputs ?? "all").first(where: \.isChunked) {
            throw ValidationError(
                "--outputs \(chunked.rawValue) is written by `run --in-process` only so far; "
                    + "a cluster job writes prob, labels, overlay and npy")
        }
    }

    func run() throws {
        let logger = Logger(label: "tessera.submit")
        let settings = job.engineSettings(model)
        let (plan, loaded) = try settings.plan(prototxtPath: model.model, weightsPath: model.weights, logger: nil)
        try output.checkBeforeMapping(classes: plan.classes)
        let prep = try preprocessing.resolve(channels: loaded.net.inputChannels, logger: logger)
        let bundle = try ModelBundle(prototxtPath: model.model, weightsPath: model.weights)
        let context = try ZMQContext()
        let client = try endpoint.connect(context)
        var submitted: [(UInt64, String, Int)] = []
        for path in images {
            let header = try PNGReader.header(path: path)
            let tile =
                try job.tile
                ?? plan.defaultTile(
                    mode: job.mode, image: Size2(header.height, header.width),
                    memoryBudget: job.memoryBudgetBytes())
            guard let bytes = FileManager.default.contents(atPath: path) else {
                throw ClusterError("cannot read \(path)")
            }
            let name = (path as NSString).lastPathComponent
            let spec = Wire.JobSpec(
                mode: TaskCodec.mode(job.mode), tileSize: UInt32(tile), preprocessing: TaskCodec.preprocessing(prep),
                outputOptions: job.jobOptions(model, output, outputDirectory: nil).encoded,
                prototxt: .inline(name: "deploy.prototxt", bytes: bundle.prototxt),
                weights: .inline(name: "weights.caffemodel", bytes: bundle.weights),
                image: .inline(name: name, bytes: [UInt8](bytes)))
            guard case .submitted(let id) = try client.request(.submit(spec), timeout: 300, isIdempotent: false) else {
                throw ClusterError("unexpected reply to submit")
            }
            print("job \(id) \(path)")
            submitted.append((id, path, header.width * header.height))
        }
        guard wait else { return }
        let progress = Progress(stream: stderr)
        for (id, path, pixels) in submitted {
            let status = try client.wait(
                job: id, label: OutputOptions.stem(forInput: path), pixels: pixels,
                progress: progress)
            let files = try client.fetchOutputs(job: id, files: status.outputFiles, into: output.out)
            logger.info("job done", metadata: ["job": "\(id)", "files": "\(files.count)"])
        }
    }
}

/// `tessera-coordinator status [JOB]`.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a job's state, or the cluster's (workers, tasks).")
    @OptionGroup var endpoint: CoordinatorOption
    @Argument(help: "Job id (default: the whole cluster).") var job: UInt64?

    func run() throws {
        let client = try endpoint.connect(try ZMQContext())
        let s = try client.status(job)
        print(Self.describe(s))
    }

    static func describe(_ s: Wire.JobStatus) -> String {
        var lines = [
            (s.jobID.map { "job \($0): " } ?? "cluster: ") + "\(s.state)",
            "tasks: \(s.tasksQueued) queued, \(s.tasksRunning) running, \(s.tasksDone) done, \(s.tasksFailed) failed",
            "workers: \(s.workers)",
            String(format: "throughput: %.2f tasks/s, %.3f Mpx/s", s.tasksPerSecond, s.pixelsPerSecond / 1e6),
        ]
        if !s.message.isEmpty { lines.append(s.message) }
        if !s.outputFiles.isEmpty { lines.append("outputs: " + s.outputFiles.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }
}

/// `tessera-coordinator cancel JOB`.
struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job.")
    @OptionGroup var endpoint: CoordinatorOption
    @Argument(help: "Job id.") var job: UInt64

    func run() throws {
        let client = try endpoint.connect(try ZMQContext())
        guard case .status(let s) = try client.request(.cancel(jobID: job)) else {
            throw ClusterError("unexpected reply to cancel")
        }
        print(Status.describe(s))
    }
}

/// `tessera-coordinator fetch JOB --out DIR`.
struct Fetch: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Download a finished job's outputs.")
    @OptionGroup var endpoint: CoordinatorOption
    @Argument(help: "Job id.") var job: UInt64
    @Option(help: "Folder for the outputs.") var out: String

    func run() throws {
        let client = try endpoint.connect(try ZMQContext())
        let s = try client.status(job)
        guard s.state == .done else {
            throw ClusterError("job \(job) is \(s.state)\(s.message.isEmpty ? "" : ": \(s.message)")")
        }
        for path in try client.fetchOutputs(job: job, files: s.outputFiles, into: out) { print(path) }
    }
}
