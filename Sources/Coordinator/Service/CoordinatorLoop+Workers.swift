import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraWire

/// The worker endpoint: each message checked and routed (results in `+Results`, failures in `+Failures`),
/// registration, model requests and goodbyes. The links themselves (outboxes, heartbeats, retirement of silent
/// or departing workers, whose tasks go back to the queue) are in `+WorkerLinks`.
extension CoordinatorLoop {
    func handleWorker(_ envelope: WireEnvelope, _ socket: borrowing ZMQSocket) {
        guard let peer = envelope.peer else { return }
        var message: WireMessage
        switch envelope.message {
        case .success(let m): message = m
        case .failure(let error):
            rejectMalformed(error, peer: peer, envelope, socket)
            return
        }
        if let key = envelope.userID, let check = keyStillAuthorized, !check(key, envelope.curveKey, true) {
            // Revoked while connected: its tasks go to others, and it is told to go (it reconnects, and
            // the handshake refuses the key).
            rejects.warning(
                "revoked-key", "refused a worker whose key was revoked while it was connected",
                metadata: ["key": "\(key)", "address": "\(envelope.peerAddress ?? "?")", "type": "\(message.type)"])
            if let worker = workers[peer] { retire(worker, reason: "its key \(key) was revoked") }
            _ = try? socket.send(.disconnect(reason: "key \(key) revoked"), to: peer, flags: .dontWait)
            return
        }
        if case .hello(let hello) = message {
            register(hello, peer: peer, key: envelope.userID, socket)
            return
        }
        guard let worker = workers[peer] else {
            // A worker this coordinator already let go says goodbye (the end of every multi-worker `run`
            // warned of it: Caffe audit): it is leaving, nothing to ask of it.
            if case .goodbye = message {
                logger.debug(
                    "goodbye from a worker not registered (any more)",
                    metadata: ["peer": "\(String(peer.description.prefix(16)))"])
                return
            }
            // A stranger, or a worker this coordinator forgot (restart, declared dead): make it register again.
            rejects.warning(
                "unregistered", "message from an unregistered worker: asked it to say hello",
                metadata: ["peer": "\(String(peer.description.prefix(16)))", "type": "\(message.type)"])
            _ = try? socket.send(.disconnect(reason: "unknown worker: say hello"), to: peer, flags: .dontWait)
            return
        }
        worker.lastHeard = monotonicSeconds()
        if case .piece(let piece) = message {
            // A piece of a larger message (a result): it proves the worker alive while the message crosses.
            switch worker.pieces.add(piece, limits: workerLimits, admit: { admits($0, from: worker) }) {
            case .incomplete: return
            case .complete(.success(let whole)): message = whole
            case .complete(.failure(let error)):
                rejectMalformed(error, peer: peer, envelope, socket)
                return
            case .discarded(let header, let bytes):
                dropUnasked(header, bytes: bytes, from: worker, peer: peer, envelope, socket)
                return
            }
        } else if worker.pieces.inProgress {
            // It abandoned a message part-way (its job was revoked): the pieces held are dropped.
            logger.debug(
                "a worker's message was cut short by another: its pieces are discarded",
                metadata: [
                    "worker": "\(worker.name)", "bytes": "\(worker.pieces.bytesReceived)", "type": "\(message.type)",
                ])
            worker.pieces.reset()
        }
        switch message {
        case .heartbeat:
            break
        case .result(let result):
            handleResult(result, from: worker)
        case .receipt(let receipt):
            handleReceipt(receipt, from: worker)
        case .taskFailed(let failure):
            handleFailure(failure, from: worker)
        case .modelRequest(let digest):
            serveModel(digest, to: worker, socket)
        case .goodbye(let refs):
            for ref in refs where worker.inFlight.contains(ref) { requeue(ref, from: worker) }
            retire(worker, reason: "said goodbye")
        default:
            rejects.warning(
                "unexpected", "unexpected message on the worker endpoint",
                metadata: ["worker": "\(worker.name)", "type": "\(message.type)"])
        }
    }

    /// The most bytes of a message a worker sends unasked: every message but a result is far smaller (a
    /// receipt lists at most 64 chunks, a failure report's text is at most 64 KiB).
    static let unaskedMessageBytes: UInt64 = 1 << 20

