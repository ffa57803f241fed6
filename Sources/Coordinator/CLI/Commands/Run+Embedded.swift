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

/// `run` through an embedded coordinator and local worker processes: each image is a
/// shared-storage job of that coordinator (the same protocol as a cluster).
extension Run {
    func runEmbedded(
        _ plan: ModelPlan, memoryBudget: Int, settings: EngineSettings, preprocessing prep: Preprocessing,
        workerThreads: Int, interruption: RunInterruption, logger: Logger
    ) throws {
        let binary = locateWorkerBinary(workerBinary)
        // Say what is there (paths audit 41 F9: a file without execute permission read "no tessera-worker", and a
        // folder, which has execute permission, "NSCocoaErrorDomain Code=4").
        var isFolder: ObjCBool = false
        let problem =
            !FileManager.default.fileExists(atPath: binary, isDirectory: &isFolder)
            ? "no tessera-worker at \(binary)"
            : isFolder.boolValue
                ? "\(binary) is a folder, not the tessera-worker program"
                : !FileManager.default.isExecutableFile(atPath: binary)
                    ? "\(binary) is not executable (chmod +x it)" : nil
        if let problem { throw ClusterError("\(problem): build it, pass --worker-binary, or use --in-process") }
        let context = try ZMQContext()
        var config = CoordinatorService.Configuration(
            workerEndpoint: "tcp://127.0.0.1:*", clientEndpoint: "inproc://tessera-run-\(UUID().uuidString)",
            storeDirectory: store)
        // A Unix socket in the store: no port to allow, and no other user can join as a worker (user review F32).
        config.workerSocketInStore = true
        config.allowLocalPaths = true
        // The limit run was given, not serve's default (review 31 F9: 2 Gpx was refused "by serve --max-pixels").
        config.maxPixels = maxPixels
        var coordinatorLogger = Logger(label: "tessera.coordinator")
        // Notices too: a --tissue view read in full from a slide without small levels, and its progress.
        coordinatorLogger.logLevel = .notice
        let service = CoordinatorService(context: context, configuration: config, logger: coordinatorLogger)
        let (workerEndpoint, clientEndpoint) = try service.start()
        defer { service.stop() }
        interruption.add { service.stop() }
        // The workers read the images and write into --out: exactly those folders are shared.
        // An image given through a link is read at its target (the coordinator resolves links).
        let folders = images.flatMap { [$0, SharedRoots.resolve($0)] }.map {
            parentPath($0)
        }
        let roots = Set([output.out] + folders)
            .map { $0.isEmpty ? "." : $0 }
        let pool = try LocalWorkers(
            binary: binary, count: workerCount, endpoint: workerEndpoint, threads: workerThreads,
            arguments: ["--device", compute.device, "--precision", compute.precision]
                // `--shared-root=PATH`: a folder named "-o" was taken for an option (paths audit 41 F3).
                + roots.sorted().map { "--shared-root=\($0)" })
        defer { pool.stop() }
        interruption.add { pool.stop() }
        logger.info(
            "embedded coordinator",
            metadata: [
                "workers": "\(workerCount)", "threads": "\(workerThreads)",
                "endpoint": "\(workerEndpoint)",
            ])
        let client = try ClusterClient(endpoint: clientEndpoint, context: context)
        let progress = Progress(stream: stderr)
        try forEachImage(interruption: interruption, logger: logger) { path in
            try mapShared(
                path, client: client, pool: pool, plan: plan, memoryBudget: memoryBudget, preprocessing: prep,
                progress: progress, interruption: interruption, logger: logger)
        }
    }

