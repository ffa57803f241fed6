import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraWire

/// The links to workers: lost tasks counted against their task, tasks requeued from departing or silent
/// workers, each worker's outbox pumped within its credit, heartbeats both ways and the purge of the silent.
extension CoordinatorLoop {
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