    /// Whether the coordinator keeps the message whose first piece this is: a result of a task this worker
    /// holds, of the shape that task gives, or another message of at most `unaskedMessageBytes`. The pieces of
    /// any other pass through (`dropUnasked` at the last), so what a worker makes the coordinator hold is one
    /// result it asked for (audit 43 F4: four fake workers, each part-way through a 256 MiB message, held 838 MB).
    func admits(_ first: Wire.Piece, from worker: Worker) -> Bool {
        if first.messageBytes <= Self.unaskedMessageBytes { return true }
        guard first.frameSizes.count == 2, first.frameSizes[0] <= UInt64(first.bytes.count),
            let r = WireMessage.resultFields(Array(first.bytes.prefix(Int(first.frameSizes[0])))),
            worker.inFlight.contains(Wire.TaskRef(jobID: r.jobID, taskID: r.taskID)),
            let job = jobs[r.jobID], job.shared == nil, r.taskID < UInt64(job.tasks.count)
        else { return false }
        let size = job.plan.tasks.outputSize(job.tasks[Int(r.taskID)])
        return Int(r.classes) == job.resultClasses && Int(r.height) == size.h && Int(r.width) == size.w
    }

    /// The last piece of a message `admits` did not keep: a result the coordinator drops (`runningAttempt`: an
    /// ended job's, a task this worker does not hold), or fails (values for a shared-storage task, a shape its
    /// task does not give), as `handleResult` would; anything else is malformed.
    private func dropUnasked(
        _ header: [UInt8], bytes: UInt64, from worker: Worker, peer: RoutingID, _ envelope: WireEnvelope,
        _ socket: borrowing ZMQSocket
    ) {
        guard let r = WireMessage.resultFields(header) else {
            let what = "a \(bytes)-byte message that is not a result (only results exceed \(Self.unaskedMessageBytes))"
            rejectMalformed(WireError(.limitExceeded, what), peer: peer, envelope, socket)
            return
        }
        guard
            let (job, index, _) = runningAttempt(
                of: Wire.TaskRef(jobID: r.jobID, taskID: r.taskID), r.attempt, from: worker)
        else { return }
        let got = "\(r.classes)×\(r.height)×\(r.width)"
        rejects.warning(
            "bad-result", "rejected a result its task does not give",
            metadata: [
                "worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)", "got": "\(got)",
                "shared": "\(job.shared != nil)",
            ])
        attemptFailed(job, index, worker, "\(worker.name): a \(got) result its task does not give")
    }

    /// A message from a worker endpoint peer that does not decode, or pieces that do not make one.
    private func rejectMalformed(
        _ error: WireError, peer: RoutingID, _ envelope: WireEnvelope, _ socket: borrowing ZMQSocket
    ) {
        rejects.warning(
            "malformed-\(error.kind)", "rejected a malformed message from a worker endpoint peer",
            metadata: [
                "peer": "\(String(peer.description.prefix(16)))", "address": "\(envelope.peerAddress ?? "?")",
                "key": "\(envelope.userID ?? "none")", "reason": "\(error)",
            ])
        // A registered worker's message that does not decode (a bug, another build, damage on the way):
        // a lost result would leave its task waiting on a live worker for good (hostile-input audit 27:
        // the job "waited for workers"). Its tasks go back to the queue, and it is asked to register again.
        if let worker = workers[peer] {
            // Counted against the task it was computing, as a lost worker's is: one that sends nothing but
            // bad results fails the job after --max-task-losses, instead of re-registering forever (audit 29).
            retire(worker, reason: "it sent a malformed message (\(error.kind))", lost: true)
            _ = try? socket.send(.disconnect(reason: "unknown worker: say hello"), to: peer, flags: .dontWait)
        } else if error.kind == .unsupportedVersion {
            // A worker of another release: answered in this release's protocol, which it cannot read either,
            // so it stops saying so (verification audit 34 F2: unanswered, it retried its hello for good and
            // the job waited for workers).
            let reason = "this coordinator runs \(TesseraVersion.description): run the same release on its workers"
            _ = try? socket.send(.disconnect(reason: reason), to: peer, flags: .dontWait)
        }
    }

