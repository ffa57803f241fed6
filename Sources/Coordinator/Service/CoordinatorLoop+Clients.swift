import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraWire

/// The client endpoint: submissions, status, cancellation and output downloads. Every
/// request gets exactly one reply.
extension CoordinatorLoop {
    func handleClient(_ envelope: WireEnvelope, _ socket: borrowing ZMQSocket) {
        guard let peer = envelope.peer else { return }
        let reply: WireMessage
        if let key = envelope.userID, let check = keyStillAuthorized, !check(key, envelope.curveKey, false) {
            // Revoked while connected (a download in progress, a waiting submit): nothing more for it.
            rejects.warning(
                "revoked-key", "refused a request of a key revoked while it was connected",
                metadata: ["key": "\(key)", "address": "\(envelope.peerAddress ?? "?")"])
            reply = .error(message: "the key \(key) is no longer authorized on this coordinator (revoked)")
            self.reply(reply, to: peer, socket)
            return
        }
        switch envelope.message {
        case .failure(let error):
            rejects.warning(
                "malformed-client", "rejected a malformed client message",
                metadata: [
                    "peer": "\(peer)", "address": "\(envelope.peerAddress ?? "?")",
                    "key": "\(envelope.userID ?? "none")",
                    "reason": "\(error)",
                ])
            reply = .error(message: "malformed message: \(error)")
        case .success(.submit(let spec)):
            // Answered once the job is prepared (`collectPrepared`), unless refused now.
            guard let refusal = submit(spec, from: peer, owner: envelope.userID) else { return }
            reply = refusal
        case .success(.statusRequest(let id, let query)):
            reply =
                id.map { notYours($0, envelope.userID, "status") ?? jobStatus($0, detailed: query != nil) }
                ?? clusterStatus(for: envelope.userID, query: query)
        case .success(.cancel(let id)):
            reply = notYours(id, envelope.userID, "cancel") ?? cancel(id)
        case .success(.fetchRequest(let req)):
            if jobs[req.jobID] != nil || archived[req.jobID] != nil {
                if lastFetched[req.jobID] == nil { recordFetched(req.jobID) }
                lastFetched[req.jobID] = monotonicSeconds()
            }
            // Answered once read (`collectFetched`), unless refused now.
            guard
                let refusal = notYours(req.jobID, envelope.userID, "fetch", log: req.offset == 0 && req.maxBytes > 1)
                    ?? fetch(req, for: peer)
            else { return }
            reply = refusal
        case .success(.uploadPart(let part)):
            // Answered once written (`collectUploads`), unless refused now.
            guard let refusal = handleUploadPart(part, from: peer, key: envelope.userID) else { return }
            reply = refusal
        case .success(.hello):
            rejects.warning(
                "worker-on-client-endpoint",
                "a worker connected to the client endpoint: told to use the worker endpoint",
                metadata: ["address": "\(envelope.peerAddress ?? "?")"])
            reply = .disconnect(reason: Wire.clientEndpointRefusal)
        case .success(let other):
            rejects.warning(
                "unexpected-client", "unexpected message on the client endpoint", metadata: ["type": "\(other.type)"])
            reply = .error(message: "unexpected message \(other.type)")
        }
        self.reply(reply, to: peer, socket)
    }

    /// Sends a reply without waiting. A client whose reply queue is full (it sends
    /// requests without reading the answers) loses this one, logged (rate-limited).
    func reply(_ message: WireMessage, to peer: RoutingID, _ socket: borrowing ZMQSocket) {
        do {
            try socket.send(message, to: peer, flags: .dontWait)
        } catch ZMQError.again {
            rejects.warning(
                "client-queue-full", "a client does not read its replies: reply dropped",
                metadata: ["peer": "\(peer)", "reply": "\(message.type)"])
        } catch {
            logger.debug("reply to a client failed", metadata: ["error": "\(error)"])
        }
    }

    /// Starts preparing a new job (nil: the answer comes when it is ready), or why it
    /// was refused at once (also while shutting down).
    private func submit(_ spec: Wire.JobSpec, from peer: RoutingID, owner: String?) -> WireMessage? {
        if draining {
            return .error(message: "the coordinator is shutting down: submit again once it is back")
        }
        do {
            try admit(spec)
            return try startJob(spec, for: peer, owner: owner)
        } catch {
            CoordinatorMetrics.refused((error as? AdmissionRefusal)?.reason ?? "submit")
            logger.warning("job refused", metadata: ["error": "\(error)"])
            return .error(message: "\(error)")
        }
    }