    /// One image as a shared-storage job of the embedded coordinator: the workers read
    /// the image and write the map's chunks themselves (the OME-Zarr output, or a raw
    /// temporary store); then the other outputs are written here from the store.
    private func mapShared(
        _ path: String, client: ClusterClient, pool: LocalWorkers, plan: ModelPlan, memoryBudget: Int,
        preprocessing prep: Preprocessing,
        progress: Progress, interruption: RunInterruption, logger: Logger
    ) throws {
        let header = try ImageInput.header(
            path: path, image: slide.image, level: slide.level, mpp: slide.mpp, maxPixels: maxPixels)
        if let warning = header.sixteenBitWarning(path: path, rawScale: prep.rawScale) { logger.warning("\(warning)") }
        for note in header.notes { logger.warning("\(note)", metadata: ["image": "\(path)"]) }
        let size = Size2(header.height, header.width)
        let kept = try slide.keptClasses(netClasses: plan.classes)
        let options = try output.options(
            forImage: path, image: slide.image ?? 1, isPNG: header.format == .png, keeping: kept != nil)
        try checkOutputs(options, kept: kept, isPNG: header.format == .png, classes: plan.classes, logger: logger)
        let keepZarr = options.kinds.contains(.zarr)
        let stride = plan.tasks.stride
        for note in job.sizeNotes(image: size, plan: plan) { logger.warning("\(note)", metadata: ["image": "\(path)"]) }
        var t = try job.tile ?? plan.defaultTile(mode: job.mode, image: size, memoryBudget: memoryBudget)
        if job.mode == .shift { t = TilePlan.roundUp(t, TilePlan.shiftUnit(stride)) }
        if options.kinds.contains(where: \.isChunked) {  // the zarr's or the TIFF's pyramid
            if let given = job.tile, let note = MapPyramid.levelNote(tile: given, image: size, stride: stride) {
                logger.warning("\(note)")
            }
            t = MapPyramid.fit(tile: t, image: size, stride: stride, fixedTile: job.tile != nil).tile
        }
        let perTile = TilePlan.tasksPerTile(mode: job.mode, stride: stride)
        if let why = TilePlan.tooManyTiles(image: size, tile: t, tasksPerTile: perTile) {
            throw ClusterError("\(path): \(why)")
        }
        let start = Date()
        logger.info(
            "mapping",
            metadata: [
                "image": "\(path)", "size": "\(header.width)×\(header.height)",
                "level": "\(header.levelDescription)", "mode": "\(job.mode.rawValue)", "tile": "\(t)",
            ])
        var jobOptions = job.jobOptions(model, output, outputDirectory: output.out)
        jobOptions.storage = .shared
        jobOptions.image = header.image
        jobOptions.level = header.format == .png ? nil : header.level
        jobOptions.tissue = slide.tissue
        jobOptions.skipCorruptTiles = slide.corruptTiles == .skip
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
            guard
                case .submitted(let id) = try client.request(
                    .submit(spec()), timeout: 86_400, attemptTimeout: 60, slowReply: Submit.preparing)
            else {
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
        // The outputs of this image's names beside the map the new one replaces: the job's coordinator removes them
        // once the new zarr is in place (docs audit 49 F1), and this run says so.
        let replacing = keepZarr && FileManager.default.fileExists(atPath: options.zarrPath)
        let before = replacing ? OutputOptions.existingOutputs(directory: options.directory, stem: options.stem) : []
        var id = try submit()
        if let base = jobOptions.token {
            // The same command after a failure maps again (a full disk since freed; audit 55 F2: every later run
            // ended at once with the first one's "No space left on device"): each failed or cancelled job of this
            // command is followed by the next token of its line.
            var earlier: (id: UInt64, status: Wire.JobStatus)?
            for retry in 1...1000 {
                let s = try client.status(id)
                guard s.state == .failed || s.state == .cancelled else { break }
                earlier = earlier ?? (id, s)
                jobOptions.token = "\(base)-\(retry)"
                id = try submit()
            }
            // (Said when the job found has work to do: one the line already holds done is no news; one it holds
            // interrupted is resumed, review 32 R5.)
            if let earlier, case let now = try client.status(id), now.state == .queued || now.state == .running {
                logger.info(
                    "an earlier run of this command ended without a map: this run maps it with another job",
                    metadata: [
                        "earlier-job": "\(earlier.id)", "state": "\(earlier.status.state)",
                        "reason": "\(earlier.status.message)", "job": "\(id)",
                    ])
            }
        }
        if jobOptions.token != nil, case let s = try client.status(id), s.state == .done,
            !(s.outputFiles.first.map { FileManager.default.fileExists(atPath: "\(output.out)/\($0)") } ?? false)
        {
            // Mapped by an earlier run whose map is gone (moved, or a temporary store): map again.
            jobOptions.token = nil
            id = try submit()
        }
        let status = try client.wait(
            job: id, label: OutputOptions.stem(forInput: path), pixels: header.width * header.height,
            progress: progress,
            noWorker: "this run's own workers, pids \(pool.pids.map(String.init).joined(separator: ", ")), do not "
                + "answer: stopped (kill -STOP, Ctrl-Z) or hung? The run goes on when they do"
        ) {
            try pool.checkAlive()
        }
        guard let name = status.outputFiles.first else { throw ClusterError("job \(id) wrote no map store") }
        let storePath = "\(output.out)/\(name)"
        // The zarr is complete and in place (hours of computing): a failure or an interruption now says so, and how
        // to finish (whole-slide audit 35 F7: the run exited 1 with the zarr left and not a word about it).
        let keptNote = keptMapNote(storePath, options: options, image: path)
        // Said at once: the zarr landed a moment ago (verification audit 40 N3: a Ctrl-C then got no hint).
        if keepZarr && options.kinds != [.zarr] { interruption.setNote(keptNote) }
        defer { interruption.setNote(nil) }
        defer { if !keepZarr { try? FileManager.default.removeItem(atPath: storePath) } }
        let store = try MapStore.open(at: storePath)
        let overlay = options.kinds.contains(.overlay)
        let image =
            overlay
            ? try ImageInput.open(
                path: path, image: header.image, level: jobOptions.level, maxPixels: maxPixels, rowsInOrder: true
            ).source
            : nil
        let written: [String]
        if keepZarr {
            // Earlier files of the names this run writes no longer match the map now in place: removed before this
            // run's are written, so an interruption does not leave them beside it, unsaid (output audit 39 F2);
            // when it replaced a map, that map's outputs of the other kinds too (docs audit 49 F1). Files only (or
            // links): a folder of that name, made while the image was mapped, is the user's and stays; writing the
            // output then fails, naming it (verification audit 40: it was removed with its contents).
            let classes = options.classes ?? kept ?? OutputOptions.defaultClasses(classCount: plan.classes)
            let left =
                options.singleFiles(probabilityClasses: classes).filter(OutputOptions.isFileOrLink)
                + (replacing ? OutputOptions.existingOutputs(directory: options.directory, stem: options.stem) : [])
            for file in left { try? FileManager.default.removeItem(atPath: file) }
            let earlier = before + Set(left).subtracting(before).sorted()
            if !earlier.isEmpty {
                logger.info(
                    "removed an earlier run's outputs, which the new map replaces: \(earlier.joined(separator: ", "))")
            }
        }
        do {
            written = try ChunkedMapOutput.export(
                store, image: image, options: options, tiffDType: slide.dtype, logger: logger)
        } catch  where keepZarr {
            throw ClusterError("\(error). \(keptNote)")
        }
        var metadata: Logger.Metadata = [
            "image": "\(path)",
            "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(start)))",
            "tiles": "\(status.tasksDone)",
            "files": "\(written.count + (keepZarr ? 1 : 0))",
        ]
        // The coordinator's note: how much tissue --tissue found, or what a resumed job restored.
        if !status.message.isEmpty { metadata["note"] = "\(status.message)" }
        // A warning, as `--in-process` gives (docs/CLI audit 36 F18: only the info line said it).
        if jobOptions.tissue && status.tasksDone == 0 {
            logger.warning(
                "no tissue found: nothing is computed (map without --tissue?)", metadata: ["image": "\(path)"])
        }
        logger.info("done", metadata: metadata)
    }
}

/// The worker processes of an embedded `run`: started with the coordinator's
/// endpoint, stopped with SIGTERM (SIGKILL after 5 s); they also exit on their own
/// when this process dies (`--parent-pid`). A worker that dies (the kernel's out-of-memory
/// killer, a crash) is started again, `maxRestarts` times in all: its tasks go back to the
/// coordinator's queue, and a task that keeps killing workers fails its job with the reason
/// (user audit: one killed worker lost the whole run).
final class LocalWorkers {
    private var processes: [Process] = []
    private let binary: String
    private var stopping = false
    private(set) var restarts = 0
    /// How many times each worker has been started (its replacement is named `local-N.S`).
    private var starts: [Int]
    static let maxRestarts = 3
    private let logger = Logger(label: "tessera.run")

