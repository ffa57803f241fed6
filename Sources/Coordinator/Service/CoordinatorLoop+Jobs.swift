import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// A job being prepared off the loop thread, and the client waiting for its id.
struct PreparedJob: Sendable {
    let id: UInt64
    let client: RoutingID
    let since: Double
    /// The submitted files' bytes it held (`CoordinatorLoop.preparingBytes`).
    let bytes: Int
    /// Whether its client was given the id already (an upload's, at its first part).
    let announced: Bool
    let result: Result<CoordinatorJob, any Error>
}

/// Submissions: checked and given an id on the loop thread, prepared by the
/// `JobFactory` on the preparation queue (storing files, transcoding an upload,
/// planning), and registered back on the loop thread, which then answers the
/// client. The loop never waits for a job to be prepared: heartbeats, results and
/// other clients are served meanwhile.
extension CoordinatorLoop {
    var factory: JobFactory {
        JobFactory(
            configuration: configuration, store: store, persistent: persistent, plans: planCache, logger: logger,
            stopRequested: stopRequested)
    }

    /// Starts preparing a submission for `client`; the answer (`submitted` or an
    /// error) is sent when it is ready (`collectPrepared`), or now (returned) for a
    /// retry of a submission this coordinator already has. Throws what can be refused at once.
    func startJob(_ spec: Wire.JobSpec, for client: RoutingID, owner: String?) throws -> WireMessage? {
        let options = try JobOptions(encoded: spec.outputOptions)
        if let token = options.token, let known = tokens[Self.tokenKey(token, owner)] {
            logger.info("submit retried: the job exists already", metadata: ["job": "\(known)"])
            if waitingClients[known] != nil {
                waitingClients[known]!.append(client)
                return nil
            }
            return .submitted(jobID: known)
        }
        try admitJobCount(owner)
        if options.outputDirectory != nil && !configuration.allowLocalPaths && options.storage != .shared {
            throw ClusterError("this coordinator does not write outputs to client-chosen folders: use fetch")
        }
        let output = try sharedOutputClash(spec, options, requester: owner)
        if let shape = options.rawImage { try admitUploadRoom(shape) }
        let id = nextJobID
        nextJobID += 1
        let dir = store.directory(id)
        if let output { preparingOutputs[id] = output }
        if persistent {
            try DurableFile.createDirectory(dir)
        } else {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        if let shape = options.rawImage {
            // The image comes next, in parts (`+Uploads`); the job is prepared once it is whole.
            if let token = options.token { tokens[Self.tokenKey(token, owner)] = id }
            try beginUpload(id, spec: spec, options: options, shape: shape, owner: owner)
            return .submitted(jobID: id)
        }
        if let token = options.token {
            tokens[Self.tokenKey(token, owner)] = id
            waitingClients[id] = []
        }
        prepare(spec, options: options, id: id, owner: owner, client: client, bytes: Self.inlineBytes(spec))
        return nil
    }

    /// A shared-storage zarr job's final map path, after refusing it if a running (or
    /// preparing) job writes the same map (the second to finish replaced the first's,
    /// both reported done), if a folder or file that is not a Tessera map has that name,
    /// or if another key's job wrote the map there (an admin key may replace it).
    private func sharedOutputClash(_ spec: Wire.JobSpec, _ options: JobOptions, requester: String?) throws -> String? {
        guard options.storage == .shared, options.storeKind == .zarr, case .path(let image) = spec.image,
            let out = options.outputDirectory,
            let imagePath = try? factory.sharedPath(image, "image"),
            let outDir = try? factory.sharedPath(out, "output folder")
        else { return nil }  // the factory refuses what does not resolve, with the reason
        let output = "\(outDir)/\(OutputOptions.stem(forInput: imagePath, image: options.image)).zarr"
        let active = jobs.values.first { $0.isActive && $0.shared?.finalPath == output }
        if let active, active.resumed {
            // An interrupted job the store brought back. On a serving coordinator it finishes
            // once workers compute it; an embedded run's finishes only when that run is repeated.
            throw ClusterError(
                .invalidOption,
                "job \(active.id), restored from the store after an interruption, writes \(output): it was begun "
                    + "with another image, model or options (a changed or touched file counts). It finishes while "
                    + "workers compute it (with run --store: run the command that began it again); or cancel job "
                    + "\(active.id) (with run: remove the --store folder) to start over; or give this job another --out"
            )
        }
        let writer = active?.id ?? preparingOutputs.first { $0.value == output }?.key
        if let writer {
            throw ClusterError(
                .invalidOption,
                "job \(writer) is writing \(output) already: give this job another --out, or submit it once that one ends"
            )
        }
        try MapStore.checkReplaceable(output)
        // Without CURVE every requester is anonymous: no key to tell owners apart.
        if let owner = PartialOutputs.mapOwner(output), !submitted(by: requester, owner: owner),
            !CoordinatorService.isAdmin(requester)
        {
            throw ClusterError(
                .invalidOption,
                "\(output) is the map of a job of key \(owner): another key may not replace it (give this job another --out)"
            )
        }
        return output
    }

    /// Prepares job `id` (its folder exists) on the preparation queue; `collectPrepared`
    /// registers it and answers `client`. `uploaded`: the raw image is in the folder
    /// already (`+Uploads`), with this CRC-32 and size.
    func prepare(
        _ spec: Wire.JobSpec, options: JobOptions, id: UInt64, owner: String?, client: RoutingID, bytes: Int,
        uploaded: (crc: UInt32, bytes: Int)? = nil
    ) {
        let (factory, prepared, since, dir, wake) = (factory, prepared, monotonicSeconds(), store.directory(id), wake)
        let reserved = options.storage == .shared ? 0 : reservedStoreBytes()  // (only upload jobs are checked)
        preparing += 1
        preparingBytes += bytes
        preparingOwners[id] = owner ?? "anonymous"
        prepareQueue.async {
            let result = Result {
                do {
                    return try factory.create(
                        spec, options: options, id: id, directory: dir, owner: owner, uploaded: uploaded,
                        reserved: reserved)
                } catch {
                    try? FileManager.default.removeItem(atPath: dir)
                    throw error
                }
            }
            prepared.withLock {
                $0.append(
                    PreparedJob(
                        id: id, client: client, since: since, bytes: bytes, announced: uploaded != nil, result: result))
            }
            wake.signal()
        }
    }

    /// Registers the jobs prepared since the last call and answers their clients.
    func collectPrepared(_ socket: borrowing ZMQSocket) {
        let ready = prepared.withLock { p in
            defer { p.removeAll() }
            return p
        }
        for p in ready {
            preparingOutputs[p.id] = nil
            preparingOwners[p.id] = nil
            preparing -= 1
            preparingBytes -= p.bytes
            let reply: WireMessage
            switch p.result {
            case .success(let job):
                register(job)
                logStart(job, preparedIn: monotonicSeconds() - p.since)
                reply = .submitted(jobID: p.id)
            case .failure(let error):
                tokens = tokens.filter { $0.value != p.id }
                // The client got no id (an upload's got it with its first part): the next job takes this one when
                // it was the last given, so job ids
                // count jobs (docs/CLI audit 36 F17: refusals left gaps that `status` then denied).
                let reused = !p.announced && p.id == nextJobID - 1
                if reused { nextJobID = p.id }
                CoordinatorMetrics.refused((error as? AdmissionRefusal)?.reason ?? "submit")
                // Not under `job=N` when N goes to the next job (soak audit 56 F5: `grep job=N` mixed the two).
                logger.warning(
                    "job refused",
                    metadata: reused ? ["error": "\(error)"] : ["job": "\(p.id)", "error": "\(error)"])
                reply = .error(message: "\(error)")
            }
            // Clients that retried meanwhile (a lost reply, a reconnect) get the same answer.
            for client in [p.client] + (waitingClients.removeValue(forKey: p.id) ?? []) {
                self.reply(reply, to: client, socket)
            }
        }
    }

    private func logStart(_ job: CoordinatorJob, preparedIn seconds: Double) {
        var metadata: Logger.Metadata = [
            // (An uploaded image's name is the client's: printable here, as it may hold a newline.)
            "job": "\(job.id)", "image": "\(job.stem.printable(limit: 300))",
            "prepared-s": "\(String(format: "%.2f", seconds))",
            "size": "\(job.imageSize.w)×\(job.imageSize.h)",
            "mode": "\(job.mode.rawValue)", "tile": "\(job.tile)",
            "tasks": "\(job.tasks.count)", "model": "\(job.model.digest.hex.prefix(12))",
            "storage": "\(job.shared == nil ? "upload" : "shared")",
        ]
        if let tissue = job.shared?.tissue {
            metadata["tissue"] = "\(String(format: "%.3f", tissue.fraction))"
            metadata["tiles-without-tissue"] = "\(tissue.skippedTiles)"
        }
        logger.info("job started", metadata: metadata)
        if job.tasks.isEmpty { finish(job) }
    }

    /// The bytes of the files a submission carries (image and model, when uploaded).
    static func inlineBytes(_ spec: Wire.JobSpec) -> Int {
        [spec.prototxt, spec.weights, spec.image].reduce(0) { sum, source in
            if case .inline(_, let bytes) = source { return sum + bytes.count }
            return sum
        }
    }

    /// A submission token is the submitter's own: keys do not share them.
    static func tokenKey(_ token: String, _ owner: String?) -> String { "\(owner ?? "")/\(token)" }

    func register(_ job: CoordinatorJob) {
        job.rate = RateWindow(seconds: configuration.rateWindowSeconds)
        // A resumed job that had computed tiles stays running, as it does when its workers leave (chaos audit
        // 28: it went back to "queued" until a task was dispatched again).
        if job.resumed && job.restored > 0 && job.state == .queued { job.state = .running }
        if let token = job.options.token { tokens[Self.tokenKey(token, job.owner)] = job.id }
        // Level with its key's least served active job (`FairShare`): the work of the others is not owed to it.
        job.given = jobs.values.filter { $0.isActive && $0.owner == job.owner }.map(\.given).min() ?? 0
        jobs[job.id] = job
        jobOrder.append(job.id)
    }
}
