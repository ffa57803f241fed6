import ArgumentParser
import CLISupport
import Foundation
import Logging
import TesseraCUDA
import TesseraCore
import TesseraEngine
import TesseraMetrics
import TesseraWire

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

            Every option but --info (an action) can also be set by an environment variable, \
            TESSERA_WORKER_<OPTION> (listed with it below); the command line wins.

            Example: tessera-worker --coordinator tcp://10.0.0.5:5555 --threads 8 \\
              --curve --curve-secret-key worker.key --curve-server-key coordinator.pub
            """,
        version: "tessera-worker \(TesseraVersion.description)"
    )

    @Option(help: ArgumentHelp("The coordinator's worker endpoint.", valueName: "endpoint"))
    var coordinator: String?
    @Option(
        parsing: .unconditional,
        help: "Engine threads per task and pipeline (default: the cores divided among the pipelines).")
    var threads: Int?
    @Option(help: "Name shown in the coordinator's log and status (default: host-pid).")
    var name: String?
    @Option(help: .hidden) var heartbeatMs = 1000
    @Option(help: .hidden) var debugTaskDelayMs = 0
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel = "info"
    @Option(help: .hidden) var parentPid: Int32?
    @Option(
        help: ArgumentHelp(
            "Where tiles are computed: cpu, cuda or cuda:N (GPU N), cuda:all (every GPU), or a comma-separated "
                + "list (cuda:0,cuda:1; a device named twice gets two pipelines). Each entry is one compute "
                + "pipeline, which the coordinator sees as a worker of its own with its own credit. CUDA needs "
                + "the NVIDIA driver, NVRTC and cuDNN or cuBLAS at run time (found via "
                + "TESSERA_CUDA_LIBRARY_PATH, /usr/local/cuda/lib64 or the loader path).", valueName: "device"))
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
        if let threads, !(1...1024).contains(threads) {
            throw ValidationError("--threads must be between 1 and 1024")
        }
        guard heartbeatMs >= 10 else { throw ValidationError("--heartbeat-ms must be at least 10") }
        if let coordinator, let problem = EndpointSyntax.problem(coordinator, option: "--coordinator", bind: false) {
            throw ValidationError(problem)
        }
        guard (0...WorkerAgent.maxTaskDelayMilliseconds).contains(debugTaskDelayMs) else {
            throw ValidationError(
                "--debug-task-delay-ms must be between 0 and \(WorkerAgent.maxTaskDelayMilliseconds) (a day)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard CUDAPrecision(rawValue: precision) != nil else {
            throw ValidationError("--precision must be fp32 or tf32")
        }
        // Syntax only here (cuda:all needs the driver, asked in run()).
        do {
            _ = try ComputeDevice.devices(parsing: device, gpuCount: { 1 })
        } catch {
            throw ValidationError("\(error)")
        }
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
        // A worker holds its jobs' images and map stores open (several files each), and one socket.
        ResourceUsage.raiseOpenFileLimit()
        _ = try BLAS.get()
        // `cuda:all` asks the driver how many GPUs there are: no driver is a device that cannot be opened (78,
        // which a supervisor does not restart), as for `cuda` (docs/CLI audit 36 F3: it was 1).
        let devices: [ComputeDevice]
        do {
            devices = try ComputeDevice.devices(parsing: device, precision: CUDAPrecision(rawValue: precision) ?? .fp32)
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode(WorkerExit.deviceUnavailable)
        }
        // CPU pipelines compute at the same time: each gets its share of the memory and of the cores.
        let cpuPipelines = max(1, devices.filter { $0 == .cpu }.count)
        let memory = min(SystemMemory.limit, maxMemoryMib.map { $0 << 20 } ?? Int.max)
        ActivationArena.limitBytes = memory / cpuPipelines
        ActivationArena.limitText =
            (maxMemoryMib.map { $0 << 20 <= SystemMemory.limit } == true
                ? "--max-memory-mib" : SystemMemory.limitSource)
            + (cpuPipelines > 1 ? " shared by \(cpuPipelines) CPU pipelines" : "")
        let threads = self.threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / devices.count)
        for case .cuda(let index, _) in Set(devices) {
            // Fail now, with the reason, rather than on the first task; with `deviceUnavailable`, which
            // an embedded run does not restart (user review: the same libcuda error four times).
            do {
                let gpu = try CUDAContext.get(device: index)
                logger.info("GPU ready", metadata: ["device": "\(gpu.summary)"])
            } catch {
                FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
                throw ExitCode(WorkerExit.deviceUnavailable)
            }
        }
        for warning in missingFolderWarnings(sharedRoot, option: "--shared-root") { logger.warning("\(warning)") }
        let baseName = name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        // Before the agents: their metrics bind to the backend when they are made.
        let exporter = metricsAddress != nil ? MetricsExporter.shared : nil
        let agents = try devices.enumerated().map { i, computeDevice in
            var config = WorkerAgent.Configuration(
                coordinator: endpoint, name: devices.count == 1 ? baseName : "\(baseName)-\(i)", threads: threads)
            config.heartbeat.intervalMilliseconds = heartbeatMs
            config.taskDelayMilliseconds = debugTaskDelayMs
            config.curve = security
            config.device = computeDevice
            config.sharedRoots = sharedRoot
            config.pipeline = devices.count == 1 ? nil : i
            return try WorkerAgent(configuration: config, logger: logger)
        }
        let vitals =
            agents.count == 1
            ? agents[0].vitals
            : ServiceVitals(combining: agents.map { ($0.configuration.name, $0.vitals) })
        let probes = try metricsAddress.flatMap { text -> ProbeServer? in
            guard let exporter else { return nil }
            let server = try ProbeServer(
                address: try MetricsAddress(parsing: text),
                handler: ProbeRoutes.handler(exporter: exporter, vitals: vitals))
            server.start()
            warnIfExposed(server.address, logger)
            return server
        }
        let sources = onStopSignals { for agent in agents { agent.stop() } }
        // An embedded run's workers leave when their parent dies, however it died.
        var orphanTimer: DispatchSourceTimer?
        if let parentPid {
            let timer = DispatchSource.makeTimerSource(queue: .global())
            timer.schedule(deadline: .now() + 0.5, repeating: 0.5)
            timer.setEventHandler { if getppid() != parentPid { for agent in agents { agent.stop() } } }
            timer.resume()
            orphanTimer = timer
        }
        logger.info(
            "worker starting",
            metadata: [
                "version": "\(TesseraVersion.release)", "coordinator": "\(endpoint)", "threads": "\(threads)",
                "name": "\(baseName)", "curve": "\(security != nil)",
                "device": "\(devices.map(\.description).joined(separator: ","))",
            ])
        defer { probes?.stop() }
        try Self.runAll(agents)
        withExtendedLifetime((sources, orphanTimer)) {}
    }

    /// Runs every agent until all have stopped: the last on this thread, the others on
    /// threads of their own. One that cannot start stops them all, and its error is thrown.
    private static func runAll(_ agents: [WorkerAgent]) throws {
        let failure = Locked<(any Error)?>(nil)
        let finished = DispatchGroup()
        for agent in agents.dropLast() {
            finished.enter()
            let thread = Thread {
                defer { finished.leave() }
                do { try agent.run() } catch {
                    failure.withLock { $0 = $0 ?? error }
                    for other in agents { other.stop() }
                }
            }
            thread.name = "tessera-pipeline"
            thread.start()
        }
        do { try agents.last!.run() } catch {
            failure.withLock { $0 = $0 ?? error }
            for other in agents { other.stop() }
        }
        finished.wait()
        if let error = failure.withLock({ $0 }) { throw error }
    }
}
