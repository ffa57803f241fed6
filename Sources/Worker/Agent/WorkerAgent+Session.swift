import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraWire

/// One registration with the coordinator, on the socket thread: connect, hello, then
/// serve (pass tasks to the compute thread, return its outcomes, fetch models,
/// heartbeat) until the coordinator goes silent or disconnects us, or `stop()`.
extension WorkerAgent {
    /// What one session keeps; a new session starts from nothing.
    struct Session {
        var heartbeat: Heartbeat
        var helloSent = false
        var welcomed = false
        /// Tasks the coordinator may have in flight here (its welcome's credit).
        var credit = 1
        var lastHeard = monotonicSeconds()
        var lastSent = 0.0
        /// Models received this session, by digest (the 4 used last).
        var models = LRUCache<Wire.ModelDigest, ModelBundle>(capacity: 4)
        /// Tasks waiting for their model, asked for once per digest.
        var parked: [Wire.ModelDigest: [WorkItem]] = [:]
        /// Messages for the coordinator, in order, that its queue has not taken yet (large ones leave as
        /// pieces), and the pieces of the message it is sending (`Wire.Piece`).
        var outbox = WireOutbox()
        var pieces = PieceAssembler()
        var rejects: RateLimitedLog
        /// The socket's traffic already counted in the metrics.
        var trafficSeen: (UInt64, UInt64) = (0, 0)

        /// Sends the hello without blocking; false when it could not go out (not connected yet).
        mutating func trySend(_ m: WireMessage, on socket: borrowing ZMQSocket) -> Bool {
            do {
                try socket.send(m, flags: .dontWait)
                lastSent = monotonicSeconds()
                return true
            } catch {
                return false
            }
        }

        /// Queues `m` behind what waits and sends what the socket takes.
        mutating func send(_ m: WireMessage, on socket: borrowing ZMQSocket) {
            outbox.append(m)
            pump(socket)
        }

        /// Sends what waits, as far as the socket takes it without blocking (the rest goes at the next turn).
        mutating func pump(_ socket: borrowing ZMQSocket) {
            guard !outbox.isEmpty, let sent = try? outbox.pump(socket), sent > 0 else { return }
            lastSent = monotonicSeconds()
        }
    }

    /// How a session ended: after the coordinator answered, with no answer, or with its refusal of this key.
    enum SessionEnd { case heardBack, noAnswer, refused }

    /// One registration: connect, hello, serve until the coordinator goes silent or
    /// disconnects us. Returns whether the coordinator ever answered, or refused the handshake.
    ///
    /// The DEALER lives in a context of its own, terminated when the session ends:
    /// `zmq_ctx_term` then waits (up to the linger) until the goodbye has left. The
    /// agent's context cannot do that: the compute thread, possibly mid-task, keeps a
    /// socket in it, so it is never terminated before the process exits, and a goodbye
    /// still queued then was lost (the coordinator saw the pipeline go silent instead).
    func session(_ wake: borrowing ZMQSocket) throws -> SessionEnd {
        let link = try ZMQContext()
        let socket = try ZMQSocket(link, type: .dealer)
        try socket.applyTesseraDefaults(maxMessageSize: Int64(Wire.linkFrameBytes))
        // 32 messages (4 MiB of pieces) in libzmq's queue: the rest waits in the outbox, where a revoke can still take
        // a result back (libzmq's default of 1000 took 64 MB at once, which then crossed a slow uplink: audit 43 F3).
        try socket.set(.sendHighWaterMark, 32)
        try secure(socket)
        // Each session its own id (a ROUTER refuses an id still in use), naming this process (`WorkerIdentity`).
        let number = UInt32(truncatingIfNeeded: shared.withLock { $0.generation } + 1)
        try socket.set(.routingID, WorkerIdentity.routingID(process: processToken, session: number))
        var handshakes = try HandshakeWatch(socket, context: link, curve: configuration.curve != nil)
        try socket.connect(configuration.coordinator)
        startGeneration()
        defer { registered(false) }

        var s = Session(heartbeat: configuration.heartbeat, rejects: RateLimitedLog(logger: logger))
        let hello = WireMessage.hello(
            Wire.Hello(
                workerName: configuration.name, threads: UInt32(configuration.threads),
                memoryBytes: ProcessInfo.processInfo.physicalMemory, device: "\(configuration.device)"))
        var poller = ZMQPoller()
        let si = poller.add(socket)
        let wi = poller.add(wake)
        while !shouldStop {
            vitals.tick()
            if !s.helloSent {
                s.helloSent = s.trySend(hello, on: socket)
                if !s.helloSent {
                    // Not connected yet: nothing else may go out before the hello.
                    handshakes.check(logger)
                    usleep(10_000)
                    if monotonicSeconds() - s.lastHeard > s.heartbeat.deadline {
                        return handshakes.refused ? .refused : .noAnswer
                    }
                    continue
                }
            }
            // What the socket did not take is tried again soon.
            try poller.poll(timeoutMilliseconds: s.outbox.isEmpty ? min(100, s.heartbeat.intervalMilliseconds) : 2)
            if poller.isReadable(wi) { while try wake.receiveIfAvailable() != nil {} }
            sendOutcomes(socket, &s)
            if poller.isReadable(si), try !receiveAll(socket, &s) { return .heardBack }
            s.trafficSeen = metrics.traffic(socket.traffic, since: s.trafficSeen)
            let now = monotonicSeconds()
            // (While anything waits, what is sent proves this side alive.)
            if now - s.lastSent >= s.heartbeat.interval, s.outbox.isEmpty { s.send(.heartbeat, on: socket) }
            if now - s.lastHeard > s.heartbeat.deadline {
                logger.warning(
                    "coordinator silent", metadata: ["seconds": "\(String(format: "%.1f", now - s.lastHeard))"])
                return s.welcomed ? .heardBack : handshakes.refused ? .refused : .noAnswer
            }
        }
        leave(socket, &s)
        return .heardBack
    }

