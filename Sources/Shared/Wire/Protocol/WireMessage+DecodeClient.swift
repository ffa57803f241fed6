/// Decoders of the messages between a client and the coordinator (the table in
/// `WireMessage`). The flags byte only means something here: which submitted files
/// travel inline, and whether a status names a job.
extension WireMessage {
    static func decodeSubmit(
        _ r: inout WireReader, _ flags: UInt8, _ payload: [[UInt8]],
        _ limits: WireLimits
    ) throws -> WireMessage {
        try expectFrames(payload, flags.nonzeroBitCount, r)
        let mode = try mode(&r)
        let tile = try r.u32("tile size", in: 1...limits.maxTileSize)
        let pre = try preprocessing(&r, limits: limits)
        let options = try r.string("output options")
        let sources = try fileSources(&r, flags, payload)
        return .submit(
            Wire.JobSpec(
                mode: mode, tileSize: tile, preprocessing: pre, outputOptions: options,
                prototxt: sources[0], weights: sources[1], image: sources[2]))
    }

    /// The prototxt, weights and image of a submission: inline (flags bit 0/1/2; a
    /// name and a size that must match its payload frame, taken in order) or a path.
    private static func fileSources(
        _ r: inout WireReader, _ flags: UInt8,
        _ payload: [[UInt8]]
    ) throws -> [Wire.FileSource] {
        var sources: [Wire.FileSource] = []
        var next = 0
        for (i, name) in ["prototxt", "weights", "image"].enumerated() {
            if flags & (1 << i) != 0 {
                let fileName = try r.fileName("\(name) file name")
                let size = try r.u64("\(name) size")
                guard size == UInt64(payload[next].count) else {
                    throw r.error(
                        .sizeMismatch, "\(name) frame has \(payload[next].count) bytes, header declares \(size)")
                }
                sources.append(.inline(name: fileName, bytes: payload[next]))
                next += 1
            } else {
                let path = try r.string("\(name) path")
                guard !path.isEmpty else { throw r.error(.invalidString, "empty \(name) path") }
                sources.append(.path(path))
            }
        }
        return sources
    }

    static func decodeSubmitted(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        return .submitted(jobID: try r.u64("job id"))
    }

    static func decodeStatusRequest(_ r: inout WireReader, _ flags: UInt8, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        let id = try optionalJobID(&r, flags)
        return .statusRequest(jobID: id, query: flags & 2 != 0 ? try statusQuery(&r) : nil)
    }

    static func decodeStatus(
        _ r: inout WireReader, _ flags: UInt8, _ payload: [[UInt8]],
        _ limits: WireLimits
    ) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        let id = try optionalJobID(&r, flags)
        let stateByte = try r.u8("state")
        guard let state = Wire.JobState(rawValue: stateByte) else { throw r.error(.invalidValue, "state \(stateByte)") }
        let queued = try r.u64("queued"), running = try r.u64("running")
        let done = try r.u64("done"), failed = try r.u64("failed")
        let workers = try r.u32("workers")
        let tps = try r.nonNegativeF64("tasks per second"), pps = try r.nonNegativeF64("pixels per second")
        let message = try r.string("message")
        let files = try outputFileNames(&r, limits)
        return .status(
            Wire.JobStatus(
                jobID: id, state: state, tasksQueued: queued,
                tasksRunning: running, tasksDone: done, tasksFailed: failed,
                workers: workers, tasksPerSecond: tps, pixelsPerSecond: pps,
                message: message, outputFiles: files,
                details: flags & 2 != 0 ? try statusDetails(&r, limits) : nil))
    }

    /// A job id that flags bit 0 says is present; when absent the field must be 0.
    private static func optionalJobID(_ r: inout WireReader, _ flags: UInt8) throws -> UInt64? {
        let id = try r.u64("job id")
        guard flags & 1 != 0 || id == 0 else { throw r.error(.invalidValue, "job id without its flag") }
        return flags & 1 != 0 ? id : nil
    }

    /// A status's output file names: the count is checked against the limit and the
    /// bytes left before anything is reserved.
    private static func outputFileNames(_ r: inout WireReader, _ limits: WireLimits) throws -> [String] {
        let fileCount = Int(try r.u16("file count"))
        guard fileCount <= limits.maxListCount else {
            throw r.error(.limitExceeded, "\(fileCount) files, limit \(limits.maxListCount)")
        }
        // Each file name takes at least 2 bytes: reject lies before reserving.
        guard fileCount * 2 <= r.bytes.count - r.offset else {
            throw r.error(.truncated, "header ends inside file names")
        }
        var files: [String] = []
        files.reserveCapacity(fileCount)
        for i in 0..<fileCount { files.append(try r.fileName("file name \(i)")) }
        return files
    }

    static func decodeCancel(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        return .cancel(jobID: try r.u64("job id"))
    }

    static func decodeFetchRequest(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        let job = try r.u64("job id")
        let name = try r.fileName("file name")
        let offset = try r.u64("offset")
        let maxBytes = try r.u32("max bytes", in: 1...Int(UInt32.max))
        return .fetchRequest(Wire.FetchRequest(jobID: job, fileName: name, offset: offset, maxBytes: maxBytes))
    }

    static func decodeFetchData(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 1, r)
        let job = try r.u64("job id")
        let name = try r.fileName("file name")
        let offset = try r.u64("offset"), total = try r.u64("total size")
        let (end, overflow) = offset.addingReportingOverflow(UInt64(payload[0].count))
        guard !overflow, end <= total else {
            throw r.error(.invalidValue, "chunk \(offset)+\(payload[0].count) beyond total \(total)")
        }
        return .fetchData(
            Wire.FetchChunk(
                jobID: job, fileName: name, offset: offset, totalSize: total,
                bytes: payload[0]))
    }

    static func decodeUploadPart(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 1, r)
        let job = try r.u64("job id"), offset = try r.u64("offset"), crc = try r.u32("crc32")
        let last = try r.u8("last")
        guard last <= 1 else { throw r.error(.invalidValue, "last flag \(last)") }
        return .uploadPart(Wire.UploadPart(jobID: job, offset: offset, crc32: crc, last: last == 1, bytes: payload[0]))
    }

    static func decodeUploadAck(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        return .uploadAck(jobID: try r.u64("job id"), received: try r.u64("received"))
    }

    static func decodeError(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        return .error(message: try r.string("message"))
    }
}
