import ArgumentParser
import CLISupport
import CoordinatorService
import Foundation
import Logging
import TesseraCore
import TesseraImage
import TesseraMetrics
import TesseraWire

/// `tessera-coordinator serve`: the long-running coordinator.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a coordinator: workers connect to one endpoint, clients submit jobs to the other.",
        discussion: """
            Endpoints default to loopback. To serve other machines, use --curve: every connection is \
            encrypted and only the public keys in --authorized-keys get in (keys: `keygen`). Binding \
            another interface without --curve exposes an unauthenticated service (a loud warning is \
            logged): do it only on a trusted network.

            Example:
              tessera-coordinator serve --worker-endpoint tcp://0.0.0.0:5555 \\
                --client-endpoint tcp://0.0.0.0:5556 --store /var/lib/tessera \\
                --curve --curve-secret-key keys/coordinator.key \\
                --authorized-keys keys/authorized
            """
    )

    @Option(help: "Where workers connect (ROUTER).") var workerEndpoint = "tcp://127.0.0.1:5555"
    @Option(help: "Where clients submit jobs (ROUTER).") var clientEndpoint = "tcp://127.0.0.1:5556"
    @Option(
        help:
            "Job store folder (job specs, models, images, completed tiles, outputs). Restarted on the same folder, the coordinator resumes unfinished jobs."
    )
    var store: String?
    @Option(
        help: ArgumentHelp(
            "Storage shared with the workers (repeatable): clients may name images and output folders "
                + "under it for shared-storage jobs (submit --shared). Without it, only upload jobs.",
            valueName: "folder"))
    var sharedRoot: [String] = []
    @Option(help: "Tasks one worker may hold at once (1 to 64).") var credit = 2
    @Option(
        help: ArgumentHelp(
            "The largest message a peer of the worker endpoint may send, in MiB: an upload job's "
                + "result (classes × tile² × 4 bytes) must fit. Messages cross in 128 KiB pieces: one "
                + "announcing more is refused at its first piece, before anything is kept. 1 to 4096.",
            valueName: "MiB"))
    var maxWorkerMessageMib = 256
    @Option(
        help: ArgumentHelp(
            "The largest message a client may send, in MiB: a submission carries its model files whole "
                + "(images go in 16 MiB parts), so the largest model must fit; a peer sending more is "
                + "disconnected before anything is buffered. 32 to 4096.", valueName: "MiB"))
    var maxClientMessageMib = 1024
    @Option(
        help: ArgumentHelp(
            "Uploaded files (images, models) of submissions waiting for preparation, in MiB: past it the "
                + "client endpoint is not read until one is prepared, so a flood of uploads waits in the peers' "
                + "bounded queues (2 messages each) instead of in memory. 1 to 65536.", valueName: "MiB"))
    var maxPreparingMib = 256
    @Option(
        help: ArgumentHelp(
            "Fail a job when one of its tasks was in flight on this many workers that were then lost "
                + "(crashed, killed, out of memory, silent): a task that kills every worker it reaches "
                + "does not loop forever. A worker that joins again (the same process: its host paused, its link "
                + "cut) has its losses withdrawn, up to N a task. 0: never.", valueName: "N"))
    var maxTaskLosses = 3
    @Option(help: .hidden) var heartbeatMs = 1000
    @Option(
        help: ArgumentHelp(
            "Heartbeats (one per second) a worker or this coordinator may miss before the other declares it dead; "
                + "workers take it from here. Messages over 128 KiB cross in pieces of 128 KiB, each of which "
                + "counts as heard, so a link down to about 44 kB/s per worker stays alive with the default.",
            valueName: "N"))
    var heartbeatLiveness = 3
    @Option(help: .hidden) var stragglerFloorMs = 10_000
    @Option(help: .hidden) var stragglerFactor = 3.0
    @Option(help: .hidden) var stragglerUnmeasuredMs = 300_000
    @Option(help: .hidden) var readyFile: String?
    @Option(
        help: ArgumentHelp(
            "Serve Prometheus metrics at /metrics and probes at /healthz, /readyz on HOST:PORT (:PORT or PORT: "
                + "loopback). Off by default.", valueName: "address"))
    var metricsAddress: String?
    @Option(
        help: ArgumentHelp(
            "Remove ended (done, failed, cancelled) jobs this long after they ended, from memory and the store: "
                + "e.g. 7d, 12h, 30m (never within a minute of their end, nor a result nobody fetched within 10 "
                + "minutes). Default: keep them.", valueName: "duration"))
    var keepFinished: String?
    @Option(
        help: ArgumentHelp(
            "While the store holds more than this, remove the oldest ended jobs (active jobs are kept): "
                + "e.g. 50G, 500M (binary units: K, M, G, T are KiB, MiB, GiB, TiB). Default: no limit.",
            valueName: "size"))
    var maxStore: String?
    @Option(help: "Refuse submitted images with more pixels than this (read from the header, before decoding).")
    var maxPixels = PNGReader.defaultMaxPixels
    @Option(
        help: ArgumentHelp(
            "Unfinished jobs (uploading, queued or running) one client key may have at once; a submission past "
                + "it is refused, naming the jobs. Admin keys are exempt; without CURVE all clients share one "
                + "limit. 0: no limit.", valueName: "N"))
    var maxJobsPerKey = 0
    @Option(
        help: ArgumentHelp(
            "Unfinished jobs this coordinator holds in all, whoever submitted them; a submission past it is "
                + "refused (\"submit again when some have ended\"). Admin keys are exempt. 0: no limit.",
            valueName: "N"))
    var maxJobs = 10_000
    @Option(help: .hidden) var retentionCheckMs = 30_000
    /// Tests: how long retention keeps a job after its end, and an unfetched result (default 60 s and 10 min).
    @Option(help: .hidden) var retentionGraceMs: Int?
    @Option(help: .hidden) var debugFetchMsPerMib = 0
    /// Tests: a short window, so that a rate falls to 0 within a test's time.
    @Option(help: .hidden) var rateWindowMs = 30_000
    @OptionGroup var curve: CurveServerOptions
    @Option(
        help: ArgumentHelp(
            "Log level: trace, debug, info, notice, warning, error, critical (debug adds each refused or dropped "
                + "message's details).", valueName: "level"))
    var logLevel = "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError(
                "unknown --log-level \(logLevel): trace, debug, info, notice, warning, error, critical")
        }
        guard (1...64).contains(credit) else { throw ValidationError("--credit must be between 1 and 64") }
        guard (1...4096).contains(maxWorkerMessageMib) else {
            throw ValidationError("--max-worker-message-mib must be between 1 and 4096")
        }
        guard (32...4096).contains(maxClientMessageMib) else {
            throw ValidationError("--max-client-message-mib must be between 32 and 4096")
        }
        guard (1...65536).contains(maxPreparingMib) else {
            throw ValidationError("--max-preparing-mib must be between 1 and 65536")
        }
        guard (0...1000).contains(maxTaskLosses) else { throw ValidationError("--max-task-losses must be 0...1000") }
        guard heartbeatMs >= 10 else { throw ValidationError("--heartbeat-ms must be at least 10") }
        guard (2...1000).contains(heartbeatLiveness) else {
            throw ValidationError("--heartbeat-liveness must be 2...1000")
        }
        guard stragglerFloorMs >= 1, stragglerFactor >= 1 else {
            throw ValidationError("--straggler-floor-ms must be positive and --straggler-factor at least 1")
        }
        guard maxPixels >= 1 else { throw ValidationError("--max-pixels must be positive") }
        guard (0...1_000_000).contains(maxJobs) else {
            throw ValidationError("--max-jobs must be between 0 (no limit) and 1000000")
        }
        guard (0...1_000_000).contains(maxJobsPerKey) else {
            throw ValidationError("--max-jobs-per-key must be 0 (no limit) to 1000000")
        }
        guard retentionCheckMs >= 10 else { throw ValidationError("--retention-check-ms must be at least 10") }
        for (option, endpoint) in [("--worker-endpoint", workerEndpoint), ("--client-endpoint", clientEndpoint)] {
            if let problem = EndpointSyntax.problem(endpoint, option: option, bind: true) {
                throw ValidationError(problem)
            }
        }
        // Each error names its option (user review: "duration 7x: …" did not say which).
        func check(_ option: String, _ parse: () throws -> Void) throws {
            do { try parse() } catch { throw ValidationError("\(option): \(error)") }
        }
        try check("--metrics-address") { _ = try metricsAddress.map(MetricsAddress.init(parsing:)) }
        try check("--keep-finished") { _ = try keepFinished.map(RetentionPolicy.seconds(parsing:)) }
        try check("--max-store") { _ = try maxStore.map(RetentionPolicy.bytes(parsing:)) }
    }

    func run() throws {
        var logger = Logger(label: "tessera.coordinator")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let security = try curve.security()
        for endpoint in [workerEndpoint, clientEndpoint] where security == nil && !isLoopback(endpoint) {
            // What each endpoint exposes (user review: the worker endpoint's warning spoke of submitting jobs).
            let exposure =
                endpoint == workerEndpoint
                ? "pose as a worker and receive tasks (their images and models)"
                : "submit jobs, read their outputs and cancel them"
            logger.warning(
                """
                BINDING \(endpoint) WITHOUT AUTHENTICATION: anyone who can reach it can \(exposure). \
                Use --curve, loopback, or a trusted network.
                """)
        }
        if let files = ResourceUsage.raiseOpenFileLimit(), files < maxJobs + 1024 {
            // A file per unfinished job (its map store or raw image) and a socket per peer.
            logger.warning(
                "the open-file limit is \(files), below --max-jobs (\(maxJobs)) and its peers: jobs and workers past it fail with \"Too many open files\"; raise the hard limit (LimitNOFILE= in a systemd unit, ulimit -Hn) or lower --max-jobs"
            )
        }
        let context = try ZMQContext()
        var config = CoordinatorService.Configuration(
            workerEndpoint: workerEndpoint, clientEndpoint: clientEndpoint,
            storeDirectory: store)
        config.credit = credit
        config.maxWorkerMessageBytes = maxWorkerMessageMib << 20
        config.maxClientMessageBytes = maxClientMessageMib << 20
        config.maxPreparingBytes = maxPreparingMib << 20
        config.sharedRoots = sharedRoot
        for warning in missingFolderWarnings(sharedRoot, option: "--shared-root") { logger.warning("\(warning)") }
        config.curve = security
        config.heartbeat.intervalMilliseconds = heartbeatMs
        config.heartbeat.liveness = heartbeatLiveness
        config.stragglers.floorSeconds = Double(stragglerFloorMs) / 1000
        config.stragglers.factor = stragglerFactor
        config.stragglers.unmeasuredSeconds = Double(max(1, stragglerUnmeasuredMs)) / 1000
        config.maxPixels = maxPixels
        config.maxJobsPerKey = maxJobsPerKey
        config.maxJobs = maxJobs
        config.maxTaskLosses = maxTaskLosses
        config.debugFetchMillisecondsPerMiB = max(0, min(debugFetchMsPerMib, 60_000))
        config.rateWindowSeconds = Double(max(100, min(rateWindowMs, 3_600_000))) / 1000
        config.retention.keepFinishedSeconds = try keepFinished.map(RetentionPolicy.seconds(parsing:))
        config.retention.maxStoreBytes = try maxStore.map(RetentionPolicy.bytes(parsing:))
        config.retention.checkSeconds = Double(retentionCheckMs) / 1000
        if let retentionGraceMs {
            config.retention.endGrace = Double(max(0, retentionGraceMs)) / 1000
            config.retention.unfetchedGrace = config.retention.endGrace
        }
        // Before the service starts: its metrics bind to the backend when it creates them.
        let exporter = metricsAddress != nil ? MetricsExporter.shared : nil
        let service = CoordinatorService(context: context, configuration: config, logger: logger)
        let probes = try metricsAddress.flatMap { text -> ProbeServer? in
            guard let exporter else { return nil }
            let server = try ProbeServer(
                address: try MetricsAddress(parsing: text),
                handler: ProbeRoutes.handler(
                    exporter: exporter, vitals: service.vitals, aliveWhileStarting: true,
                    extraReadiness: { service.storeReadiness }))
            server.start()
            warnIfExposed(server.address, logger)
            return server
        }
        let (workers, clients) = try service.start()
        if let security, security.workerKeysDirectory == nil {
            // Every authorized key may then join as a worker and receive others' models and images.
            logger.warning(
                """
                CURVE without worker roles: any authorized key may join as a worker and be sent other keys' \
                images and models; give --worker-keys DIR (the workers' public keys) on a shared network
                """,
                metadata: ["authorized-keys": "\(security.authorizedKeysDirectory)"])
        }
        if let security, security.workerKeysDirectory != nil,
            (try? ZMQCurve.loadAuthorizedKeys(directory: security.authorizedKeysDirectory))?.isEmpty == true
        {
            // Accepted (users may be added later; the folder is re-read), but not without a word (operator audit 38 F4).
            logger.warning(
                "no user keys yet: the authorized-keys folder holds no valid *.pub key, so only admin keys may submit; users' public keys added there are taken within 2 s",
                metadata: ["authorized-keys": "\(security.authorizedKeysDirectory)"])
        }
        logger.info(
            "coordinator serving",
            metadata: [
                "version": "\(TesseraVersion.release)", "workers": "\(workers)", "clients": "\(clients)",
                "store": "\(store ?? "(temporary)")",
                "curve": "\(security.map(Self.describe) ?? "off")",
                "metrics": "\(probes.map { "http://\($0.address)/metrics" } ?? "off")",
                "retention": "\(config.retention.summary)",
                "max-pixels": "\(maxPixels)",
                "max-jobs-per-key": "\(maxJobsPerKey == 0 ? "no limit" : "\(maxJobsPerKey)")",
                "max-jobs": "\(maxJobs == 0 ? "no limit" : "\(maxJobs)")",
            ])
        if let readyFile {
            try Data("\(workers)\n\(clients)\n".utf8).write(to: URL(fileURLWithPath: readyFile), options: .atomic)
        }
        let sources = onStopSignals { service.stop() }
        service.waitUntilStopped()
        withExtendedLifetime(sources) {}
        probes?.stop()
        if let failure = service.failure {
            logger.critical("coordinator stopped on a failure", metadata: ["reason": "\(failure)"])
            throw failure
        }
        logger.info("coordinator stopped", metadata: store.map { ["store": "\($0)"] } ?? [:])
    }

    /// The CURVE settings as the start-up log gives them: the folders, and whether roles are on.
    static func describe(_ curve: CurveServerSecurity) -> String {
        var parts = ["on, authorized keys in \(curve.authorizedKeysDirectory)"]
        parts.append(curve.workerKeysDirectory.map { "worker keys in \($0) (roles on)" } ?? "no worker roles")
        if let admins = curve.adminKeysDirectory { parts.append("admin keys in \(admins)") }
        return parts.joined(separator: ", ")
    }
}