    /// Registration as `/readyz` and the metrics see it.
    private func registered(_ yes: Bool) {
        metrics.registered(yes)
        vitals.setReady(yes, yes ? "registered with \(configuration.coordinator)" : "not registered with a coordinator")
    }

    /// A new session's generation: what is queued or in the outbox belonged to the
    /// last coordinator, which requeues it itself.
    private func startGeneration() {
        shared.withLock { s in
            s.generation += 1
            s.queue.removeAll()
            s.outbox.removeAll()
        }
    }

    /// Queues the compute thread's outcomes, in order, and sends what waits as far as the socket takes it.
    private func sendOutcomes(_ socket: borrowing ZMQSocket, _ s: inout Session) {
        takeOutcomes(&s)
        s.pump(socket)
    }

    /// Moves the compute thread's outcomes to the outbox, in order.
    private func takeOutcomes(_ s: inout Session) {
        let outcomes = shared.withLock { shared in
            defer { shared.outbox.removeAll() }
            return shared.outbox
        }
        for outcome in outcomes {
            switch outcome {
            case .result(let r): s.outbox.append(.result(r))
            case .receipt(let r): s.outbox.append(.receipt(r))
            case .failure(let f): s.outbox.append(.taskFailed(f))
            }
        }
    }

    /// Handles every message waiting on the socket; false once the coordinator
    /// disconnected us (the session ends).
    private func receiveAll(_ socket: borrowing ZMQSocket, _ s: inout Session) throws -> Bool {
        while let envelope = try socket.receiveWire(dontWait: true) {
            var received = envelope.message
            if case .success(.piece(let piece)) = received {
                // A piece of a larger message (a task, a model): it proves the coordinator alive while it crosses.
                s.lastHeard = monotonicSeconds()
                if s.pieces.inProgress, piece.offset == 0 { cutShort(socket, &s) }
                guard case .complete(let whole) = s.pieces.add(piece, limits: .default) else { continue }
                received = whole
            } else if s.pieces.inProgress {
                cutShort(socket, &s)
            }
            let message: WireMessage
            switch received {
            case .success(let m): message = m
            case .failure(let e):
                if e.kind == .unsupportedVersion {
                    // Not a bad message: another release. Retrying cannot help; say what to do.
                    throw ClusterError(
                        "the coordinator at \(configuration.coordinator) runs another Tessera release (\(e.reason)): "
                            + "run the same release on the coordinator and its workers "
                            + "(this worker: \(TesseraVersion.description))")
                }
                s.rejects.warning(
                    "malformed", "rejected a malformed message from the coordinator",
                    metadata: ["reason": "\(e)"])
                if let t = e.task {
                    // A task this worker cannot read still gets an answer, or its job would wait forever.
                    let failure = Wire.TaskFailure(
                        jobID: t.jobID, taskID: t.taskID, attempt: t.attempt,
                        message: Wire.TaskFailure.unreadable + "\(e)")
                    s.send(.taskFailed(failure), on: socket)
                }
                continue
            }
            s.lastHeard = monotonicSeconds()
            if case .disconnect(let reason) = message, reason == Wire.clientEndpointRefusal {
                // Retrying cannot help: the address is wrong.
                throw ClusterError("\(configuration.coordinator): \(reason)")
            }
            guard handle(message, socket, &s) else { return false }
        }
        return true
    }