    /// Whether the key `requester` (a connection's User-Id) submitted jobs of `owner`: the same key name, whichever
    /// role folder held it (a key moved between `--authorized-keys` and `--admin-keys` keeps its jobs: CURVE audit
    /// 30 F04, it lost them). Without CURVE every client is "anonymous": every job is its.
    func submitted(by requester: String?, owner: String?) -> Bool {
        Self.submitted(by: requester, owner: owner, curve: configuration.curve != nil)
    }

    /// `submitted(by:owner:)` of a coordinator with or without CURVE.
    static func submitted(by requester: String?, owner: String?, curve: Bool) -> Bool {
        guard curve else { return true }
        func name(_ id: String?) -> String? {
            id.map { CoordinatorService.isAdmin($0) ? String($0.dropFirst(CoordinatorService.adminPrefix.count)) : $0 }
        }
        // A job with no owner under CURVE (submitted while CURVE was off, or its record lost the owner) is an admin
        // key's only (CURVE audit 30 F03: it was every key's).
        guard let owner = name(owner), owner != "anonymous" else { return false }
        return owner == name(requester)
    }

    /// Roles: a job is seen, cancelled and fetched by the key that submitted it only
    /// (`submitted(by:owner:)`), or by an admin key (`--admin-keys`), whose use of another key's job is logged. A
    /// refusal is logged with both key names; the reply does not say whose the job is.
    /// `log`: whether an admin's use is logged (a download's later pieces are not: one line per file).
    private func notYours(_ id: UInt64, _ requester: String?, _ verb: String, log: Bool = true) -> WireMessage? {
        guard jobs[id] != nil || archived[id] != nil || uploads[id] != nil else { return nil }
        let owner = jobs[id]?.owner ?? archived[id]?.owner ?? uploads[id]?.owner
        if submitted(by: requester, owner: owner) { return nil }
        if CoordinatorService.isAdmin(requester) {
            guard log else { return nil }
            logger.notice(
                "admin key: \(verb) of another key's job",
                metadata: ["job": "\(id)", "key": "\(requester ?? "?")", "owner": "\(owner ?? "none")"])
            return nil
        }
        rejects.warning(
            "not-owner", "refused a request for another key's job",
            metadata: [
                "job": "\(id)", "key": "\(requester ?? "?")", "owner": "\(owner ?? "none")", "request": "\(verb)",
            ])
        return .error(message: "job \(id) was submitted with another key")
    }

    /// Cancels an active job; an ended one keeps its status.
    private func cancel(_ id: UInt64) -> WireMessage {
        if let u = uploads[id] { return .status(cancelUpload(u)) }
        if let job = jobs[id], job.isActive, job.outputsWait?.trying == true {
            return .error(
                message: "job \(id) is trying again to write its outputs now: if they still do not fit it waits again, "
                    + "and can be cancelled then; if they do, it ends done")
        }
        if let job = jobs[id], job.isActive, job.finishing, job.outputsWait == nil {
            // Its outputs are being written: a cancel now would be answered "cancelled" and then be
            // overtaken by "done" (operator audit). It ends done in a moment.
            return .error(
                message: "job \(id) is writing its outputs (every tile is computed): too late to cancel; it ends done "
                    + "shortly (its outputs can then be removed with retention, or by hand)")
        }
        if let job = jobs[id], job.isActive {
            abort(job, state: .cancelled, message: "cancelled by a client")
            return .status(job.status(workers: workers.count))
        }
        // An ended job is left as it is; the reply says so (`cancel` prints "nothing to cancel").
        var status: Wire.JobStatus
        if let job = jobs[id] {
            status = job.status(workers: workers.count)
        } else if let old = archived[id] {
            status = old.status(workers: workers.count)
        } else {
            return .error(message: "no job \(id): \(unknownJob(id))")
        }
        status.message = Wire.JobStatus.endedBeforeCancel + status.message
        return .status(status)
    }