    /// A hello registers the peer as a new worker (one that says hello again starts
    /// over: its tasks are requeued) and welcomes it with the heartbeat and credit.
    private func register(_ hello: Wire.Hello, peer: RoutingID, key: String?, _ socket: borrowing ZMQSocket) {
        if let old = workers[peer] { retire(old, reason: "said hello again") }
        if let process = WorkerIdentity.process(of: peer) { returned(process, key: key) }
        // A peer's name and device go into logs, status and metrics: control characters (a newline forged
        // whole log lines, escapes reached the operator's terminal) become '?' (hostile-input audit).
        let given = hello.workerName.printable(limit: 128), device = hello.device.printable(limit: 128)
        // Two workers of one name merged in status and in the metrics (operator audit): the second is NAME#2.
        // The names taken are looked up in a set: scanning every worker per candidate stalled the loop
        // when a thousand peers said hello with one name (hostile-input audit).
        var name = given
        let taken = Set(workers.values.map(\.name))
        if taken.contains(name) {
            var n = 2
            while taken.contains("\(given)#\(n)") { n += 1 }
            name = "\(given)#\(n)"
            logger.warning(
                "a worker of this name is connected already: this one is named apart (give each worker its own --name)",
                metadata: ["worker": "\(given)", "named": "\(name)", "key": "\(key ?? "none")"])
        }
        let w = Worker(id: peer, name: name, threads: hello.threads, key: key)
        workers[peer] = w
        workerOrder.append(peer)
        logger.info(
            "worker joined",
            metadata: [
                "worker": "\(name)", "key": "\(key ?? "none")", "threads": "\(hello.threads)",
                "device": "\(device)", "workers": "\(workers.count)",
            ])
        send(
            .welcome(
                Wire.Welcome(
                    heartbeatIntervalMilliseconds: UInt32(configuration.heartbeat.intervalMilliseconds),
                    heartbeatLiveness: UInt32(configuration.heartbeat.liveness),
                    maxTasksInFlight: UInt32(configuration.credit))), to: w, socket)
    }

    /// A new session of the worker process `process`. Its earlier session, if still listed (the worker gave it
    /// up first: its host paused, its link dropped), is retired: the worker dropped its tasks, and it keeps its
    /// name (audit 46 F6: it became NAME#2 for good). The losses charged to it are withdrawn: a worker that
    /// comes back was not killed by its task (audit 46 F3: one worker paused three times failed a job). At most
    /// `maxTaskLosses` per task, so a task that loses a worker that always comes back (its link too slow for
    /// it, its host thrashing) still fails its job, after twice the losses (audit 47 F1: it looped for good).
    /// Only a session of the same key counts (a key cannot end or clear another's workers).
    private func returned(_ process: UInt64, key: String?) {
        for old in workers.values where old.process == process && old.key == key {
            retire(old, reason: "its new session replaces this one (the same worker process joined again)")
        }
        var withdrawn = 0
        for job in jobs.values where job.isActive && !job.losses.isEmpty {
            for (index, losses) in job.losses {
                var kept: [CoordinatorJob.Loss] = []
                for loss in losses {
                    if loss.process == process, loss.key == key,
                        job.withdrawnLosses[index, default: 0] < configuration.maxTaskLosses
                    {
                        job.withdrawnLosses[index, default: 0] += 1
                        withdrawn += 1
                    } else {
                        kept.append(loss)
                    }
                }
                job.losses[index] = kept.isEmpty ? nil : kept
            }
        }
        if withdrawn > 0 {
            logger.info(
                "a worker counted lost joined again: its losses are withdrawn",
                metadata: ["losses": "\(withdrawn)"])
        }
    }

    /// Sends the model files of an active job with that digest; only those are served.
    private func serveModel(_ digest: Wire.ModelDigest, to worker: Worker, _ socket: borrowing ZMQSocket) {
        if let job = jobs.values.first(where: { $0.model.digest == digest && $0.isActive }) {
            send(
                .modelData(Wire.ModelData(digest: digest, prototxt: job.model.prototxt, weights: job.model.weights)),
                to: worker, socket)
        } else {
            rejects.warning(
                "model", "a worker asked for a model no active job uses",
                metadata: ["worker": "\(worker.name)", "digest": "\(digest)"])
            send(.error(message: "no active job uses model \(digest)"), to: worker, socket)
        }
    }
}
