import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraWire

/// The worker endpoint: registration, results and failures (checked against what was
/// asked of whom), model requests, goodbyes, heartbeats both ways and the retirement
/// of silent or departing workers, whose tasks go back to the queue.
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

    /// `text` with control characters replaced by '?', at most `limit` characters (`String.printable`).
    static func printable(_ text: String, limit: Int) -> String { text.printable(limit: limit) }

    /// A hello registers the peer as a new worker (one that says hello again starts
    /// over: its tasks are requeued) and welcomes it with the heartbeat and credit.
    private func register(_ hello: Wire.Hello, peer: RoutingID, key: String?, _ socket: borrowing ZMQSocket) {
        if let old = workers[peer] { retire(old, reason: "said hello again") }
        if let process = WorkerIdentity.process(of: peer) { returned(process, key: key) }
        // A peer's name and device go into logs, status and metrics: control characters (a newline forged
        // whole log lines, escapes reached the operator's terminal) become '?' (hostile-input audit).
        let given = Self.printable(hello.workerName, limit: 128), device = Self.printable(hello.device, limit: 128)
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

    /// Checks a result against what was asked of whom, then places it (first result wins).
    func handleResult(_ r: Wire.TaskResult, from worker: Worker) {
        guard
            let (job, index, mine) = runningAttempt(
                of: Wire.TaskRef(jobID: r.jobID, taskID: r.taskID), r.attempt, from: worker)
        else { return }
        guard job.shared == nil else {
            attemptFailed(job, index, worker, "\(worker.name): sent values for a shared-storage task")
            return
        }
        let task = job.tasks[index]
        let size = job.plan.tasks.outputSize(task)
        guard Int(r.classes) == job.resultClasses, Int(r.height) == size.h, Int(r.width) == size.w else {
            rejects.warning(
                "bad-result", "rejected a result of the wrong shape",
                metadata: [
                    "worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)",
                    "got": "\(r.classes)×\(r.height)×\(r.width)",
                    "expected": "\(job.resultClasses)×\(size.h)×\(size.w)",
                ])
            attemptFailed(job, index, worker, "\(worker.name): result of the wrong shape")
            return
        }
        if let bad = Self.impossibleValue(
            r.values, probabilities: job.plan.classifier.layers.last?.op.isProbability ?? false)
        {
            // A worker's engine gives finite values, in [0, 1] after a softmax or sigmoid: anything else is a
            // broken or hostile worker (operator audit: all-2.0 and all-NaN maps ended "done").
            rejects.warning(
                "bad-result", "rejected a result holding values no net of this job gives",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)", "value": "\(bad)"])
            attemptFailed(job, index, worker, "\(worker.name): result holds \(bad), which this net cannot give")
            return
        }
        markDone(job, index, mine, by: worker)
        if let tile = job.map?.add(index, task, values: r.values, rows: Int(r.height), cols: Int(r.width)) {
            writeTile(tile, of: job)
        }
        if job.done == job.tasks.count && job.unwritten == 0 && job.heldTiles.isEmpty { finish(job) }
    }

    /// The first value of a result no engine gives: NaN or infinite, or, where the net ends in a softmax or
    /// sigmoid, outside [0, 1] (beyond float rounding); nil when all are possible.
    static func impossibleValue(_ values: [Float], probabilities: Bool) -> Float? {
        let (low, high): (Float, Float) = probabilities ? (-1e-5, 1 + 1e-5) : (-.infinity, .infinity)
        for v in values where !v.isFinite || v < low || v > high { return v }
        return nil
    }

    /// Records task `index` as done by `worker`. The other copy, if any, stays in its
    /// worker's in-flight set: its result will be recognised as a duplicate, and the
    /// worker gets no new task while still busy.
    func markDone(_ job: CoordinatorJob, _ index: Int, _ mine: CoordinatorJob.Attempt, by worker: Worker) {
        let now = monotonicSeconds()
        job.recordTaskTime(now - mine.since, policy: configuration.stragglers)
        // Its work: from when the worker began it (after its task before, if any) to now. What the job and its
        // key were charged for it is corrected by that (`FairShare`).
        let seconds = now - max(mine.since, worker.lastDone)
        worker.lastDone = now
        let rect = job.tasks[index].rect
        let perPixel = seconds / Double(max(1, rect.height * rect.width))
        job.secondsPerPixel = job.secondsPerPixel.map { 0.75 * $0 + 0.25 * perPixel } ?? perPixel
        lastSecondsPerPixel = perPixel
        job.given += seconds - mine.estimate
        fairShare.charge(job.owner ?? "", seconds - mine.estimate)
        job.running -= 1
        job.states[index] = .done
        job.done += 1
        job.computed += 1
        worker.tasksDone += 1
        // Map pixels the task produced: a whole tile in a shared-storage job, its outputs otherwise.
        let size =
            job.shared != nil
            ? Size2(job.tasks[index].rect.height, job.tasks[index].rect.width)
            : job.plan.tasks.outputSize(job.tasks[index])
        metrics.taskDone(by: worker.name, since: mine.since, pixels: size.h * size.w)
        job.rate.record(at: now, pixels: size.h * size.w)
        clusterRate.record(at: now, pixels: size.h * size.w)
        job.workersUsed.insert(worker.name)
    }

    /// The job, task index and attempt a result answers: nil (logged) for a result of
    /// an unknown job or task, from a worker that was not assigned it, or for a task
    /// that no longer runs there (a duplicate of a done task, or a late one). The task
    /// leaves the worker's in-flight set once it was assigned there.
    func runningAttempt(
        of ref: Wire.TaskRef, _ attempt: UInt32,
        from worker: Worker
    ) -> (CoordinatorJob, Int, CoordinatorJob.Attempt)? {
        let r = (jobID: ref.jobID, taskID: ref.taskID, attempt: attempt)
        guard let job = jobs[r.jobID] else {
            if isArchived(r.jobID) || worker.inFlight.contains(ref) {
                // Ended a while ago (`archiveEndedJobs`), or removed by retention, while this worker still computed
                // the task: its slot is free again (verification audit 34 F1: a result of a removed job kept it taken,
                // and the worker got no task again).
                worker.inFlight.remove(ref)
                logger.debug("result for an ended job dropped", metadata: ["job": "\(r.jobID)", "task": "\(r.taskID)"])
                return nil
            }
            rejects.warning(
                "unknown-task", "rejected a result for an unknown job",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            return nil
        }
        guard r.taskID < UInt64(job.tasks.count) else {
            rejects.warning(
                "unknown-task", "rejected a result for an unknown task",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            return nil
        }
        guard job.isActive || worker.inFlight.contains(ref) else {
            // Cancelled or failed meanwhile: the job's tasks were taken back, so workers
            // still computing them are not misbehaving.
            logger.debug("result for an ended job dropped", metadata: ["job": "\(r.jobID)", "task": "\(r.taskID)"])
            return nil
        }
        guard worker.inFlight.contains(ref) else {
            rejects.warning(
                "not-assigned", "rejected a result from a worker that was not assigned the task",
                metadata: ["worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)"])
            return nil
        }
        worker.inFlight.remove(ref)
        let index = Int(r.taskID)
        guard job.isActive, case .running(let attempts) = job.states[index],
            let mine = attempts.first(where: { $0.worker == worker.id })
        else {
            if job.states[index] == .done {
                job.duplicatesDropped += 1
                logger.info(
                    "duplicate result dropped: the task was already done (first result wins)",
                    metadata: [
                        "worker": "\(worker.name)", "job": "\(r.jobID)", "task": "\(r.taskID)",
                        "attempt": "\(r.attempt)",
                    ])
            } else {
                logger.debug("late result dropped", metadata: ["job": "\(r.jobID)", "task": "\(r.taskID)"])
            }
            return nil
        }
        return (job, index, mine)
    }

    func handleFailure(_ report: Wire.TaskFailure, from worker: Worker) {
        // A peer's text, for the log and other users' `status`: control characters (a newline that forges log
        // lines, escapes for a terminal) become '?', as in a worker's name (hostile-peer audit 54 F11); its line
        // breaks become "; " first, so a multi-line error stays readable.
        var f = report
        f.message = report.message.joinedLines().printable(limit: 4096)
        let ref = Wire.TaskRef(jobID: f.jobID, taskID: f.taskID)
        if isArchived(f.jobID) || jobs[f.jobID].map({ !$0.isActive }) == true {
            worker.inFlight.remove(ref)
            // Cancelled or failed meanwhile (its shared map removed, so a tile write fails).
            logger.debug(
                "failure report for an ended job dropped",
                metadata: ["worker": "\(worker.name)", "job": "\(f.jobID)", "task": "\(f.taskID)"])
            return
        }
        let held = worker.inFlight.remove(ref) != nil
        if held { worker.lastDone = monotonicSeconds() }
        guard held, let job = jobs[f.jobID] else {
            if held {
                // Its job was removed by retention meanwhile (the slot is free again).
                logger.debug(
                    "failure report for a removed job dropped",
                    metadata: ["worker": "\(worker.name)", "job": "\(f.jobID)", "task": "\(f.taskID)"])
                return
            }
            rejects.warning(
                "not-assigned", "ignored a failure report for a task the worker does not hold",
                metadata: ["worker": "\(worker.name)", "job": "\(f.jobID)", "task": "\(f.taskID)"])
            return
        }
        let index = Int(f.taskID)
        // A worker without --shared-root, or with one that does not hold this job's files (operator audit: it
        // failed 254 tasks of a job that others completed): its tasks go to the workers that can reach them,
        // uncounted. With none connected the job waits for one (user review F31: it failed after 3 tries),
        // saying why in its status (`activeSummary`, whenever no connected worker can take its tasks).
        if job.shared != nil, Self.outOfReach(f.message) {
            worker.cannotReach.insert(job.id)
            let first = worker.outsideRoots.insert(job.id).inserted
            if first {
                job.outOfReach = f.message
                let metadata: Logger.Metadata = [
                    "worker": "\(worker.name)", "job": "\(job.id)", "reason": "\(f.message)",
                ]
                if workers.values.contains(where: { !$0.outsideRoots.contains(job.id) }) {
                    logger.warning(
                        "a worker cannot reach a shared-storage job's files: it gets none of its tasks",
                        metadata: metadata)
                } else {
                    logger.warning(
                        "no connected worker can reach a shared-storage job's files: it waits for a worker whose --shared-root holds them",
                        metadata: metadata)
                }
            }
            removeAttempt(job, index, worker.id)
            // Refused, not computed: a job none of whose tasks a worker took is still queued (audit 44 D2: it
            // read "running", and `status --state queued` did not list it).
            if job.state == .running, job.running == 0, job.done == 0, job.failedOn.isEmpty { job.state = .queued }
            return
        }
        if job.states[index] == .done {
            // A straggler's copy of a task another worker completed (concurrency audit 42 F6: logged as a warning,
            // "retried in 2 s", though nothing is).
            logger.debug(
                "failure report for a task already done dropped",
                metadata: ["worker": "\(worker.name)", "job": "\(f.jobID)", "task": "\(f.taskID)"])
            removeAttempt(job, index, worker.id)
            return
        }
        // Damaged input under --corrupt-tiles skip: expected, and logged once when the tile is given up.
        let expected = job.options.skipCorruptTiles && f.message.hasPrefix(Wire.TaskFailure.corruptInput)
        let message = "\(worker.name): \(Self.explained(f.message, image: job.shared?.image ?? 1))"
        let next = afterFailure(job, index, worker, message)
        logger.log(
            level: expected ? .debug : .warning,
            "task failed on a worker",
            metadata: [
                "worker": "\(worker.name)", "job": "\(job.id)",
                "task": "\(index)", "error": "\(f.message)",
                "next": "\(next)",
            ])
        attemptFailed(job, index, worker, message, next: next)
    }

    /// Whether a worker failed a shared-storage task because the job's files are out of its reach (its
    /// `--shared-root`), which another worker's need not be.
    static func outOfReach(_ message: String) -> Bool {
        message.contains("this worker takes no shared-storage tasks")
            || message.contains("outside this worker's --shared-root")
    }

    /// A worker's failure message, with what the coordinator knows about its cause;
    /// `image`: the image of the file the task maps (`--image`).
    static func explained(_ message: String, image: Int = 1) -> String {
        if image != 1, message.hasPrefix(Wire.TaskFailure.unreadable), message.contains("level ") {
            // A worker built before images could be chosen refuses the level field of a task for
            // another image than the first (`Wire.TileTaskSpec.levelField`) rather than map image 1.
            return message
                + " (a worker built before --image, which reads image 1 of a file only, refused this task for "
                + "image \(image): upgrade it)"
        }
        guard message == EngineSettings.notUnderstood else { return message }
        // Options bits are added for nets older workers would compute differently
        // (`EngineSettings.forWorkers(of:)`); their tasks go to up-to-date workers.
        return message + " (a worker built before this coordinator: upgrade it to compute this model)"
    }

    /// Failed attempts after which a task fails its job (or, damaged input under
    /// `--corrupt-tiles skip`, is given up).
    static let maxTaskFailures = 3

    /// Seconds a task waits after its `n`-th failure before it is sent again: a fault
    /// that passes (a storage server failing over, a mount coming back, a GPU reset)
    /// would otherwise use up all attempts within milliseconds, on every worker at
    /// once when they share the fault. The waits add up to 8 s; other tasks run meanwhile.
    static func retryDelay(afterFailures n: Int) -> Int { n <= 1 ? 2 : 6 }

    /// What a failure of task `index` on `worker` leads to (asked before `attemptFailed` records it).
    enum AfterFailure: CustomStringConvertible {
        /// Sent again after this many seconds (to a worker that has not failed it, while one is connected).
        case retry(seconds: Int)
        /// Another copy of it (a straggler's) still runs: the task is judged when that one ends.
        case copyRuns
        /// Given up: the job fails (or, damaged input under `--corrupt-tiles skip`, the tile is left empty).
        case end
        var description: String {
            switch self {
            case .retry(let s): "retried in \(s) s"
            case .copyRuns: "none: another copy of it still runs"
            case .end: "none"
            }
        }
    }

    /// The rule: a task is given up after `maxTaskFailures` failures, unless a connected worker that may take it
    /// has not failed it (then it goes there, up to twice as many failures: audit 45 S2, three broken workers failed
    /// a job while a good one was idle), or its failures are all damaged input (the same on every worker). A copy
    /// that fails while another runs is not judged (audit 45 S1: copies of a task computing fine elsewhere, failing
    /// on one broken worker, failed the job).
    func afterFailure(_ job: CoordinatorJob, _ index: Int, _ worker: Worker, _ message: String) -> AfterFailure {
        if case .running(let attempts) = job.states[index], attempts.contains(where: { $0.worker != worker.id }) {
            return .copyRuns
        }
        let failures = (job.failures[index] ?? []) + [message]
        let failedOn = (job.failedOn[index] ?? []).union([worker.id])
        // Damaged data does not heal with time: under --corrupt-tiles skip such a task goes to
        // another worker at once (its 8 s of waits made a slide with damaged tiles end that late).
        let damaged = job.options.skipCorruptTiles && message.contains(Wire.TaskFailure.corruptInput)
        let retry = AfterFailure.retry(seconds: damaged ? 0 : Self.retryDelay(afterFailures: failures.count))
        if failures.count < Self.maxTaskFailures { return retry }
        // Damaged input fails the same way on any worker (`SlideError.isCorruptData`).
        let corrupt = failures.allSatisfy { $0.contains(Wire.TaskFailure.corruptInput) }
        if !corrupt, failures.count < 2 * Self.maxTaskFailures, !takers(job).isSubset(of: failedOn) { return retry }
        return .end
    }

    /// Records a failed attempt and acts on `afterFailure` (`next`, when the caller already asked it): the task is
    /// requeued (sent again after `retryDelay`), left to the copy that still runs, or given up (the job fails).
    func attemptFailed(
        _ job: CoordinatorJob, _ index: Int, _ worker: Worker, _ message: String, next: AfterFailure? = nil
    ) {
        guard job.isActive else { return }
        let next = next ?? afterFailure(job, index, worker, message)
        guard removeAttempt(job, index, worker.id) != nil else { return }
        job.failures[index, default: []].append(message)
        job.failedOn[index, default: []].insert(worker.id)
        let failures = job.failures[index]!
        switch next {
        case .copyRuns: return
        case .retry(let seconds):
            job.retryAt[index] = monotonicSeconds() + Double(seconds)
            return
        case .end: break
        }
        // Damaged input fails the same way on any worker (`SlideError.isCorruptData`).
        let corrupt = failures.allSatisfy { $0.contains(Wire.TaskFailure.corruptInput) }
        guard corrupt, job.options.skipCorruptTiles, job.shared != nil else {
            abort(
                job, state: .failed,
                message: "task \(index) failed \(failures.count) times: " + Self.summary(failures)
                    + (corrupt ? " (--corrupt-tiles skip maps the rest and leaves such tiles empty)" : ""))
            return
        }
        // Another copy may still run (a straggler's): it ends the same way, and is judged then.
        guard job.states[index] == .pending else { return }
        skipCorrupt(job, index, reason: failures.last!)
    }

    /// Leaves task `index` of a `--corrupt-tiles skip` job undone (its map tile keeps the
    /// fill value), logs it and lists it in the job's note; the job goes on, and finishes
    /// if that was its last task.
    private func skipCorrupt(_ job: CoordinatorJob, _ index: Int, reason: String) {
        job.pending.removeAll { $0 == index }
        job.states[index] = .done
        job.done += 1
        if job.noteBeforeSkips == nil { job.noteBeforeSkips = job.message }
        let rect = job.tasks[index].rect
        let plain = reason.replacingOccurrences(of: Wire.TaskFailure.corruptInput, with: "")
        job.corruptSkipped.append((index, plain))
        logger.warning(
            "map tile left empty: its input is damaged",
            metadata: [
                "job": "\(job.id)", "task": "\(index)",
                "tile": "y \(rect.y) x \(rect.x) \(rect.height)×\(rect.width)", "error": "\(plain)",
            ])
        let first = job.tasks[job.corruptSkipped[0].index].rect
        let skipped = job.corruptSkipped.count
        let note =
            "\(skipped) map tile\(skipped == 1 ? "" : "s") \(Wire.JobStatus.emptyTilesNote): input damaged "
            + "(first at y \(first.y) x \(first.x): \(job.corruptSkipped[0].reason))"
        job.message = [job.noteBeforeSkips ?? "", note].filter { !$0.isEmpty }.joined(separator: "; ")
        guard job.done == job.tasks.count else { return }
        if job.corruptSkipped.count == job.tasks.count {
            // Not a map with holes: nothing at all (damaged tables, a file cut short early).
            abort(
                job, state: .failed,
                message: "the input of every map tile is damaged (\(skipped) tiles), so nothing could be mapped: "
                    + job.corruptSkipped[0].reason)
            return
        }
        finish(job)
    }

    /// Messages joined with "; ", each distinct one once, with its count when repeated.
    /// How a worker's loss reads when it went silent with a message part-way across the link.
    static let slowLink = "a message part-way across the link"

    static func summary(_ messages: [String]) -> String {
        var counts: [String: Int] = [:]
        var order: [String] = []
        for m in messages {
            if counts[m] == nil { order.append(m) }
            counts[m, default: 0] += 1
        }
        return order.map { counts[$0]! > 1 ? "\($0) (\(counts[$0]!)×)" : $0 }.joined(separator: "; ")
    }

    /// Removes `worker`'s attempt at task `index`; with no copy left the task is
    /// queued again. Returns nil if the worker had no attempt running, else how many
    /// copies still run.
    @discardableResult
    func removeAttempt(_ job: CoordinatorJob, _ index: Int, _ worker: RoutingID) -> Int? {
        guard case .running(var attempts) = job.states[index], attempts.contains(where: { $0.worker == worker }) else {
            return nil
        }
        attempts.removeAll { $0.worker == worker }
        if attempts.isEmpty {
            metrics.taskRetried()
            job.running -= 1
            job.states[index] = .pending
            job.pending.append(index)
        } else {
            job.states[index] = .running(attempts)
        }
        return attempts.count
    }

    /// Counts a lost worker against the task it was computing, failing the job at the
    /// limit (as Dask's allowed-failures): a task that kills workers reaches it, while
    /// the tasks queued behind it on those workers (of this job or another) are not
    /// blamed. A worker computes its tasks in the order they were sent.
    private func taskLost(_ ref: Wire.TaskRef, on worker: Worker, reason: String) {
        guard configuration.maxTaskLosses > 0, let job = jobs[ref.jobID], job.isActive else { return }
        let index = Int(ref.taskID)
        guard job.states[index] != .done else { return }
        job.losses[index, default: []].append(
            .init(text: "\(worker.name) (\(reason))", process: worker.process, key: worker.key))
        let losses = job.losses[index]!.map(\.text)
        guard losses.count >= configuration.maxTaskLosses else { return }
        abort(
            job, state: .failed,
            message:
                "task \(index) was held by \(losses.count) \(losses.count == 1 ? "worker that was" : "workers that were") "
                + "lost (crashed, killed, out of memory or cut off): \(Self.summary(losses)). "
                + (losses.contains { $0.contains(Self.slowLink) }
                    ? "Their links are too slow for what crosses them in a heartbeat deadline (workers sharing a link "
                        + "share its rate): serve --heartbeat-liveness N allows N s of silence, --credit 1 sends less "
                        + "at once; "
                    : "It may be what kills them (see their logs; a smaller --tile needs less memory); ")
                + "serve --max-task-losses sets the limit")
    }

    func requeue(_ ref: Wire.TaskRef, from worker: Worker) {
        worker.inFlight.remove(ref)
        guard let job = jobs[ref.jobID], job.isActive else { return }
        removeAttempt(job, Int(ref.taskID), worker.id)
    }

    /// Forgets a worker; its tasks are queued again. A `lost` worker (silent or
    /// unreachable, not one that said goodbye) counts against the task it was computing:
    /// a task computed by `maxTaskLosses` workers that were lost fails its job (`taskLost`).
    func retire(_ worker: Worker, reason: String, lost: Bool = false) {
        // Within two deadlines of this coordinator's own stall (`heartbeatAndPurge`), a worker's silence or closed
        // connection is no sign of what its task does to it: its worker gave up the session meanwhile (and
        // joined again), and its messages queued before that may still arrive first.
        let afterStall = monotonicSeconds() - lastStallEnd <= 2 * configuration.heartbeat.deadline
        let reason = lost && afterStall ? reason + ", just after this coordinator's stall: not counted" : reason
        let lost = lost && !afterStall
        let ordered = worker.sent.filter(worker.inFlight.contains)
        let computing = ordered.first
        // Requeued last in, first out (`pending` is a stack): the task it was computing
        // goes out first again, so the next worker computes it first too.
        let unordered = worker.inFlight.subtracting(ordered).sorted { ($0.jobID, $0.taskID) < ($1.jobID, $1.taskID) }
        for ref in unordered + ordered.reversed() {
            requeue(ref, from: worker)
            if lost, ref == computing { taskLost(ref, on: worker, reason: reason) }
        }
        workers[worker.id] = nil
        workerOrder.removeAll { $0 == worker.id }
        logger.info(
            "worker left",
            metadata: [
                "worker": "\(worker.name)", "reason": "\(reason)",
                "tasks": "\(worker.tasksDone)", "workers": "\(workers.count)",
            ])
    }

    /// Queues `m` in the worker's outbox and sends what its queue takes. False when it was not queued (the
    /// outbox is full: the worker does not read) or the worker is gone (then retired).
    @discardableResult
    func send(_ m: WireMessage, to worker: Worker, _ socket: borrowing ZMQSocket) -> Bool {
        // Tasks are bounded by the credit and heartbeats wait while anything does: only a worker that reads
        // nothing fills it.
        guard worker.outbox.count < configuration.credit + 16 else {
            rejects.warning(
                "worker-queue-full", "a worker does not read its messages: message dropped",
                metadata: ["worker": "\(worker.name)", "message": "\(m.type)"])
            return false
        }
        worker.outbox.append(m)
        return pump(worker, socket)
    }

    /// Sends what `worker`'s outbox holds, as far as its queue takes it. False when its connection is gone
    /// (killed, crashed): it is retired now, not after 3 s of silence (concurrency audit 42 F5).
    @discardableResult
    func pump(_ worker: Worker, _ socket: borrowing ZMQSocket) -> Bool {
        do {
            let bytes = try worker.outbox.pump(socket, to: worker.id)
            if bytes > 0 {
                workerBytesOut += bytes
                worker.lastSent = monotonicSeconds()
            }
        } catch ZMQError.hostUnreachable {
            retire(worker, reason: "unreachable", lost: true)
            return false
        } catch {
            logger.debug("send to worker failed", metadata: ["worker": "\(worker.name)", "error": "\(error)"])
        }
        return true
    }

    /// Sends on from every outbox its worker's queue did not take whole (a large message's pieces over a
    /// slow link); the loop polls briefly while any waits.
    func pumpOutboxes(_ socket: borrowing ZMQSocket) {
        if !revokes.isEmpty {
            let ended = Set(revokes)
            revokes.removeAll()
            let models = Set(jobs.values.filter(\.isActive).map(\.model.digest))
            for id in workerOrder {
                guard let w = workers[id] else { continue }
                // What has not begun to leave is taken back (over a slow link a cancelled job's tasks and model
                // crossed before the revoke, holding the worker's credit: audit 43 F2): its tasks leave the
                // worker's credit, and a model no active job uses is not sent.
                // A message part-way out too: the revoke that follows tells the worker to drop its pieces.
                let taken = w.outbox.removeUnsent(partlySent: true) { subject in
                    switch subject {
                    case .task(let ref, _): ended.contains(ref.jobID)
                    case .model(let digest): !models.contains(digest)
                    }
                }
                for case .task(let ref, _) in taken { w.inFlight.remove(ref) }
                if !taken.isEmpty {
                    logger.info(
                        "messages of an ended job taken back before they left",
                        metadata: ["worker": "\(w.name)", "messages": "\(taken.count)"])
                }
                for job in Set(w.inFlight.map(\.jobID)).intersection(ended).sorted() {
                    send(.revoke(jobID: job), to: w, socket)
                }
            }
        }
        var waiting = false
        for id in workerOrder {
            guard let w = workers[id], !w.outbox.isEmpty else { continue }
            if pump(w, socket), !w.outbox.isEmpty { waiting = true }
        }
        outboxesWaiting = waiting
    }

    func heartbeatAndPurge(_ socket: borrowing ZMQSocket) {
        let now = monotonicSeconds()
        let hb = configuration.heartbeat
        // After a gap in this loop longer than the deadline (the coordinator stopped, paused or starved), its
        // workers' silence is its own: they get a fresh deadline, and those retired soon after (their workers gave
        // the sessions up meanwhile and joined again) do not charge their tasks (`retire`; concurrency audit 42
        // F2: every worker was retired as lost after each stall, so three stalls failed a healthy job).
        if now - lastPurge > hb.deadline {
            lastStallEnd = now
            for w in workers.values { w.lastHeard = max(w.lastHeard, now) }
        }
        lastPurge = now
        for id in workerOrder {
            guard let w = workers[id] else { continue }
            if now - w.lastHeard > hb.deadline {
                metrics.heartbeatMissed()
                // Silent with a message part-way across either way: the link is too slow for it (workers sharing a
                // link share its rate: audit 43 F1), which the job's failure then says instead of blaming the task.
                let crossing = w.pieces.inProgress || w.outbox.isMidMessage
                retire(
                    w, reason: "silent for \(hb.liveness) heartbeats" + (crossing ? ", " + Self.slowLink : ""),
                    lost: true)
                _ = try? socket.send(.disconnect(reason: "declared dead"), to: id, flags: .dontWait)
            } else if now - w.lastSent >= hb.interval, w.outbox.isEmpty {
                // (While its outbox waits, what it sends on proves this side alive.)
                send(.heartbeat, to: w, socket)
            }
        }
    }
}