    /// The coordinator began another message before the last piece of the one in progress (it takes back a
    /// revoked job's task part-way): the pieces are dropped, and a task among them is reported failed, so a
    /// broken peer's cut cannot leave it waiting on this worker (audit 43 F5; for a revoked job the report is
    /// dropped).
    private func cutShort(_ socket: borrowing ZMQSocket, _ s: inout Session) {
        let bytes = s.pieces.bytesReceived
        guard let t = WireMessage.taskIDs(s.pieces.abandon()) else {
            logger.debug(
                "a message from the coordinator was cut short by another: its pieces are discarded",
                metadata: ["bytes": "\(bytes)"])
            return
        }
        logger.debug(
            "a task from the coordinator was cut short by another message: reported failed",
            metadata: ["job": "\(t.jobID)", "task": "\(t.taskID)", "bytes": "\(bytes)"])
        let failure = Wire.TaskFailure(
            jobID: t.jobID, taskID: t.taskID, attempt: t.attempt,
            message: Wire.TaskFailure.unreadable + "its pieces were cut short after \(bytes) bytes")
        s.send(.taskFailed(failure), on: socket)
    }

    /// One message from the coordinator; false when it disconnected us.
    private func handle(_ message: WireMessage, _ socket: borrowing ZMQSocket, _ s: inout Session) -> Bool {
        switch message {
        case .welcome(let w):
            s.heartbeat = Heartbeat(
                intervalMilliseconds: Int(w.heartbeatIntervalMilliseconds),
                liveness: Int(w.heartbeatLiveness))
            if !s.welcomed {
                logger.info(
                    "registered with the coordinator",
                    metadata: [
                        "coordinator": "\(configuration.coordinator)",
                        "credit": "\(w.maxTasksInFlight)",
                    ])
                registered(true)
            }
            s.welcomed = true
            s.credit = max(1, Int(w.maxTasksInFlight))
        case .heartbeat:
            break
        case .task(let spec):
            take(.pixels(spec), socket, &s)
        case .tileTask(let spec):
            take(.tile(spec), socket, &s)
        case .modelData(let data):
            receiveModel(data, &s)
        case .revoke(let job):
            revoke(job, socket, &s)
        case .disconnect(let reason):
            logger.warning("coordinator disconnected us", metadata: ["reason": "\(reason)"])
            return false
        case .error(let text):
            logger.warning("coordinator error", metadata: ["message": "\(text)"])
            failParked(text, socket, &s)
        default:
            s.rejects.warning(
                "unexpected", "unexpected message from the coordinator",
                metadata: ["type": "\(message.type)"])
        }
        return true
    }

    /// Queues a task whose model is here, or parks it and asks for the model once. A coordinator sends
    /// no more than its credit: tasks past twice that are failed back at once, not held (hostile-input
    /// audit: a fake coordinator's 60 tasks of 50 MB grew a worker to 3 GB).
    private func take(_ item: WorkItem, _ socket: borrowing ZMQSocket, _ s: inout Session) {
        let held =
            shared.withLock { $0.queue.count + ($0.computing == nil ? 0 : 1) }
            + s.parked.values.reduce(0) { $0 + $1.count }
        if held >= 2 * s.credit + 2 {
            s.send(
                .taskFailed(
                    item.failure("the worker holds \(held) tasks already, past its credit of \(s.credit): refused")),
                on: socket)
            s.rejects.warning(
                "credit", "a task past this worker's credit refused",
                metadata: ["held": "\(held)", "credit": "\(s.credit)"])
            return
        }
        let digest = item.modelDigest
        if let bundle = s.models.get(digest) {
            enqueue(item, bundle)
        } else {
            if s.parked[digest] == nil { s.send(.modelRequest(digest), on: socket) }
            s.parked[digest, default: []].append(item)
        }
    }