    /// A piece of an output file: checked here, read on the fetch queue (a disk read
    /// must not hold up the loop) and answered by `collectFetched`; returns the answer
    /// when it is given at once (a refusal).
    func fetch(_ req: Wire.FetchRequest, for client: RoutingID) -> WireMessage? {
        let state: Wire.JobState
        let files: [String]
        if let job = jobs[req.jobID] {
            (state, files) = (job.state, job.outputFiles)
        } else if let old = archived[req.jobID] {
            (state, files) = (old.state, old.outputFiles)
        } else {
            return .error(message: "no job \(req.jobID): \(unknownJob(req.jobID))")
        }
        guard state == .done else { return .error(message: "job \(req.jobID) is \(state), not done") }
        guard let path = files.first(where: { ($0 as NSString).lastPathComponent == req.fileName }) else {
            return .error(message: "job \(req.jobID) has no output \(req.fileName)")
        }
        let count = min(Int(clamping: req.maxBytes), 16 << 20)
        let view = servedNPY(job: req.jobID, path: path)
        let (fetched, wake, checks, log) = (fetched, wake, servedChecks, logger)
        let directory = store.directory(req.jobID)
        // Only maps stored before this coordinator started (`ServedChunkCheck`).
        let check = jobs[req.jobID] == nil && archived[req.jobID]?.fromStore == true
        let slowness = configuration.debugFetchMillisecondsPerMiB
        fetchQueue.async {
            let reply: WireMessage
            do {
                let total: UInt64
                let bytes: [UInt8]
                if let (size, read) = try StoredFile.read(path, offset: req.offset, maxBytes: count) {
                    (total, bytes) = (size, read)
                } else if let view {
                    total = UInt64(view.size)
                    if check, req.offset < total {
                        do {
                            try checks.check(
                                job: req.jobID, directory: directory, view: view, offset: Int(req.offset), count: count)
                        } catch {
                            log.error(
                                "store: a finished job's map does not match its receipts: not served",
                                metadata: ["job": "\(req.jobID)", "error": "\(error)"])
                            throw error
                        }
                    }
                    bytes = req.offset <= total ? try view.read(offset: Int(req.offset), count: count) : []
                } else {
                    throw ClusterError("job \(req.jobID) has no output \(req.fileName)")
                }
                if slowness > 0 { usleep(UInt32(min((bytes.count * slowness * 1000) >> 20, 60_000_000))) }
                if req.offset > total {
                    reply = .error(message: "offset \(req.offset) beyond \(total) bytes")
                } else {
                    reply = .fetchData(
                        Wire.FetchChunk(
                            jobID: req.jobID, fileName: req.fileName, offset: req.offset, totalSize: total,
                            bytes: bytes))
                }
            } catch {
                // Retention or a cancel may have removed the job's folder while this read waited.
                let folder = parentPath(path)
                if !FileManager.default.fileExists(atPath: folder) {
                    reply = .error(
                        message: "job \(req.jobID)'s outputs were removed while being downloaded "
                            + "(the coordinator's retention: serve --keep-finished, --max-store)")
                } else if let error = error as? ClusterError {
                    reply = .error(message: error.description)
                } else {
                    reply = .error(message: "reading \(req.fileName): \(error)")
                }
            }
            fetched.withLock { $0.append((client, reply)) }
            wake.signal()
        }
        return nil
    }

    /// Sends the download pieces read since the last call.
    func collectFetched(_ socket: borrowing ZMQSocket) {
        let ready = fetched.withLock { f in
            defer { f.removeAll() }
            return f
        }
        for (client, message) in ready { reply(message, to: client, socket) }
    }

    /// An upload job's `.npy` output, served from its map's chunks (the file itself is never written).
    func servedNPY(job id: UInt64, path: String) -> NPYStoreView? {
        try? servedNPYView(job: id, path: path)
    }

    /// `servedNPY`, or why the job's map cannot serve `path` (nil result: not a served `.npy`).
    func servedNPYView(job id: UInt64, path: String) throws -> NPYStoreView? {
        guard path.hasSuffix(".npy") else { return nil }
        if let view = servedViews[id] { return view }
        let view = try NPYStoreView(try MapStore.open(at: self.store.directory(id) + "/map.chunks"))
        if servedViews.count >= 8 { servedViews.removeAll() }
        servedViews[id] = view
        return view
    }
}
