import ArgumentParser
import CLISupport
import Foundation
import Logging
import TesseraCUDA
import TesseraCore
import TesseraEngine
import TesseraMetrics

@main
struct TesseraWorker: ParsableCommand {
    /// Memory settings first, before any thread allocates (see `MemoryTuning`).
    static func main() {
        MemoryTuning.keepLargeBuffers()
        CUDABackend.install()
        main(environment: .worker)
    }

    static let configuration = CommandConfiguration(
        commandName: "tessera-worker",
        abstract: "A stateless Tessera worker: takes tile tasks from a coordinator and runs the engine.",
        discussion: """
            The worker registers with the coordinator's worker endpoint, heartbeats, fetches the models \
            it lacks (checked against their SHA-256 digest) and returns each task's map tile. It keeps \
            no job state: stop it at any time (SIGTERM returns its unfinished tasks).

            Every option can also be set by an environment variable, TESSERA_WORKER_<OPTION> (listed \
            with it below); the command line wins.

            Example: tessera-worker --coordinator tcp://10.0.0.5:5555 --threads 8 \\
              --curve --curve-secret-key worker.key --curve-server-key coordinator.pub
            """
    )

    @Option(help: ArgumentHelp("The coordinator's worker endpoint.", valueName: "endpoint"))
    var coordinator: String?
    @Option(help: "Engine threads per task (default: all cores).")
    var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Name shown in the coordinator's log and status (default: host-pid).")
    var name: String?
    @Option(help: .hidden) var heartbeatMs = 1000
    @Option(help: .hidden) var debugTaskDelayMs = 0
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"
    @Option(help: .hidden) var parentPid: Int32?
    @Option(
        help: ArgumentHelp(
            "Where tiles are computed: cpu, cuda or cuda:N (GPU N). CUDA needs the NVIDIA driver, "
                + "NVRTC and cuDNN or cuBLAS at run time (found via TESSERA_CUDA_LIBRARY_PATH, "
                + "/usr/local/cuda/lib64 or the loader path).", valueName: "device"))
    var device = "cpu"
    @Option(
        help: ArgumentHelp(
            "GPU arithmetic: fp32 (IEEE single precision, the default) or tf32 (tensor cores, ~2× faster; "
                + "maps within 1e-2 of fp32: 1.6e-3 measured on the demo).", valueName: "precision"))
    var precision = "fp32"
    @Option(
        help: ArgumentHelp(
            "Storage this worker shares with the coordinator (repeatable): shared-storage jobs read "
                + "their images and write their map chunks under these folders only. Without it, the "
                + "worker takes upload jobs only.", valueName: "folder"))
    var sharedRoot: [String] = []
    @Option(
        help: ArgumentHelp(
            "Serve Prometheus metrics at /metrics and probes at /healthz, /readyz (ready: registered with a "
                + "coordinator) on HOST:PORT (:PORT or PORT: loopback). Off by default.", valueName: "address"))
    var metricsAddress: String?
    @Option(
        help: ArgumentHelp(
            "The most memory one tile's activations may take, in MiB (default: the machine's memory, or the "
                + "container's limit). A task that needs more fails with the sizes, and its job fails after "
                + "3 such failures, instead of the worker being killed for memory on every attempt.",
            valueName: "MiB"))
    var maxMemoryMib: Int?
    @Flag(help: "Print the system report (CPU, BLAS) and exit.") var info = false
    @OptionGroup var curve: CurveClientOptions

    func validate() throws {
        guard threads >= 1, threads <= 1024 else { throw ValidationError("--threads must be between 1 and 1024") }
        guard heartbeatMs >= 10 else { throw ValidationError("--heartbeat-ms must be at least 10") }
        guard (0...WorkerAgent.maxTaskDelayMilliseconds).contains(debugTaskDelayMs) else {
            throw ValidationError(
                "--debug-task-delay-ms must be between 0 and \(WorkerAgent.maxTaskDelayMilliseconds) (a day)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard CUDAPrecision(rawValue: precision) != nil else {
            throw ValidationError("--precision must be fp32 or tf32")
        }
        _ = try ComputeDevice(parsing: device)
        if let maxMemoryMib, !(1...(1 << 24)).contains(maxMemoryMib) {
            throw ValidationError("--max-memory-mib must be between 1 and 16777216 (16 TiB)")
        }
        do {
            _ = try metricsAddress.map(MetricsAddress.init(parsing:))
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() throws {
        if info {
            for line in try SystemInfo.lines() { print(line) }
            return
        }
        guard let endpoint = coordinator else {
            throw ValidationError("give --coordinator tcp://HOST:5555 (or TESSERA_WORKER_COORDINATOR)")
        }
        var logger = Logger(label: "tessera.worker")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let security = try curve.security()
        if security == nil && !isLoopback(endpoint) {
            logger.warning(
                """
                CONNECTING TO \(endpoint) WITHOUT AUTHENTICATION OR ENCRYPTION: anyone on the path can read \
                the tiles or pose as the coordinator. Use --curve on untrusted networks.
                """)
        }
        _ = try BLAS.get()
        if let maxMemoryMib { ActivationArena.limitBytes = min(SystemMemory.limit, maxMemoryMib << 20) }
        let computeDevice = try ComputeDevice(parsing: device, precision: CUDAPrecision(rawValue: precision) ?? .fp32)
        if case .cuda(let index, _) = computeDevice {
            // Fail now, with the reason, rather than on the first task.
            let gpu = try CUDAContext.get(device: index)
            logger.info("GPU ready", metadata: ["device": "\(gpu.summary)"])
        }
        var config = WorkerAgent.Configuration(
            coordinator: endpoint, name: name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())", threads: threads)
        config.heartbeat.intervalMilliseconds = heartbeatMs
        config.taskDelayMilliseconds = debugTaskDelayMs
        config.curve = security
        config.device = computeDevice
        config.sharedRoots = sharedRoot
        // Before the agent: its metrics bind to the backend when it is made.
        let exporter = metricsAddress != nil ? MetricsExporter.shared : nil
        let agent = try WorkerAgent(configuration: config, logger: logger)
        let probes = try metricsAddress.flatMap { text -> ProbeServer? in
            guard let exporter else { return nil }
            let server = try ProbeServer(
                address: try MetricsAddress(parsing: text),
                handler: ProbeRoutes.handler(exporter: exporter, vitals: agent.vitals))
            server.start()
            warnIfExposed(server.address, logger)
            return server
        }
        let sources = onStopSignals { agent.stop() }
        // An embedded run's workers leave when their parent dies, however it died.
        var orphanTimer: DispatchSourceTimer?
        if let parentPid {
            let timer = DispatchSource.makeTimerSource(queue: .global())
            timer.schedule(deadline: .now() + 0.5, repeating: 0.5)
            timer.setEventHandler { if getppid() != parentPid { agent.stop() } }
            timer.resume()
            orphanTimer = timer
        }
        logger.info(
            "worker starting",
            metadata: [
                "coordinator": "\(endpoint)", "threads": "\(threads)",
                "name": "\(config.name)", "curve": "\(security != nil)",
                "device": "\(computeDevice)",
            ])
        defer { probes?.stop() }
        try agent.run()
        withExtendedLifetime((sources, orphanTimer)) {}
    }
}