    /// Keeps a model whose bytes match its digest and queues the tasks parked for it.
    private func receiveModel(_ data: Wire.ModelData, _ s: inout Session) {
        let bundle = ModelBundle(prototxt: data.prototxt, weights: data.weights)
        guard bundle.digest == data.digest else {
            s.rejects.warning(
                "digest", "model data does not match its digest: ignored",
                metadata: ["digest": "\(data.digest)"])
            return
        }
        s.models.insert(bundle, for: data.digest)
        logger.info(
            "model received",
            metadata: [
                "digest": "\(data.digest.hex.prefix(12))",
                "bytes": "\(data.prototxt.count + data.weights.count)",
            ])
        for spec in s.parked.removeValue(forKey: data.digest) ?? [] { enqueue(spec, bundle) }
    }

    /// A model nobody serves: fail the tasks parked for it so they are not lost silently. Only that model's
    /// (the coordinator's error names its digest): every parked task of every model was failed, so a job that
    /// ended while a worker asked for its model charged failures to other jobs' tasks (concurrency audit 42 F3).
    /// An error naming no parked model leaves them, unless it is a model refusal that names none.
    private func failParked(_ text: String, _ socket: borrowing ZMQSocket, _ s: inout Session) {
        var digests = s.parked.keys.filter { text.contains($0.hex) }
        if digests.isEmpty && text.hasPrefix("no active job uses model") { digests = Array(s.parked.keys) }
        for digest in digests {
            for item in s.parked.removeValue(forKey: digest) ?? [] {
                s.send(.taskFailed(item.failure(text)), on: socket)
            }
        }
    }

    /// The job ended: its tasks that have not started are dropped and reported failed, which frees their
    /// places on the coordinator (it held them until reported); the one being computed finishes.
    private func revoke(_ job: UInt64, _ socket: borrowing ZMQSocket, _ s: inout Session) {
        var dropped = shared.withLock { sh in
            defer { sh.queue.removeAll { $0.0.ref.jobID == job } }
            return sh.queue.filter { $0.0.ref.jobID == job }.map(\.0)
        }
        for (digest, items) in s.parked {
            // The model's request stays answered by an empty list: not asked for again.
            dropped += items.filter { $0.ref.jobID == job }
            s.parked[digest] = items.filter { $0.ref.jobID != job }
        }
        // Outcomes of the job not sent yet become short reports (a slow uplink went on carrying a cancelled job's
        // results, and the coordinator held the worker's credit for them: audit 43 F3).
        takeOutcomes(&s)
        // One part-way out too: the report that follows tells the coordinator to drop its pieces.
        let unsent = s.outbox.removeUnsent(partlySent: true) { subject in
            if case .task(let ref, _) = subject { ref.jobID == job } else { false }
        }
        guard !dropped.isEmpty || !unsent.isEmpty else { return }
        for item in dropped { s.outbox.append(.taskFailed(item.failure(Wire.TaskFailure.revoked))) }
        for case .task(let ref, let attempt) in unsent {
            s.outbox.append(
                .taskFailed(
                    Wire.TaskFailure(
                        jobID: ref.jobID, taskID: ref.taskID, attempt: attempt, message: Wire.TaskFailure.revoked)))
        }
        s.pump(socket)
        logger.info(
            "tasks of an ended job dropped",
            metadata: ["job": "\(job)", "tasks": "\(dropped.count)", "outcomes": "\(unsent.count)"])
    }

    /// Leaving: return what is queued or running so the coordinator requeues it now.
    private func leave(_ socket: borrowing ZMQSocket, _ s: inout Session) {
        var refs = shared.withLock { s in
            defer { s.queue.removeAll() }
            return s.queue.map { $0.0.ref } + (s.computing.map { [$0] } ?? [])
        }
        refs += s.parked.values.flatMap { $0.map(\.ref) }
        s.send(.goodbye(refs), on: socket)
        // Behind the rest of a large result crossing a slow link, the goodbye waits its turn (up to the linger).
        let until = monotonicSeconds() + Double(ZMQSocket.defaultLinger) / 1000
        while !s.outbox.isEmpty, monotonicSeconds() < until {
            usleep(2_000)
            s.pump(socket)
        }
        logger.info("worker stopping", metadata: ["tasks": "\(tasksDone)", "returned": "\(refs.count)"])
    }
}
