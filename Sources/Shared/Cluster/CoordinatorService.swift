import Foundation
import Logging

/// The coordinator: binds a ROUTER for workers and one for clients, plans jobs into
/// tasks, dispatches them with per-worker credit, heartbeats both ways, requeues the
/// tasks of dead or departing workers, drops duplicate and unsolicited results,
/// assembles maps and writes outputs (DESIGN.md §4–5).
///
/// All sockets and all scheduling state live on one thread (`start()` creates it);
/// only writing a finished job's outputs runs elsewhere, so heartbeats keep flowing
/// while a large map is written.
public final class CoordinatorService: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var workerEndpoint: String
        public var clientEndpoint: String
        /// Job store: `jobs/<id>/` holds the job's spec, model files, image, completed
        /// tiles (`tiles/<task>.f32`) and outputs. Nil: a temporary folder.
        public var storeDirectory: String?
        /// Accept `path` sources and an `out=` folder from clients (the embedded `run` only).
        public var allowLocalPaths = false
        public var heartbeat = Heartbeat()
        /// Tasks one worker may hold at once.
        public var credit = 2
        /// Largest message accepted on the client endpoint (uploads travel in one message).
        public var maxClientMessageBytes = 1 << 30

        public init(workerEndpoint: String, clientEndpoint: String, storeDirectory: String? = nil) {
            self.workerEndpoint = workerEndpoint
            self.clientEndpoint = clientEndpoint
            self.storeDirectory = storeDirectory
        }
    }

    final class Worker {
        let id: RoutingID
        let name: String
        let threads: UInt32
        var lastHeard = monotonicSeconds()
        var lastSent = monotonicSeconds()
        var inFlight: Set<Wire.TaskRef> = []
        var tasksDone = 0
        init(id: RoutingID, name: String, threads: UInt32) {
            self.id = id
            self.name = name
            self.threads = threads
        }
    }

    public let configuration: Configuration
    let context: ZMQContext
    let logger: Logger
    private var rejects: RateLimitedLog
    private let lock = NSLock()
    private var stopRequested = false
    private var completions: [(UInt64, Result<[String], Error>)] = []
    private let stopped = DispatchSemaphore(value: 0)
    private let finishQueue = DispatchQueue(label: "tessera.coordinator.outputs")

    // Loop-thread state.
    private var workers: [RoutingID: Worker] = [:]
    private var workerOrder: [RoutingID] = []
    private var jobs: [UInt64: CoordinatorJob] = [:]
    private var jobOrder: [UInt64] = []
    private var nextJobID: UInt64 = 1
    private var rotation = 0
    private var storeRoot = ""
    private var engines: [String: MapEngine] = [:]

    public init(context: ZMQContext, configuration: Configuration, logger: Logger) {
        self.context = context
        self.configuration = configuration
        self.logger = logger
        rejects = RateLimitedLog(logger: logger)
    }

    /// Binds both endpoints and starts the loop thread; returns the bound endpoints
    /// (with the real ports for `tcp://…:*`).
    public func start() throws -> (workers: String, clients: String) {
        let ready = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var outcome: Result<(String, String), Error> = .failure(ClusterError("not started")) }
        let box = Box()
        let thread = Thread { [self] in
            do {
                let workerSocket = try ZMQSocket(context, type: .router)
                try workerSocket.applyTesseraDefaults(maxMessageSize: 1 << 30)
                try workerSocket.bind(configuration.workerEndpoint)
                let clientSocket = try ZMQSocket(context, type: .router)
                try clientSocket.applyTesseraDefaults(maxMessageSize: Int64(configuration.maxClientMessageBytes))
                try clientSocket.bind(configuration.clientEndpoint)
                try prepareStore()
                box.outcome = .success((try workerSocket.lastEndpoint, try clientSocket.lastEndpoint))
                ready.signal()
                loop(workerSocket, clientSocket)
            } catch {
                box.outcome = .failure(error)
                ready.signal()
            }
            stopped.signal()
        }
        thread.name = "tessera-coordinator"
        thread.start()
        ready.wait()
        let endpoints = try box.outcome.get()
        return (endpoints.0, endpoints.1)
    }

    /// Asks the loop to end and waits for it (sockets are closed on its thread).
    public func stop() {
        lock.lock()
        let already = stopRequested
        stopRequested = true
        lock.unlock()
        if !already { stopped.wait() }
    }

    /// Blocks until `stop()` is called from elsewhere (a signal handler).
    public func waitUntilStopped() {
        stopped.wait()
        stopped.signal()
    }

    private var shouldStop: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopRequested
    }

    private func prepareStore() throws {
        if let dir = configuration.storeDirectory {
            storeRoot = dir
        } else {
            storeRoot = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-store-\(getpid())-\(UUID().uuidString)").path
        }
        let jobsDir = storeRoot + "/jobs"
        try FileManager.default.createDirectory(atPath: jobsDir, withIntermediateDirectories: true)
        // Job ids stay unique across restarts on the same store.
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: jobsDir)) ?? []
        nextJobID = (existing.compactMap { UInt64($0) }.max() ?? 0) + 1
    }

    // MARK: Loop

    private func loop(_ workerSocket: borrowing ZMQSocket, _ clientSocket: borrowing ZMQSocket) {
        var poller = ZMQPoller()
        let wi = poller.add(workerSocket)
        let ci = poller.add(clientSocket)
        let clientLimits: WireLimits = {
            var l = WireLimits()
            l.maxTotalBytes = configuration.maxClientMessageBytes
            return l
        }()
        while !shouldStop {
            do {
                try poller.poll(timeoutMilliseconds: 50)
                if poller.isReadable(wi) {
                    while let envelope = try workerSocket.receiveWire(dontWait: true) {
                        handleWorker(envelope, workerSocket)
                    }
                }
                if poller.isReadable(ci) {
                    while let envelope = try clientSocket.receiveWire(limits: clientLimits, dontWait: true) {
                        handleClient(envelope, clientSocket)
                    }
                }
                collectCompletions()
                heartbeatAndPurge(workerSocket)
                dispatch(workerSocket)
            } catch ZMQError.terminated {
                break
            } catch {
                logger.error("coordinator loop: \(error)")
            }
        }
        for (_, w) in workers { try? workerSocket.send(.disconnect(reason: "coordinator stopping"), to: w.id, flags: .dontWait) }
        if configuration.storeDirectory == nil { try? FileManager.default.removeItem(atPath: storeRoot) }
    }

    // MARK: Workers

    private func handleWorker(_ envelope: WireEnvelope, _ socket: borrowing ZMQSocket) {
        guard let peer = envelope.peer else { return }
        let message: WireMessage
        switch envelope.message {
        case .success(let m): message = m
        case .failure(let error):
            rejects.warning("malformed-\(error.kind)", "rejected a malformed message from a worker endpoint peer",
                            metadata: ["peer": "\(String(peer.description.prefix(16)))", "address": "\(envelope.peerAddress ?? "?")", "reason": "\(error)"])
            return
        }
        if case .hello(let hello) = message {
            if let old = workers[peer] { retire(old, reason: "said hello again") }
            let w = Worker(id: peer, name: hello.workerName, threads: hello.threads)
            workers[peer] = w
            workerOrder.append(peer)
            logger.info("worker joined", metadata: ["worker": "\(hello.workerName)", "threads": "\(hello.threads)",
                                                    "device": "\(hello.device)", "workers": "\(workers.count)"])
            send(.welcome(Wire.Welcome(heartbeatIntervalMilliseconds: UInt32(configuration.heartbeat.intervalMilliseconds),
                                       heartbeatLiveness: UInt32(configuration.heartbeat.liveness),
                                       maxTasksInFlight: UInt32(configuration.credit))), to: w, socket)
            return
        }
        guard let worker = workers[peer] else {
            // A stranger, or a worker this coordinator forgot (restart, declared dead): make it register again.
            rejects.warning("unregistered", "message from an unregistered worker: asked it to say hello",
                            metadata: ["peer": "\(String(peer.description.prefix(16)))", "type": "\(message.type)"])
            try? socket.send(.disconnect(reason: "unknown worker: say hello"), to: peer, flags: .dontWait)
            return
        }
        worker.lastHeard = monotonicSeconds()
        switch message {
        case .heartbeat:
            break
        case .result(let result):
            handleResult(result, from: worker)
        case .taskFailed(let failure):
            handleFailure(failure, from: worker)
        case .modelRequest(let digest):
            if let job = jobs.values.first(where: { $0.model.digest == digest && $0.isActive }) {
                send(.modelData(Wire.ModelData(digest: digest, prototxt: job.model.prototxt, weights: job.model.weights)),
                     to: worker, socket)
            } else {
                rejects.warning("model", "a worker asked for a model no active job uses",
                                metadata: ["worker": "\(worker.name)", "digest": "\(digest)"])
                send(.error(message: "no active job uses model \(digest)"), to: worker, socket)
            }
        case .goodbye(let refs):
            for ref in refs where worker.inFlight.contains(ref) { requeue(ref, from: worker) }
            retire(worker, reason: "said goodbye")
        default:
            rejects.warning("unexpected", "unexpected message on the worker endpoint",
                            metadata: ["worker": "\(worker.name)", "type": "\(message.type)"])
        }
    }

    /// Checks a result against what was asked of whom, then places it (first result wins).
    private func handleResult(_ r: Wire.TaskResult, from worker: Worker) {
        let ref = Wire.TaskRef(jobID: r.jobID, taskID: r.taskID)
        guard let job = jobs[r.jobID] else {
            rejects.warning("unknown-task", "rejected a result for an unknown job",
                            metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            return
        }
        guard r.taskID < UInt64(job.tasks.count) else {
            rejects.warning("unknown-task", "rejected a result for an unknown task",
                            metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            return
        }
        guard worker.inFlight.contains(ref) else {
            rejects.warning("not-assigned", "rejected a result from a worker that was not assigned the task",
                            metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            return
        }
        worker.inFlight.remove(ref)
        let index = Int(r.taskID)
        guard case .running(let owner, _) = job.states[index], owner == worker.id, job.isActive else {
            logger.debug("duplicate or late result dropped", metadata: ["job": "\(r.jobID)", "task": "\(r.taskID)"])
            return
        }
        job.running -= 1
        let task = job.tasks[index]
        let size = job.engine.tasks.outputSize(task)
        guard Int(r.classes) == job.engine.classes, Int(r.height) == size.h, Int(r.width) == size.w else {
            rejects.warning("bad-result", "rejected a result of the wrong shape",
                            metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)",
                                       "got": "\(r.classes)×\(r.height)×\(r.width)",
                                       "expected": "\(job.engine.classes)×\(size.h)×\(size.w)"])
            fail(job, index, "\(worker.name): result of the wrong shape")
            return
        }
        job.states[index] = .done
        job.done += 1
        worker.tasksDone += 1
        job.workersUsed.insert(worker.name)
        job.assembler?.add(task, result: Tensor(Shape(c: Int(r.classes), h: Int(r.height), w: Int(r.width)), values: r.values))
        if configuration.storeDirectory != nil {
            do {
                try r.values.withUnsafeBytes { try DurableFile.write($0, to: "\(job.directory)/tiles/\(index).f32") }
            } catch {
                logger.error("cannot store a tile", metadata: ["job": "\(job.id)", "error": "\(error)"])
            }
        }
        if job.done == job.tasks.count { finish(job) }
    }

    private func handleFailure(_ f: Wire.TaskFailure, from worker: Worker) {
        let ref = Wire.TaskRef(jobID: f.jobID, taskID: f.taskID)
        guard worker.inFlight.remove(ref) != nil, let job = jobs[f.jobID] else {
            rejects.warning("not-assigned", "ignored a failure report for a task the worker does not hold",
                            metadata: ["worker": "\(worker.name)", "job": "\(f.jobID)", "task": "\(f.taskID)"])
            return
        }
        let index = Int(f.taskID)
        guard case .running(let owner, _) = job.states[index], owner == worker.id, job.isActive else { return }
        job.running -= 1
        logger.warning("task failed on a worker", metadata: ["worker": "\(worker.name)", "job": "\(job.id)",
                                                             "task": "\(index)", "error": "\(f.message)"])
        fail(job, index, "\(worker.name): \(f.message)")
    }

    /// Records a failed attempt: requeue, or fail the job after 3 failures.
    private func fail(_ job: CoordinatorJob, _ index: Int, _ message: String) {
        job.failures[index, default: []].append(message)
        if job.failures[index]!.count >= 3 {
            abort(job, state: .failed, message: "task \(index) failed 3 times: "
                  + job.failures[index]!.joined(separator: "; "))
        } else {
            job.states[index] = .pending
            job.pending.append(index)
        }
    }

    private func requeue(_ ref: Wire.TaskRef, from worker: Worker) {
        worker.inFlight.remove(ref)
        guard let job = jobs[ref.jobID], job.isActive else { return }
        let index = Int(ref.taskID)
        guard case .running(let owner, _) = job.states[index], owner == worker.id else { return }
        job.running -= 1
        job.states[index] = .pending
        job.pending.append(index)
    }

    private func retire(_ worker: Worker, reason: String) {
        for ref in worker.inFlight { requeue(ref, from: worker) }
        workers[worker.id] = nil
        workerOrder.removeAll { $0 == worker.id }
        logger.info("worker left", metadata: ["worker": "\(worker.name)", "reason": "\(reason)",
                                              "tasks": "\(worker.tasksDone)", "workers": "\(workers.count)"])
    }

    private func send(_ m: WireMessage, to worker: Worker, _ socket: borrowing ZMQSocket) {
        do {
            try socket.send(m, to: worker.id, flags: .dontWait)
            worker.lastSent = monotonicSeconds()
        } catch {
            logger.debug("send to worker failed", metadata: ["worker": "\(worker.name)", "error": "\(error)"])
        }
    }

    private func heartbeatAndPurge(_ socket: borrowing ZMQSocket) {
        let now = monotonicSeconds()
        let hb = configuration.heartbeat
        for id in workerOrder {
            guard let w = workers[id] else { continue }
            if now - w.lastHeard > hb.deadline {
                retire(w, reason: "silent for \(hb.liveness) heartbeats")
                try? socket.send(.disconnect(reason: "declared dead"), to: id, flags: .dontWait)
            } else if now - w.lastSent >= hb.interval {
                send(.heartbeat, to: w, socket)
            }
        }
    }

    /// Gives each worker tasks up to its credit, taking jobs in turn.
    private func dispatch(_ socket: borrowing ZMQSocket) {
        let active = jobOrder.compactMap { jobs[$0] }.filter { $0.isActive && !$0.pending.isEmpty }
        guard !active.isEmpty else { return }
        var turn = rotation
        for id in workerOrder {
            guard let w = workers[id] else { continue }
            while w.inFlight.count < configuration.credit {
                let candidates = jobOrder.compactMap { jobs[$0] }.filter { $0.isActive && !$0.pending.isEmpty }
                if candidates.isEmpty { return }
                let job = candidates[turn % candidates.count]
                turn += 1
                let index = job.pending.removeLast()
                let attempt = (job.attempts[index] ?? 0) + 1
                guard let spec = job.spec(index, attempt: attempt) else {
                    abort(job, state: .failed, message: "task \(index) cannot be expressed on the wire")
                    continue
                }
                do {
                    try socket.send(.task(spec), to: w.id, flags: .dontWait)
                } catch {
                    job.pending.append(index)
                    if (error as? ZMQError) == .hostUnreachable { retire(w, reason: "unreachable") }
                    break
                }
                w.lastSent = monotonicSeconds()
                job.attempts[index] = attempt
                job.states[index] = .running(worker: w.id, attempt: attempt)
                job.running += 1
                w.inFlight.insert(spec.ref)
            }
        }
        rotation = turn
    }

    // MARK: Jobs

    private func finish(_ job: CoordinatorJob) {
        guard let assembler = job.assembler, let image = job.image else { return }
        job.assembler = nil
        let options: OutputOptions
        do {
            options = try job.options.outputOptions(directory: job.outputDirectory, stem: job.stem)
            try FileManager.default.createDirectory(atPath: job.outputDirectory, withIntermediateDirectories: true)
        } catch {
            abort(job, state: .failed, message: "\(error)")
            return
        }
        let id = job.id
        let logger = self.logger
        finishQueue.async { [self] in
            let result = Result { try writeOutputs(map: assembler.finish(), image: image, options: options, logger: logger) }
            lock.lock()
            completions.append((id, result))
            lock.unlock()
        }
    }

    private func collectCompletions() {
        lock.lock()
        let done = completions
        completions.removeAll()
        lock.unlock()
        for (id, result) in done {
            guard let job = jobs[id] else { continue }
            job.finished = monotonicSeconds()
            job.image = nil
            switch result {
            case .success(let files):
                job.outputFiles = files
                job.state = .done
                logger.info("job finished", metadata: [
                    "job": "\(id)", "seconds": "\(String(format: "%.2f", job.finished! - job.started))",
                    "tasks": "\(job.tasks.count)", "workers": "\(job.workersUsed.count)", "files": "\(files.count)"])
            case .failure(let error):
                job.state = .failed
                job.message = "writing the outputs failed: \(error)"
                logger.error("job failed", metadata: ["job": "\(id)", "error": "\(error)"])
            }
        }
    }

    private func abort(_ job: CoordinatorJob, state: Wire.JobState, message: String) {
        guard job.isActive else { return }
        job.state = state
        job.message = message
        job.finished = monotonicSeconds()
        job.pending.removeAll()
        job.assembler = nil
        job.image = nil
        for w in workers.values { w.inFlight = w.inFlight.filter { $0.jobID != job.id } }
        job.running = 0
        if state == .failed {
            logger.error("job failed", metadata: ["job": "\(job.id)", "error": "\(message)"])
        } else {
            logger.info("job cancelled", metadata: ["job": "\(job.id)"])
        }
    }

    // MARK: Clients

    private func handleClient(_ envelope: WireEnvelope, _ socket: borrowing ZMQSocket) {
        guard let peer = envelope.peer else { return }
        let reply: WireMessage
        switch envelope.message {
        case .failure(let error):
            rejects.warning("malformed-client", "rejected a malformed client message",
                            metadata: ["peer": "\(peer)", "reason": "\(error)"])
            reply = .error(message: "malformed message: \(error)")
        case .success(.submit(let spec)):
            do {
                reply = .submitted(jobID: try createJob(spec))
            } catch {
                logger.warning("job refused", metadata: ["error": "\(error)"])
                reply = .error(message: "\(error)")
            }
        case .success(.statusRequest(let id)):
            if let id {
                reply = jobs[id].map { .status($0.status(workers: workers.count)) }
                    ?? .status(Wire.JobStatus(jobID: id, state: .unknown, workers: UInt32(workers.count), message: "no such job"))
            } else {
                let active = jobs.values.filter(\.isActive)
                reply = .status(Wire.JobStatus(
                    jobID: nil, state: active.isEmpty ? .done : .running,
                    tasksQueued: UInt64(active.reduce(0) { $0 + $1.pending.count }),
                    tasksRunning: UInt64(active.reduce(0) { $0 + $1.running }),
                    tasksDone: UInt64(jobs.values.reduce(0) { $0 + $1.done }), workers: UInt32(workers.count),
                    message: "\(active.count) active job(s) of \(jobs.count); workers: "
                        + workerOrder.compactMap { workers[$0].map { "\($0.name)(\($0.threads) threads, \($0.tasksDone) tasks)" } }
                        .joined(separator: ", ")))
            }
        case .success(.cancel(let id)):
            if let job = jobs[id] {
                abort(job, state: .cancelled, message: "cancelled by a client")
                reply = .status(job.status(workers: workers.count))
            } else {
                reply = .error(message: "no job \(id)")
            }
        case .success(.fetchRequest(let req)):
            reply = fetch(req)
        case .success(let other):
            rejects.warning("unexpected-client", "unexpected message on the client endpoint", metadata: ["type": "\(other.type)"])
            reply = .error(message: "unexpected message \(other.type)")
        }
        do {
            try socket.send(reply, to: peer, flags: .dontWait)
        } catch {
            logger.debug("reply to a client failed", metadata: ["error": "\(error)"])
        }
    }

    private func fetch(_ req: Wire.FetchRequest) -> WireMessage {
        guard let job = jobs[req.jobID] else { return .error(message: "no job \(req.jobID)") }
        guard job.state == .done else { return .error(message: "job \(req.jobID) is \(job.state), not done") }
        guard let path = job.outputFiles.first(where: { ($0 as NSString).lastPathComponent == req.fileName }),
              let handle = FileHandle(forReadingAtPath: path) else {
            return .error(message: "job \(req.jobID) has no output \(req.fileName)")
        }
        defer { try? handle.close() }
        do {
            let total = try handle.seekToEnd()
            guard req.offset <= total else { return .error(message: "offset \(req.offset) beyond \(total) bytes") }
            try handle.seek(toOffset: req.offset)
            let count = Int(min(UInt64(min(req.maxBytes, 16 << 20)), total - req.offset))
            let data = try handle.read(upToCount: count) ?? Data()
            return .fetchData(Wire.FetchChunk(jobID: req.jobID, fileName: req.fileName, offset: req.offset,
                                              totalSize: total, bytes: [UInt8](data)))
        } catch {
            return .error(message: "reading \(req.fileName): \(error)")
        }
    }

    /// Stores the job's files, loads its model and image, plans its tasks.
    private func createJob(_ spec: Wire.JobSpec) throws -> UInt64 {
        let options = try JobOptions(encoded: spec.outputOptions)
        if options.outputDirectory != nil && !configuration.allowLocalPaths {
            throw ClusterError("this coordinator does not write outputs to client-chosen folders: use fetch")
        }
        let id = nextJobID
        nextJobID += 1
        let dir = "\(storeRoot)/jobs/\(id)"
        try FileManager.default.createDirectory(atPath: dir + "/tiles", withIntermediateDirectories: true)
        do {
            return try createJob(spec, options: options, id: id, directory: dir)
        } catch {
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
    }

    private func createJob(_ spec: Wire.JobSpec, options: JobOptions, id: UInt64, directory dir: String) throws -> UInt64 {
        func bytes(_ source: Wire.FileSource, _ what: String) throws -> (bytes: [UInt8], name: String)? {
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
        let proto = try bytes(spec.prototxt, "prototxt")
        let weights = try bytes(spec.weights, "weights")
        guard proto != nil || weights != nil else { throw ClusterError("the job names no model files") }
        let bundle = ModelBundle(prototxt: proto?.bytes ?? [], weights: weights?.bytes ?? [])
        let imagePath: String
        let stem: String
        switch spec.image {
        case .path(let path) where configuration.allowLocalPaths && configuration.storeDirectory == nil:
            imagePath = path
            stem = OutputOptions.stem(forInput: path)
        default:
            guard let image = try bytes(spec.image, "image") else { throw ClusterError("empty image") }
            imagePath = dir + "/image.png"
            try DurableFile.write(image.bytes, to: imagePath)
            stem = OutputOptions.stem(forInput: image.name)
        }
        if configuration.storeDirectory != nil {
            if !bundle.prototxt.isEmpty { try DurableFile.write(bundle.prototxt, to: dir + "/deploy.prototxt") }
            if !bundle.weights.isEmpty { try DurableFile.write(bundle.weights, to: dir + "/weights.caffemodel") }
            let text = "mode=\(spec.mode.name)\ntile=\(spec.tileSize)\nstem=\(stem)\noptions=\(spec.outputOptions)\n"
            try DurableFile.write(Array(text.utf8), to: dir + "/job.txt")
        }
        let key = bundle.digest.hex + options.engine.encoded.map { String($0) }.joined(separator: ".")
        let engine: MapEngine
        if let cached = engines[key] {
            engine = cached
        } else {
            engine = try options.engine.makeEngine(bundle).0
            if engines.count >= 4 { engines.removeAll() }
            engines[key] = engine
        }
        let image = try PNGReader.read(path: imagePath)
        let pre = try TaskCodec.preprocessing(spec.preprocessing).validated(channels: engine.fcn.inputChannels)
        _ = try ChannelMapping.resolve(imageChannels: image.channels, netChannels: engine.fcn.inputChannels,
                                       order: pre.channelOrder)
        let mode = TaskCodec.mode(spec.mode)
        let tasks = TilePlan.tasks(mode: mode, image: Size2(image.height, image.width), tile: Int(spec.tileSize),
                                   geometry: engine.tasks)
        let limit = WireLimits.default.maxPixelsPerTask
        if let big = tasks.first(where: { let r = engine.tasks.inputRect($0); return r.height * r.width > limit }) {
            throw ClusterError("tile \(spec.tileSize) is too large: task \(big) needs more than \(limit) input pixels")
        }
        let job = CoordinatorJob(id: id, options: options, mode: mode, tile: Int(spec.tileSize), model: bundle,
                                 engine: engine, preprocessing: TaskCodec.preprocessing(pre), image: image, stem: stem,
                                 directory: dir, outputDirectory: options.outputDirectory ?? dir + "/out", tasks: tasks)
        jobs[id] = job
        jobOrder.append(id)
        logger.info("job started", metadata: ["job": "\(id)", "image": "\(stem)", "size": "\(image.width)×\(image.height)",
                                              "mode": "\(mode.rawValue)", "tile": "\(spec.tileSize)",
                                              "tasks": "\(tasks.count)", "model": "\(bundle.digest.hex.prefix(12))"])
        if tasks.isEmpty { finish(job) }
        return id
    }
}
