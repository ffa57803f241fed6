import Foundation
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraWire

/// An upload job whose image is still arriving: the client decodes its image and
/// sends the raw samples (`JobOptions.rawImage`) in `uploadPart`s, in order, each
/// answered before the next is sent. The coordinator appends them to the job's
/// `image.raw`, which tasks then read their regions from: it never decodes the
/// image, never holds more than a part of it, and no message has to hold the whole
/// image. Once the last part is in, the file is synced and the job is prepared like
/// any other; the last part's answer is `submitted`.
final class PendingUpload {
    let id: UInt64
    let spec: Wire.JobSpec
    let options: JobOptions
    let owner: String?
    let total: Int
    let fd: Int32
    let path: String
    /// Bytes written (a prefix of the image), and their CRC-32.
    var received = 0
    var crc: UInt32 = 0
    /// A part is being written (on the upload queue): the next waits.
    var busy = false
    /// Cancelled while a part was being written: dropped once it is.
    var cancelled = false
    /// Why the last part could not be stored (a full disk): what a cancel that follows is logged with.
    var refusal: String?
    var lastActivity = monotonicSeconds()
    /// Unix seconds the submission came (`status`).
    let began = Date().timeIntervalSince1970

    init(id: UInt64, spec: Wire.JobSpec, options: JobOptions, owner: String?, total: Int, fd: Int32, path: String) {
        self.id = id
        self.spec = spec
        self.options = options
        self.owner = owner
        self.total = total
        self.fd = fd
        self.path = path
    }
}

/// A part written (or refused) on the upload queue, for the loop.
struct UploadOutcome: Sendable {
    let id: UInt64
    let client: RoutingID
    let last: Bool
    /// The new received count and CRC, or why the part was not stored.
    let result: Result<(received: Int, crc: UInt32), ClusterError>
}

extension CoordinatorLoop {
    /// Registers job `id` (its folder exists) as an upload waiting for its image.
    func beginUpload(
        _ id: UInt64, spec: Wire.JobSpec, options: JobOptions, shape: RawImageShape, owner: String?
    ) throws {
        guard let total = shape.byteCount else { throw ClusterError(.invalidOption, "the raw image is too large") }
        let path = store.directory(id) + "/image.raw"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            try? FileManager.default.removeItem(atPath: store.directory(id))
            throw ClusterError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        uploads[id] = PendingUpload(
            id: id, spec: spec, options: options, owner: owner, total: total, fd: fd, path: path)
        logger.info(
            "receiving an upload",
            metadata: [
                "job": "\(id)", "size": "\(shape.width)×\(shape.height)×\(shape.channels)",
                "bits": "\(shape.bitDepth)", "bytes": "\(total)",
            ])
    }

