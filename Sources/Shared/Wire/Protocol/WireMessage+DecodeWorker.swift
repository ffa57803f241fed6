import TesseraCore

/// Decoders of the messages a worker sends the coordinator (the table in `WireMessage`).
/// Each reads its header fields in the order `encode()` writes them and checks every
/// declared size against the limits and the payload frames before using it.
extension WireMessage {
    static func decodeHello(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        let version = try r.u8("protocol version")
        let threads = try r.u32("threads", in: 1...65_536)
        let memory = try r.u64("memory")
        let name = try r.string("worker name")
        let device = try r.string("device")
        return .hello(
            Wire.Hello(
                protocolVersion: version, workerName: name, threads: threads,
                memoryBytes: memory, device: device))
    }

    static func decodeResult(_ r: inout WireReader, _ payload: [[UInt8]], _ limits: WireLimits) throws -> WireMessage {
        let pixelLimit = limits.maxPixelsPerTask
        try expectFrames(payload, 1, r)
        let job = try r.u64("job id"), task = try r.u64("task id"), attempt = try r.u32("attempt")
        let classes = try r.u32("classes", in: 1...limits.maxClasses)
        let height = try r.u32("height", in: 1...pixelLimit)
        let width = try r.u32("width", in: 1...pixelLimit)
        guard let pixels = Checked.product(Int(height), Int(width)), pixels <= pixelLimit else {
            throw r.error(.limitExceeded, "\(height)×\(width) pixels, limit \(pixelLimit)")
        }
        guard let bytes = Checked.product(pixels, Int(classes), 4), bytes == payload[0].count else {
            throw r.error(
                .sizeMismatch,
                "values frame has \(payload[0].count) bytes, "
                    + "header declares \(classes)×\(height)×\(width) float32")
        }
        return .result(
            Wire.TaskResult(
                jobID: job, taskID: task, attempt: attempt, classes: classes,
                height: height, width: width,
                values: floats(fromLittleEndian: payload[0])))
    }

    static func decodeTaskFailed(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        let job = try r.u64("job id"), task = try r.u64("task id"), attempt = try r.u32("attempt")
        let message = try r.string("message")
        return .taskFailed(Wire.TaskFailure(jobID: job, taskID: task, attempt: attempt, message: message))
    }

    static func decodeModelRequest(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        return .modelRequest(try digest(&r))
    }

    /// The count is checked against the limit and against the bytes left before
    /// anything is reserved: a lying count costs nothing.
    static func decodeGoodbye(_ r: inout WireReader, _ payload: [[UInt8]], _ limits: WireLimits) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        let count = Int(try r.u32("task count"))
        guard count <= limits.maxListCount else {
            throw r.error(.limitExceeded, "\(count) tasks, limit \(limits.maxListCount)")
        }
        guard r.bytes.count - r.offset == count * 16 else {
            throw r.error(
                .sizeMismatch, "\(count) tasks need \(count * 16) bytes, header has \(r.bytes.count - r.offset)")
        }
        var refs: [Wire.TaskRef] = []
        refs.reserveCapacity(count)
        for _ in 0..<count { refs.append(Wire.TaskRef(jobID: try r.u64("job id"), taskID: try r.u64("task id"))) }
        return .goodbye(refs)
    }

    /// At most 64 chunks (pyramid levels); the count is checked before anything is reserved.
    static func decodeReceipt(_ r: inout WireReader, _ payload: [[UInt8]], _ limits: WireLimits) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        let job = try r.u64("job id"), task = try r.u64("task id"), attempt = try r.u32("attempt")
        let count = Int(try r.u32("chunk count", in: 1...64))
        var chunks: [Wire.TileReceipt.Chunk] = []
        for _ in 0..<count {
            let key = try r.string("chunk key")
            let size = try r.u64("chunk size")
            chunks.append(.init(key: key, size: size, crc32: try r.u32("chunk crc32")))
        }
        return .receipt(Wire.TileReceipt(jobID: job, taskID: task, attempt: attempt, chunks: chunks))
    }
}

extension WireMessage {
    /// The fields of a `result`'s header frame (`values` left empty), or nil if `header` is not one: what a
    /// receiver checks at a result's first piece, before its values come (`PieceAssembler`'s `admit`).
    package static func resultFields(_ header: [UInt8]) -> Wire.TaskResult? {
        guard header.count > prefixSize, Array(header[0..<3]) == magic, header[3] == version,
            header[4] == WireMessageType.result.rawValue, header[5] == 0
        else { return nil }
        var r = WireReader(header, offset: prefixSize, limits: .default, what: "result")
        guard let job = try? r.u64("job id"), let task = try? r.u64("task id"), let attempt = try? r.u32("attempt"),
            let classes = try? r.u32("classes"), let height = try? r.u32("height"), let width = try? r.u32("width"),
            (try? r.finish()) != nil
        else { return nil }
        return Wire.TaskResult(
            jobID: job, taskID: task, attempt: attempt, classes: classes, height: height, width: width, values: [])
    }

    /// The ids of the task or shared-storage task whose header frame starts with `header` (the rest of the
    /// frame may be missing), or nil if it is not one: a worker reports a task failed whose pieces were cut off
    /// (audit 43 F5), as it does a task it cannot decode (`WireError.task`).
    package static func taskIDs(_ header: [UInt8]) -> (jobID: UInt64, taskID: UInt64, attempt: UInt32)? {
        guard header.count > prefixSize, Array(header[0..<3]) == magic, header[3] == version,
            header[4] == WireMessageType.task.rawValue || header[4] == WireMessageType.tileTask.rawValue
        else { return nil }
        var r = WireReader(header, offset: prefixSize, limits: .default, what: "task")
        guard let job = try? r.u64("job id"), let task = try? r.u64("task id"), let attempt = try? r.u32("attempt")
        else { return nil }
        return (job, task, attempt)
    }
}
