import TesseraCore
extension WireMessage {
    /// Parses untrusted frames (routing envelope already removed).
    ///
    /// Never traps and allocates nothing proportional to a declared size before
    /// checking it: frame count and total bytes against `limits` first, then the
    /// header prefix, then every count, size and product with overflow-checked
    /// arithmetic against both the limits and the actual frame sizes. Throws
    /// `WireError` (only) with a reason for the log.
    public static func decode(_ frames: [[UInt8]], limits: WireLimits = .default) throws -> WireMessage {
        guard !frames.isEmpty else { throw WireError(.frameCount, "empty message") }
        guard frames.count <= limits.maxFrames else {
            throw WireError(.frameCount, "\(frames.count) frames, limit \(limits.maxFrames)")
        }
        var total = 0
        for f in frames {
            let (sum, overflow) = total.addingReportingOverflow(f.count)
            guard !overflow, sum <= limits.maxTotalBytes else {
                throw WireError(.limitExceeded, "message larger than \(limits.maxTotalBytes) bytes")
            }
            total = sum
        }
        let header = frames[0]
        guard header.count >= prefixSize else {
            throw WireError(.truncated, "header of \(header.count) bytes, need at least \(prefixSize)")
        }
        guard Array(header[0..<3]) == magic else { throw WireError(.badMagic, "frame 0 does not start with TSR") }
        guard header[3] == version else {
            throw WireError(.unsupportedVersion, "protocol version \(header[3]), this build speaks \(version)")
        }
        guard let type = WireMessageType(rawValue: header[4]) else {
            throw WireError(.unknownType, "message type 0x\(String(header[4], radix: 16))")
        }
        let flags = header[5]
        let allowedFlags: UInt8 = switch type {
        case .submit: 0b111
        case .statusRequest, .status: 0b1
        default: 0
        }
        guard flags & ~allowedFlags == 0 else {
            throw WireError(.badFlags, "\(type): flags 0x\(String(flags, radix: 16)) not defined")
        }
        var r = WireReader(header, offset: prefixSize, limits: limits, what: "\(type)")
        let payload = Array(frames.dropFirst())
        let message = try decodeBody(type: type, flags: flags, reader: &r, payload: payload, limits: limits)
        try r.finish()
        return message
    }

    private static func expectFrames(_ payload: [[UInt8]], _ count: Int, _ r: WireReader) throws {
        guard payload.count == count else {
            throw r.error(.frameCount, "\(payload.count) payload frames, expected \(count)")
        }
    }

    private static func digest(_ r: inout WireReader) throws -> Wire.ModelDigest {
        Wire.ModelDigest(bytes: try r.raw(32, "model digest"))!
    }

    private static func preprocessing(_ r: inout WireReader, limits: WireLimits) throws -> Wire.Preprocessing {
        let orderByte = try r.u8("channel order")
        guard let order = Wire.Preprocessing.ChannelOrder(rawValue: orderByte) else {
            throw r.error(.invalidValue, "channel order \(orderByte)")
        }
        let rawScale = try r.f32("raw scale")
        let scale = try r.f32("scale")
        let mean = try r.floats("mean values", maxCount: limits.maxChannels)
        return Wire.Preprocessing(channelOrder: order, rawScale: rawScale, scale: scale, mean: mean)
    }

    private static func mode(_ r: inout WireReader) throws -> Wire.Mode {
        let byte = try r.u8("mode")
        guard let mode = Wire.Mode(rawValue: byte) else { throw r.error(.invalidValue, "mode \(byte)") }
        return mode
    }

