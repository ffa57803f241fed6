import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// The coordinator: binds a ROUTER for workers and one for clients, plans jobs into
/// tasks, dispatches them with per-worker credit, heartbeats both ways, requeues the
/// tasks of dead or departing workers, sends a copy of an overdue task to another
/// worker (first result wins, later duplicates are dropped), drops unsolicited
/// results, assembles maps and writes outputs (docs/ARCHITECTURE.md §7). With a persistent
/// store it keeps every job and completed tile on disk and resumes unfinished jobs
/// at start (`CoordinatorService+Resume.swift`).
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
        /// When a running task is overdue and gets a copy on another worker.
        public var stragglers = StragglerPolicy()
        /// Tasks one worker may hold at once.
        public var credit = 2
        /// Largest message accepted on the client endpoint (uploads travel in one message).
        public var maxClientMessageBytes = 1 << 30
        /// CURVE keys (`CoordinatorService+Security`); nil: no encryption, every peer allowed.
        public var curve: CurveServerSecurity?

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
    /// Tile and job-state writes, in order, off the loop thread (each one fsyncs).
    let storeQueue = DispatchQueue(label: "tessera.coordinator.store")

    // Loop-thread state.
    private var workers: [RoutingID: Worker] = [:]
    private var workerOrder: [RoutingID] = []
    var jobs: [UInt64: CoordinatorJob] = [:]
    var jobOrder: [UInt64] = []
    /// Jobs that ended before this coordinator started (read from the store).
    var archived: [UInt64: ArchivedJob] = [:]
    private var nextJobID: UInt64 = 1
    private var rotation = 0
    private var lastStragglerScan = 0.0
    /// Set once stopping: submissions are refused.
    private var draining = false
    var store = JobStore(root: "")
    /// Whether the store outlives this process (`storeDirectory` given).
    var persistent: Bool { configuration.storeDirectory != nil }
    private var plans: [String: ModelPlan] = [:]

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
                let zap = try startAuthentication()
                defer { zap.stop() }
                let workerSocket = try ZMQSocket(context, type: .router)
                try workerSocket.applyTesseraDefaults(maxMessageSize: 1 << 30)
                try secure(workerSocket)
                try workerSocket.bind(configuration.workerEndpoint)
                let clientSocket = try ZMQSocket(context, type: .router)
                try clientSocket.applyTesseraDefaults(maxMessageSize: Int64(configuration.maxClientMessageBytes))
                try secure(clientSocket)
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
        // Pass the one signal on: `waitUntilStopped()` (main thread) may be waiting too.
        if !already { stopped.wait(); stopped.signal() }
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
            store = JobStore(root: dir)
            try DurableFile.createDirectory(store.jobsDirectory)
        } else {
            store = JobStore(root: FileManager.default.temporaryDirectory
                .appendingPathComponent("tessera-store-\(getpid())-\(UUID().uuidString)").path)
            try FileManager.default.createDirectory(atPath: store.jobsDirectory, withIntermediateDirectories: true)
        }
        // Job ids stay unique across restarts on the same store.
        nextJobID = (store.jobIDs().max() ?? 0) + 1
        if persistent { resumeFromStore() }
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
        shutDown(workerSocket, clientSocket, clientLimits)
    }

    /// Stops accepting jobs (a last pass over waiting client requests refuses
    /// submissions), waits for outputs being written and for the store's queued
    /// writes, then tells the workers to go (they reconnect with backoff, so a
    /// restarted coordinator gets them back).
    private func shutDown(_ workerSocket: borrowing ZMQSocket, _ clientSocket: borrowing ZMQSocket,
                          _ clientLimits: WireLimits) {
        draining = true
        while let envelope = try? clientSocket.receiveWire(limits: clientLimits, dontWait: true) {
            handleClient(envelope, clientSocket)
        }
        finishQueue.sync {}
        collectCompletions()
        storeQueue.sync {}
        for (_, w) in workers { try? workerSocket.send(.disconnect(reason: "coordinator stopping"), to: w.id, flags: .dontWait) }
        if persistent {
            let unfinished = jobs.values.filter(\.isActive)
            logger.info("store synced", metadata: [
                "store": "\(store.root)", "unfinished": "\(unfinished.count)",
                "tiles": "\(unfinished.reduce(0) { $0 + $1.done })"])
        } else {
            try? FileManager.default.removeItem(atPath: store.root)
        }
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
        guard job.isActive, case .running(let attempts) = job.states[index],
              let mine = attempts.first(where: { $0.worker == worker.id }) else {
            if job.states[index] == .done {
                job.duplicatesDropped += 1
                logger.info("duplicate result dropped: the task was already done (first result wins)",
                            metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)",
                                       "attempt": "\(r.attempt)"])
            } else {
                logger.debug("late result dropped", metadata: ["job": "\(r.jobID)", "task": "\(r.taskID)"])
            }
            return
        }
        let task = job.tasks[index]
        let size = job.plan.tasks.outputSize(task)
        guard Int(r.classes) == job.plan.classes, Int(r.height) == size.h, Int(r.width) == size.w else {
            rejects.warning("bad-result", "rejected a result of the wrong shape",
                            metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)",
                                       "got": "\(r.classes)×\(r.height)×\(r.width)",
                                       "expected": "\(job.plan.classes)×\(size.h)×\(size.w)"])
            attemptFailed(job, index, worker, "\(worker.name): result of the wrong shape")
            return
        }
        // The other copy, if any, stays in its worker's in-flight set: its result will be
        // recognised as a duplicate, and the worker gets no new task while still busy.
        job.recordTaskTime(monotonicSeconds() - mine.since, policy: configuration.stragglers)
        job.running -= 1
        job.states[index] = .done
        job.done += 1
        job.computed += 1
        worker.tasksDone += 1
        job.workersUsed.insert(worker.name)
        job.assembler?.add(task, result: r.values, classes: Int(r.classes), rows: Int(r.height), cols: Int(r.width))
        if persistent {
            let tile = TileFile(index: index, task: task, classes: Int(r.classes), height: Int(r.height),
                                width: Int(r.width), values: r.values)
            let (store, logger, id) = (store, logger, job.id)
            storeQueue.async {
                do {
                    try store.writeTile(tile, job: id)
                } catch {
                    logger.error("cannot store a tile (it will be recomputed after a restart)",
                                 metadata: ["job": "\(id)", "task": "\(index)", "error": "\(error)"])
                }
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
        logger.warning("task failed on a worker", metadata: ["worker": "\(worker.name)", "job": "\(job.id)",
                                                             "task": "\(index)", "error": "\(f.message)"])
        attemptFailed(job, index, worker, "\(worker.name): \(f.message)")
    }

    /// Records a failed attempt: the job fails after 3 failures of the task; else the
    /// task is requeued unless another copy of it still runs.
    private func attemptFailed(_ job: CoordinatorJob, _ index: Int, _ worker: Worker, _ message: String) {
        guard job.isActive, removeAttempt(job, index, worker.id) != nil else { return }
        job.failures[index, default: []].append(message)
        if job.failures[index]!.count >= 3 {
            abort(job, state: .failed, message: "task \(index) failed 3 times: "
                  + job.failures[index]!.joined(separator: "; "))
        }
    }

    /// Removes `worker`'s attempt at task `index`; with no copy left the task is
    /// queued again. Returns nil if the worker had no attempt running, else how many
    /// copies still run.
    @discardableResult
    private func removeAttempt(_ job: CoordinatorJob, _ index: Int, _ worker: RoutingID) -> Int? {
        guard case .running(var attempts) = job.states[index], attempts.contains(where: { $0.worker == worker }) else {
            return nil
        }
        attempts.removeAll { $0.worker == worker }
        if attempts.isEmpty {
            job.running -= 1
            job.states[index] = .pending
            job.pending.append(index)
        } else {
            job.states[index] = .running(attempts)
        }
        return attempts.count
    }

    private func requeue(_ ref: Wire.TaskRef, from worker: Worker) {
        worker.inFlight.remove(ref)
        guard let job = jobs[ref.jobID], job.isActive else { return }
        removeAttempt(job, Int(ref.taskID), worker.id)
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

    /// Gives each worker tasks up to its credit: first a copy of an overdue task that
    /// another worker holds (a straggler), then queued tasks, taking jobs in turn.
    private func dispatch(_ socket: borrowing ZMQSocket) {
        let now = monotonicSeconds()
        var overdue: [Overdue] = []
        if now - lastStragglerScan >= 0.1 {
            lastStragglerScan = now
            overdue = overdueTasks(now)
        }
        guard !overdue.isEmpty || jobs.values.contains(where: { $0.isActive && !$0.pending.isEmpty }) else { return }
        var turn = rotation
        for id in workerOrder {
            guard let w = workers[id] else { continue }
            while w.inFlight.count < configuration.credit {
                if let k = overdue.firstIndex(where: { $0.holder != w.id }) {
                    let late = overdue.remove(at: k)
                    guard late.job.isActive, case .running(let attempts) = late.job.states[late.index],
                          attempts.count == 1 else { continue }
                    guard send(late.job, late.index, to: w, socket) else { break }
                    late.job.copiesSent += 1
                    logger.warning("straggler: task overdue, a copy sent to another worker", metadata: [
                        "job": "\(late.job.id)", "task": "\(late.index)",
                        "worker": "\(workers[late.holder]?.name ?? "?")", "copy-to": "\(w.name)",
                        "running": "\(String(format: "%.2f", now - attempts[0].since))s",
                        "deadline": "\(String(format: "%.2f", late.deadline))s"])
                    continue
                }
                let candidates = jobOrder.compactMap { jobs[$0] }.filter { $0.isActive && !$0.pending.isEmpty }
                if candidates.isEmpty { break }
                let job = candidates[turn % candidates.count]
                turn += 1
                let index = job.pending.removeLast()
                guard send(job, index, to: w, socket) else {
                    job.pending.append(index)
                    break
                }
            }
        }
        rotation = turn
    }

    struct Overdue {
        let job: CoordinatorJob
        let index: Int
        let holder: RoutingID
        let deadline: Double
    }

    /// Running tasks with a single copy that have run past their job's deadline, most overdue first.
    private func overdueTasks(_ now: Double) -> [Overdue] {
        var out: [(Overdue, Double)] = []
        for id in jobOrder {
            guard let job = jobs[id], job.isActive, job.running > 0, let limit = job.taskDeadline else { continue }
            for (index, state) in job.states.enumerated() {
                if case .running(let a) = state, a.count == 1, now - a[0].since > limit {
                    out.append((Overdue(job: job, index: index, holder: a[0].worker, deadline: limit),
                                now - a[0].since - limit))
                }
            }
        }
        return out.sorted { $0.1 > $1.1 }.map(\.0)
    }

    /// Sends task `index` of `job` to `w` as a new attempt. False if the send failed
    /// (the task is not dispatched; an unreachable worker is retired).
    private func send(_ job: CoordinatorJob, _ index: Int, to w: Worker, _ socket: borrowing ZMQSocket) -> Bool {
        let attempt = (job.attempts[index] ?? 0) + 1
        guard let spec = job.spec(index, attempt: attempt) else {
            abort(job, state: .failed, message: "task \(index) cannot be expressed on the wire")
            return true
        }
        do {
            try socket.send(.task(spec), to: w.id, flags: .dontWait)
        } catch {
            if (error as? ZMQError) == .hostUnreachable { retire(w, reason: "unreachable") }
            return false
        }
        let now = monotonicSeconds()
        w.lastSent = now
        job.attempts[index] = attempt
        let a = CoordinatorJob.Attempt(worker: w.id, number: attempt, since: now)
        if case .running(let others) = job.states[index] {
            job.states[index] = .running(others + [a])
        } else {
            job.states[index] = .running([a])
            job.running += 1
        }
        w.inFlight.insert(spec.ref)
        return true
    }

    // MARK: Jobs

    func finish(_ job: CoordinatorJob) {
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
                    "tasks": "\(job.tasks.count)", "restored": "\(job.restored)", "computed": "\(job.computed)",
                    "copies": "\(job.copiesSent)", "duplicates": "\(job.duplicatesDropped)",
                    "workers": "\(job.workersUsed.count)", "files": "\(files.count)"])
            case .failure(let error):
                job.state = .failed
                job.message = "writing the outputs failed: \(error)"
                logger.error("job failed", metadata: ["job": "\(id)", "error": "\(error)"])
            }
            persistEnding(job)
        }
    }

    /// Records in the store how the job ended (so a restart does not resume it) and
    /// drops its tiles, which the outputs now hold. Queued after the job's tile writes.
    func persistEnding(_ job: CoordinatorJob) {
        guard persistent else { return }
        let ending = JobEnding(state: job.state, message: job.message, tasks: job.tasks.count,
                               files: job.outputFiles.map { ($0 as NSString).lastPathComponent })
        let (store, logger, id) = (store, logger, job.id)
        storeQueue.async {
            do {
                try store.writeEnding(ending, id)
                try? FileManager.default.removeItem(atPath: store.tilesDirectory(id))
            } catch {
                logger.error("cannot record the job's end in the store (a restart will redo it)",
                             metadata: ["job": "\(id)", "error": "\(error)"])
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
        persistEnding(job)
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
        case .success(.submit):
            if draining {
                reply = .error(message: "the coordinator is shutting down: submit again once it is back")
                break
            }
            guard case .success(.submit(let spec)) = envelope.message else { return }
            do {
                reply = .submitted(jobID: try createJob(spec))
            } catch {
                logger.warning("job refused", metadata: ["error": "\(error)"])
                reply = .error(message: "\(error)")
            }
        case .success(.statusRequest(let id)):
            if let id {
                reply = jobs[id].map { .status($0.status(workers: workers.count)) }
                    ?? archived[id].map { .status($0.status(workers: workers.count)) }
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
            } else if let old = archived[id] {
                reply = .status(old.status(workers: workers.count))
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
        let state: Wire.JobState
        let files: [String]
        if let job = jobs[req.jobID] {
            (state, files) = (job.state, job.outputFiles)
        } else if let old = archived[req.jobID] {
            (state, files) = (old.state, old.outputFiles)
        } else {
            return .error(message: "no job \(req.jobID)")
        }
        guard state == .done else { return .error(message: "job \(req.jobID) is \(state), not done") }
        guard let path = files.first(where: { ($0 as NSString).lastPathComponent == req.fileName }),
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

    /// Stores the job's files (durably, with a persistent store: the job exists once
    /// `submitted` is sent), loads its model and image, plans its tasks.
    private func createJob(_ spec: Wire.JobSpec) throws -> UInt64 {
        let options = try JobOptions(encoded: spec.outputOptions)
        if options.outputDirectory != nil && !configuration.allowLocalPaths {
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
        var imageCheck: (crc: UInt32, bytes: Int) = (0, 0)
        switch spec.image {
        case .path(let path) where configuration.allowLocalPaths && !persistent:
            imagePath = path
            stem = OutputOptions.stem(forInput: path)
        default:
            guard let image = try bytes(spec.image, "image") else { throw ClusterError("empty image") }
            imagePath = dir + "/image.png"
            try DurableFile.write(image.bytes, to: imagePath)
            stem = OutputOptions.stem(forInput: image.name)
            imageCheck = (CRC32.checksum(image.bytes), image.bytes.count)
        }
        if persistent {
            if !bundle.prototxt.isEmpty { try DurableFile.write(bundle.prototxt, to: dir + "/deploy.prototxt") }
            if !bundle.weights.isEmpty { try DurableFile.write(bundle.weights, to: dir + "/weights.caffemodel") }
        }
        let job = try makeJob(id: id, directory: dir, options: options, mode: spec.mode, tile: Int(spec.tileSize),
                              preprocessing: spec.preprocessing, model: bundle, imagePath: imagePath, stem: stem)
        if persistent {
            // Last: a whole entry is one with a record.
            try store.writeRecord(JobRecord(mode: spec.mode, tile: Int(spec.tileSize), stem: stem,
                                            options: spec.outputOptions, preprocessing: spec.preprocessing,
                                            modelDigest: bundle.digest.hex, imageCRC32: imageCheck.crc,
                                            imageBytes: imageCheck.bytes), id)
        }
        register(job)
        logger.info("job started", metadata: ["job": "\(id)", "image": "\(stem)",
                                              "size": "\(job.imageSize.w)×\(job.imageSize.h)",
                                              "mode": "\(job.mode.rawValue)", "tile": "\(job.tile)",
                                              "tasks": "\(job.tasks.count)", "model": "\(bundle.digest.hex.prefix(12))"])
        if job.tasks.isEmpty { finish(job) }
        return id
    }

    /// Plans (or reuses the plan of) the model, reads the image and plans the tasks: a new job,
    /// or one read back from the store.
    func makeJob(id: UInt64, directory dir: String, options: JobOptions, mode wireMode: Wire.Mode, tile: Int,
                 preprocessing: Wire.Preprocessing, model bundle: ModelBundle, imagePath: String,
                 stem: String) throws -> CoordinatorJob {
        let key = bundle.digest.hex + options.engine.encoded.map { String($0) }.joined(separator: ".")
        let plan: ModelPlan
        if let cached = plans[key] {
            plan = cached
        } else {
            plan = try options.engine.plan(bundle).plan
            if plans.count >= 4 { plans.removeAll() }
            plans[key] = plan
        }
        let image = try PNGReader.read(path: imagePath)
        let pre = try TaskCodec.preprocessing(preprocessing).validated(channels: plan.inputChannels)
        _ = try ChannelMapping.resolve(imageChannels: image.channels, netChannels: plan.inputChannels,
                                       order: pre.channelOrder)
        let mode = TaskCodec.mode(wireMode)
        let tasks = TilePlan.tasks(mode: mode, image: Size2(image.height, image.width), tile: tile,
                                   geometry: plan.tasks)
        let limit = WireLimits.default.maxPixelsPerTask
        if let big = tasks.first(where: { let r = plan.tasks.inputRect($0); return r.height * r.width > limit }) {
            throw ClusterError("tile \(tile) is too large: task \(big) needs more than \(limit) input pixels")
        }
        return CoordinatorJob(id: id, options: options, mode: mode, tile: tile, model: bundle,
                              plan: plan, preprocessing: TaskCodec.preprocessing(pre), image: image, stem: stem,
                              directory: dir, outputDirectory: options.outputDirectory ?? dir + "/out", tasks: tasks)
    }

    func register(_ job: CoordinatorJob) {
        jobs[job.id] = job
        jobOrder.append(job.id)
    }
}