    init(binary: String, count: Int, endpoint: String, threads: Int, arguments: [String] = []) throws {
        self.binary = binary
        starts = Array(repeating: 1, count: count)
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

    /// The `--name` a worker process was started with.
    static func name(_ p: Process) -> String {
        guard let arguments = p.arguments, let at = arguments.firstIndex(of: "--name"), at + 1 < arguments.count else {
            return "?"
        }
        return arguments[at + 1]
    }

    /// The process ids, for messages.
    var pids: [Int32] { processes.map(\.processIdentifier) }

    /// How a worker ended, in words: "killed by SIGKILL (the out-of-memory killer?)", "exit status 1".
    static func ending(_ p: Process) -> String {
        guard p.terminationReason == .uncaughtSignal else { return "exit status \(p.terminationStatus)" }
        let signal = p.terminationStatus
        let name =
            [
                SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGABRT: "SIGABRT", SIGILL: "SIGILL",
                SIGTERM: "SIGTERM", SIGINT: "SIGINT",
            ][signal] ?? "signal \(signal)"
        let hint = signal == SIGKILL ? " (the out-of-memory killer? the kernel log says: dmesg)" : ""
        return "killed by \(name)\(hint)"
    }

    /// Starts dead workers again (at most `maxRestarts` in all); throws when every worker has
    /// exited and none may be started.
    func checkAlive() throws {
        guard !stopping else { return }
        if let p = processes.first(where: {
            !$0.isRunning && $0.terminationReason == .exit && $0.terminationStatus == WorkerExit.deviceUnavailable
        }) {
            throw ClusterError(
                "a local worker cannot open its compute device (\(Self.ending(p)); its error is above): "
                    + "starting it again cannot help")
        }
        for (i, p) in processes.enumerated() where !p.isRunning && restarts < Self.maxRestarts {
            restarts += 1
            starts[i] += 1
            let again = Process()
            again.executableURL = p.executableURL
            // A name of its own: the coordinator may not have noticed the death yet, and named the replacement
            // apart with a warning to give each worker its own --name, which a `run` user cannot (audit 52).
            let name = "local-\(i + 1).\(starts[i])"
            var arguments = p.arguments ?? []
            if let at = arguments.firstIndex(of: "--name"), at + 1 < arguments.count { arguments[at + 1] = name }
            again.arguments = arguments
            again.environment = p.environment
            do {
                try again.run()
            } catch {
                continue
            }
            processes[i] = again
            logger.warning(
                "a local worker died: started again (its tasks go back to the queue)",
                metadata: [
                    "worker": "\(Self.name(p))", "ended": "\(Self.ending(p))", "pid": "\(p.processIdentifier)",
                    "new-pid": "\(again.processIdentifier)", "new-name": "\(name)",
                    "restart": "\(restarts) of \(Self.maxRestarts)",
                ])
        }
        if !processes.isEmpty, processes.allSatisfy({ !$0.isRunning }) {
            let endings = processes.map(Self.ending).joined(separator: "; ")
            throw ClusterError(
                "all local workers exited (\(endings))\(restarts > 0 ? ", after \(restarts) restarts" : ""): "
                    + "with --store DIR the same command resumes from the tiles already computed")
        }
    }

    func stop() {
        stopping = true
        for p in processes where p.isRunning { p.terminate() }
        let deadline = Date().addingTimeInterval(5)
        while processes.contains(where: \.isRunning) && Date() < deadline { usleep(20_000) }
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in processes { p.waitUntilExit() }
        processes.removeAll()
    }
}