    // The body of each message type; `r` is positioned after the 6-byte prefix.
    // swiftlint:disable:next cyclomatic_complexity function_body_length
    private static func decodeBody(type: WireMessageType, flags: UInt8, reader r: inout WireReader,
                                   payload: [[UInt8]], limits: WireLimits) throws -> WireMessage {
        let pixelLimit = limits.maxPixelsPerTask
        switch type {
        case .hello:
            try expectFrames(payload, 0, r)
            let version = try r.u8("protocol version")
            let threads = try r.u32("threads", in: 1...65_536)
            let memory = try r.u64("memory")
            let name = try r.string("worker name")
            let device = try r.string("device")
            return .hello(Wire.Hello(protocolVersion: version, workerName: name, threads: threads,
                                     memoryBytes: memory, device: device))

        case .heartbeat:
            try expectFrames(payload, 0, r)
            return .heartbeat

        case .result:
            try expectFrames(payload, 1, r)
            let job = try r.u64("job id"), task = try r.u64("task id"), attempt = try r.u32("attempt")
            let classes = try r.u32("classes", in: 1...limits.maxClasses)
            let height = try r.u32("height", in: 1...pixelLimit)
            let width = try r.u32("width", in: 1...pixelLimit)
            guard let pixels = Checked.product(Int(height), Int(width)), pixels <= pixelLimit else {
                throw r.error(.limitExceeded, "\(height)×\(width) pixels, limit \(pixelLimit)")
            }
            guard let bytes = Checked.product(pixels, Int(classes), 4), bytes == payload[0].count else {
                throw r.error(.sizeMismatch, "values frame has \(payload[0].count) bytes, "
                              + "header declares \(classes)×\(height)×\(width) float32")
            }
            return .result(Wire.TaskResult(jobID: job, taskID: task, attempt: attempt, classes: classes,
                                           height: height, width: width,
                                           values: floats(fromLittleEndian: payload[0])))

        case .taskFailed:
            try expectFrames(payload, 0, r)
            let job = try r.u64("job id"), task = try r.u64("task id"), attempt = try r.u32("attempt")
            let message = try r.string("message")
            return .taskFailed(Wire.TaskFailure(jobID: job, taskID: task, attempt: attempt, message: message))

        case .modelRequest:
            try expectFrames(payload, 0, r)
            return .modelRequest(try digest(&r))

        case .goodbye:
            try expectFrames(payload, 0, r)
            let count = Int(try r.u32("task count"))
            guard count <= limits.maxListCount else {
                throw r.error(.limitExceeded, "\(count) tasks, limit \(limits.maxListCount)")
            }
            guard r.bytes.count - r.offset == count * 16 else {
                throw r.error(.sizeMismatch, "\(count) tasks need \(count * 16) bytes, header has \(r.bytes.count - r.offset)")
            }
            var refs: [Wire.TaskRef] = []
            refs.reserveCapacity(count)
            for _ in 0..<count { refs.append(Wire.TaskRef(jobID: try r.u64("job id"), taskID: try r.u64("task id"))) }
            return .goodbye(refs)

        case .welcome:
            try expectFrames(payload, 0, r)
            let interval = try r.u32("heartbeat interval", in: 1...3_600_000)
            let liveness = try r.u32("heartbeat liveness", in: 1...1000)
            let credit = try r.u32("max tasks in flight", in: 1...65_536)
            return .welcome(Wire.Welcome(heartbeatIntervalMilliseconds: interval, heartbeatLiveness: liveness,
                                         maxTasksInFlight: credit))

        case .task:
            try expectFrames(payload, 2, r)
            let job = try r.u64("job id"), task = try r.u64("task id"), attempt = try r.u32("attempt")
            let modelDigest = try digest(&r)
            let mode = try mode(&r)
            let y0 = try r.u32("output y0"), x0 = try r.u32("output x0")
            let oh = try r.u32("output height", in: 1...pixelLimit), ow = try r.u32("output width", in: 1...pixelLimit)
            guard !y0.addingReportingOverflow(oh).overflow, !x0.addingReportingOverflow(ow).overflow else {
                throw r.error(.invalidValue, "output rect overflows")
            }
            guard let outPixels = Checked.product(Int(oh), Int(ow)), outPixels <= pixelLimit else {
                throw r.error(.limitExceeded, "output \(oh)×\(ow) pixels, limit \(pixelLimit)")
            }
            let dy = try r.u32("displacement y", in: 0...limits.maxDisplacement)
            let dx = try r.u32("displacement x", in: 0...limits.maxDisplacement)
            guard mode == .shift || (dy == 0 && dx == 0) else {
                throw r.error(.invalidValue, "displacement (\(dy), \(dx)) in mode \(mode)")
            }
            let imageH = try r.u32("image height", in: 0...Int(Int32.max))
            let imageW = try r.u32("image width", in: 0...Int(Int32.max))
            let ih = try r.u32("input height", in: 1...pixelLimit), iw = try r.u32("input width", in: 1...pixelLimit)
            let channels = try r.u32("channels", in: 1...limits.maxChannels)
            let bps = try r.u8("bytes per sample")
            guard bps == 1 || bps == 2 else { throw r.error(.invalidValue, "bytes per sample \(bps)") }
            guard let inPixels = Checked.product(Int(ih), Int(iw)), inPixels <= pixelLimit else {
                throw r.error(.limitExceeded, "input \(ih)×\(iw) pixels, limit \(pixelLimit)")
            }
            guard let pixelBytes = Checked.product(inPixels, Int(channels), Int(bps)), pixelBytes == payload[0].count
            else {
                throw r.error(.sizeMismatch, "pixel frame has \(payload[0].count) bytes, header declares "
                              + "\(ih)×\(iw)×\(channels)×\(bps)")
            }
            let pre = try preprocessing(&r, limits: limits)
            guard pre.mean.count <= 1 || pre.mean.count == Int(channels) else {
                throw r.error(.invalidValue, "\(pre.mean.count) mean values for \(channels) channels")
            }
            let optionsSize = Int(try r.u32("options size"))
            guard optionsSize <= limits.maxOptionsBytes else {
                throw r.error(.limitExceeded, "options of \(optionsSize) bytes, limit \(limits.maxOptionsBytes)")
            }
            guard optionsSize == payload[1].count else {
                throw r.error(.sizeMismatch, "options frame has \(payload[1].count) bytes, header declares \(optionsSize)")
            }
            let input = Wire.PixelRegion(height: ih, width: iw, channels: channels, bytesPerSample: bps,
                                         pixels: payload[0])
            return .task(Wire.TaskSpec(jobID: job, taskID: task, attempt: attempt, modelDigest: modelDigest, mode: mode,
                                       outputRect: Wire.Rect(y0: y0, x0: x0, height: oh, width: ow),
                                       displacementY: dy, displacementX: dx, imageHeight: imageH, imageWidth: imageW,
                                       input: input, preprocessing: pre,
                                       options: payload[1]))

        case .modelData:
            try expectFrames(payload, 2, r)
            let d = try digest(&r)
            let protoSize = try r.u64("prototxt size"), weightsSize = try r.u64("weights size")
            guard protoSize == UInt64(payload[0].count), weightsSize == UInt64(payload[1].count) else {
                throw r.error(.sizeMismatch, "frames of \(payload[0].count)/\(payload[1].count) bytes, "
                              + "header declares \(protoSize)/\(weightsSize)")
            }
            return .modelData(Wire.ModelData(digest: d, prototxt: payload[0], weights: payload[1]))

        case .disconnect:
            try expectFrames(payload, 0, r)
            return .disconnect(reason: try r.string("reason"))

        case .submit:
            let inlineCount = flags.nonzeroBitCount
            try expectFrames(payload, inlineCount, r)
            let mode = try mode(&r)
            let tile = try r.u32("tile size", in: 1...limits.maxTileSize)
            let pre = try preprocessing(&r, limits: limits)
            let options = try r.string("output options")
            var sources: [Wire.FileSource] = []
            var next = 0
            for (i, name) in ["prototxt", "weights", "image"].enumerated() {
                if flags & (1 << i) != 0 {
                    let fileName = try r.fileName("\(name) file name")
                    let size = try r.u64("\(name) size")
                    guard size == UInt64(payload[next].count) else {
                        throw r.error(.sizeMismatch, "\(name) frame has \(payload[next].count) bytes, header declares \(size)")
                    }
                    sources.append(.inline(name: fileName, bytes: payload[next]))
                    next += 1
                } else {
                    let path = try r.string("\(name) path")
                    guard !path.isEmpty else { throw r.error(.invalidString, "empty \(name) path") }
                    sources.append(.path(path))
                }
            }
            return .submit(Wire.JobSpec(mode: mode, tileSize: tile, preprocessing: pre, outputOptions: options,
                                        prototxt: sources[0], weights: sources[1], image: sources[2]))

        case .submitted:
            try expectFrames(payload, 0, r)
            return .submitted(jobID: try r.u64("job id"))

        case .statusRequest:
            try expectFrames(payload, 0, r)
            let id = try r.u64("job id")
            guard flags & 1 != 0 || id == 0 else { throw r.error(.invalidValue, "job id without its flag") }
            return .statusRequest(jobID: flags & 1 != 0 ? id : nil)

        case .status:
            try expectFrames(payload, 0, r)
            let id = try r.u64("job id")
            guard flags & 1 != 0 || id == 0 else { throw r.error(.invalidValue, "job id without its flag") }
            let stateByte = try r.u8("state")
            guard let state = Wire.JobState(rawValue: stateByte) else { throw r.error(.invalidValue, "state \(stateByte)") }
            let queued = try r.u64("queued"), running = try r.u64("running")
            let done = try r.u64("done"), failed = try r.u64("failed")
            let workers = try r.u32("workers")
            let tps = try r.nonNegativeF64("tasks per second"), pps = try r.nonNegativeF64("pixels per second")
            let message = try r.string("message")
            let fileCount = Int(try r.u16("file count"))
            guard fileCount <= limits.maxListCount else {
                throw r.error(.limitExceeded, "\(fileCount) files, limit \(limits.maxListCount)")
            }
            // Each file name takes at least 2 bytes: reject lies before reserving.
            guard fileCount * 2 <= r.bytes.count - r.offset else { throw r.error(.truncated, "header ends inside file names") }
            var files: [String] = []
            files.reserveCapacity(fileCount)
            for i in 0..<fileCount { files.append(try r.fileName("file name \(i)")) }
            return .status(Wire.JobStatus(jobID: flags & 1 != 0 ? id : nil, state: state, tasksQueued: queued,
                                          tasksRunning: running, tasksDone: done, tasksFailed: failed,
                                          workers: workers, tasksPerSecond: tps, pixelsPerSecond: pps,
                                          message: message, outputFiles: files))

        case .cancel:
            try expectFrames(payload, 0, r)
            return .cancel(jobID: try r.u64("job id"))

        case .fetchRequest:
            try expectFrames(payload, 0, r)
            let job = try r.u64("job id")
            let name = try r.fileName("file name")
            let offset = try r.u64("offset")
            let maxBytes = try r.u32("max bytes", in: 1...Int(UInt32.max))
            return .fetchRequest(Wire.FetchRequest(jobID: job, fileName: name, offset: offset, maxBytes: maxBytes))

        case .fetchData:
            try expectFrames(payload, 1, r)
            let job = try r.u64("job id")
            let name = try r.fileName("file name")
            let offset = try r.u64("offset"), total = try r.u64("total size")
            let (end, overflow) = offset.addingReportingOverflow(UInt64(payload[0].count))
            guard !overflow, end <= total else {
                throw r.error(.invalidValue, "chunk \(offset)+\(payload[0].count) beyond total \(total)")
            }
            return .fetchData(Wire.FetchChunk(jobID: job, fileName: name, offset: offset, totalSize: total,
                                              bytes: payload[0]))

        case .error:
            try expectFrames(payload, 0, r)
            return .error(message: try r.string("message"))
        }
    }
}