    /// A part of an upload: checked here, written on the upload queue; answered when
    /// written (`collectUploads`). Returns the answer when it is given at once.
    func handleUploadPart(_ part: Wire.UploadPart, from client: RoutingID, key: String?) -> WireMessage? {
        guard let u = uploads[part.jobID] else {
            if archived[part.jobID]?.state == .cancelled {
                return .error(message: "job \(part.jobID) was cancelled while its image was uploading")
            }
            return .error(
                message: "\(Wire.noUploadInProgress) \(part.jobID) (it finished, failed, was cancelled or "
                    + "expired): submit the image again")
        }
        if !submitted(by: key, owner: u.owner), let owner = u.owner {
            rejects.warning(
                "not-owner", "refused an upload part for another key's job",
                metadata: ["job": "\(u.id)", "key": "\(key ?? "?")", "owner": "\(owner)"])
            return .error(message: "job \(u.id) was submitted with another key")
        }
        guard !u.busy else { return .error(message: "job \(u.id): send one upload part at a time") }
        let offset = Int(clamping: part.offset)
        let (end, overflow) = offset.addingReportingOverflow(part.bytes.count)
        if !overflow, offset != 0, offset < u.received, end <= u.received, !part.last {
            // A part sent again (its answer was lost): already stored.
            return .uploadAck(jobID: u.id, received: UInt64(u.received))
        }
        guard offset == u.received || offset == 0 else {
            return .error(
                message: "job \(u.id): upload part at byte \(offset), expected \(u.received) (or 0 to restart)")
        }
        guard !overflow, end <= u.total, part.last == (end == u.total), !part.bytes.isEmpty || part.last else {
            return .error(
                message: "job \(u.id): upload part \(offset)+\(part.bytes.count) does not fit the "
                    + "\(u.total)-byte image\(part.last ? " as its last part" : "")")
        }
        u.busy = true
        u.lastActivity = monotonicSeconds()
        let (fd, path, outcomes, id, wake) = (u.fd, u.path, uploadOutcomes, u.id, wake)
        let previous = offset == 0 ? 0 : u.crc
        uploadQueue.async {
            let result = Result { () throws(ClusterError) -> (received: Int, crc: UInt32) in
                let crc = part.bytes.withUnsafeBytes { CRC32.update(0, $0) }
                guard crc == part.crc32 else {
                    throw ClusterError("job \(id): upload part at byte \(offset) arrived damaged (CRC-32 mismatch)")
                }
                try Self.writeAll(fd, part.bytes, at: offset, path: path)
                if part.last && fsync(fd) != 0 {
                    throw ClusterError("cannot sync \(path): \(String(cString: strerror(errno)))")
                }
                return (end, CRC32.combine(previous, crc, lengthB: part.bytes.count))
            }
            outcomes.withLock { $0.append(UploadOutcome(id: id, client: client, last: part.last, result: result)) }
            wake.signal()
        }
        return nil
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(ClusterError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes {
                pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClusterError("cannot store the upload in \(path): \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// Answers the parts written since the last call; a complete image starts its
    /// job's preparation. Drops uploads whose client went quiet.
    func collectUploads(_ socket: borrowing ZMQSocket) {
        let outcomes = uploadOutcomes.withLock { o in
            defer { o.removeAll() }
            return o
        }
        for o in outcomes {
            guard let u = uploads[o.id] else { continue }
            u.busy = false
            u.lastActivity = monotonicSeconds()
            if u.cancelled {
                dropUpload(u, reason: "cancelled by a client")
                reply(.error(message: "job \(u.id) was cancelled while its image was uploading"), to: o.client, socket)
                continue
            }
            switch o.result {
            case .failure(let error):
                u.refusal = "\(error)"
                logger.warning("upload part not stored", metadata: ["job": "\(u.id)", "error": "\(error)"])
                reply(.error(message: "\(error)"), to: o.client, socket)
            case .success(let (received, crc)):
                (u.received, u.crc) = (received, crc)
                guard o.last else {
                    reply(.uploadAck(jobID: u.id, received: UInt64(received)), to: o.client, socket)
                    continue
                }
                close(u.fd)
                uploads[u.id] = nil
                if let token = u.options.token {
                    tokens[Self.tokenKey(token, u.owner)] = u.id
                    waitingClients[u.id] = []
                }
                prepare(
                    u.spec, options: u.options, id: u.id, owner: u.owner, client: o.client, bytes: 0,
                    uploaded: (crc, received))
            }
        }
        let now = monotonicSeconds()
        let idle = configuration.uploadIdleSeconds
        for u in uploads.values where !u.busy && now - u.lastActivity > idle {
            let reason = "no part for \(Int(idle)) s: the client is gone"
            dropUpload(u, reason: reason)
            // Listed as failed, with why (chaos audit 28: it showed "queued" for 2 minutes, then "unknown").
            archived[u.id] = ArchivedJob(
                id: u.id, state: .failed, message: "its image stopped arriving (\(reason)): submit it again",
                tasks: 0, outputFiles: [], owner: u.owner, stem: Self.uploadStem(u.spec.image), submitted: u.began,
                ended: Date().timeIntervalSince1970)
        }
    }

    /// Forgets an upload and removes its folder (nothing else refers to it yet).
    /// Cancels an upload (at once, or once the part being written is in) and keeps a `cancelled`
    /// record for `status` (operator audit: the job vanished, and a cancel during a part's write
    /// answered "no job").
    func cancelUpload(_ u: PendingUpload) -> Wire.JobStatus {
        let message = "cancelled by a client while its image was uploading"
        // After a part was refused (a full disk), the client's cancel is its answer to that (operator audit 38 F9:
        // the log said only "cancelled by a client").
        let reason = u.refusal.map { "cancelled by its client after a part could not be stored: \($0)" }
        if u.busy { u.cancelled = true } else { dropUpload(u, reason: reason ?? "cancelled by a client") }
        archived[u.id] = ArchivedJob(
            id: u.id, state: .cancelled, message: message, tasks: 0, outputFiles: [], owner: u.owner,
            stem: Self.uploadStem(u.spec.image), submitted: u.began,
            ended: Date().timeIntervalSince1970)
        return Wire.JobStatus(jobID: u.id, state: .cancelled, workers: UInt32(workers.count), message: message)
    }

    static func uploadStem(_ image: Wire.FileSource) -> String {
        switch image {
        case .inline(let name, _): OutputOptions.stem(forInput: name)
        case .path(let path): OutputOptions.stem(forInput: path)
        }
    }

    func dropUpload(_ u: PendingUpload, reason: String) {
        close(u.fd)
        uploads[u.id] = nil
        tokens = tokens.filter { $0.value != u.id }
        // The folder first: on a full disk (the usual reason to drop one) the record needs the room it frees.
        try? FileManager.default.removeItem(atPath: store.directory(u.id))
        if persistent {
            do {
                try store.markRemoved(u.id)
            } catch {
                logger.error(
                    "cannot record a dropped upload's id as removed (a restart may give it to another job)",
                    metadata: ["job": "\(u.id)", "error": "\(error)"])
            }
        }
        logger.warning("upload dropped", metadata: ["job": "\(u.id)", "reason": "\(reason)"])
    }

    /// A job whose image is still arriving, as `status` shows it.
    func uploadStatus(_ u: PendingUpload) -> Wire.JobStatus {
        Wire.JobStatus(
            jobID: u.id, state: .queued, workers: UInt32(workers.count),
            message: String(
                format: "receiving the image: %.0f%% of %.1f MB", 100 * Double(u.received) / Double(max(u.total, 1)),
                Double(u.total) / 1e6))
    }
}
