import TesseraCore

extension WireMessage {
    /// Parses untrusted frames (routing envelope already removed).
    ///
    /// Never traps and allocates nothing proportional to a declared size before
    /// checking it: frame count and total bytes against `limits` first, then the
    /// header prefix, then every count, size and product with overflow-checked
    /// arithmetic against both the limits and the actual frame sizes. Throws
    /// `WireError` (only) with a reason for the log.
    package static func decode(_ frames: [[UInt8]], limits: WireLimits = .default) throws -> WireMessage {
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
        let allowedFlags: UInt8 =
            switch type {
            case .submit: 0b111
            case .statusRequest, .status: 0b11
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

    // MARK: Fields several messages share

    /// Refuses a message whose payload frame count is not the type's.
    static func expectFrames(_ payload: [[UInt8]], _ count: Int, _ r: WireReader) throws {
        guard payload.count == count else {
            throw r.error(.frameCount, "\(payload.count) payload frames, expected \(count)")
        }
    }

    static func digest(_ r: inout WireReader) throws -> Wire.ModelDigest {
        Wire.ModelDigest(bytes: try r.raw(32, "model digest"))!
    }

    static func preprocessing(_ r: inout WireReader, limits: WireLimits) throws -> Wire.Preprocessing {
        let orderByte = try r.u8("channel order")
        guard let order = Wire.Preprocessing.ChannelOrder(rawValue: orderByte & 0x7F) else {
            throw r.error(.invalidValue, "channel order \(orderByte)")
        }
        let rawScale = try r.f32("raw scale")
        let scale = try r.f32("scale")
        let mean = try r.floats("mean values", maxCount: limits.maxChannels)
        var std: [Float] = []
        if orderByte & 0x80 != 0 {
            std = try r.floats("std values", maxCount: limits.maxChannels)
            guard !std.isEmpty else { throw r.error(.invalidValue, "an empty std list") }
        }
        return Wire.Preprocessing(channelOrder: order, rawScale: rawScale, scale: scale, mean: mean, std: std)
    }

    static func mode(_ r: inout WireReader) throws -> Wire.Mode {
        let byte = try r.u8("mode")
        guard let mode = Wire.Mode(rawValue: byte) else { throw r.error(.invalidValue, "mode \(byte)") }
        return mode
    }

    /// The body of each message type; `r` is positioned after the 6-byte prefix.
    /// One decoder per type (`WireMessage+Decode{Worker,Coordinator,Client}.swift`),
    /// so each reads its fields top to bottom in the order `encode()` writes them.
    private static func decodeBody(
        type: WireMessageType, flags: UInt8, reader r: inout WireReader,
        payload: [[UInt8]], limits: WireLimits
    ) throws -> WireMessage {
        switch type {
        // Worker → coordinator.
        case .hello: return try decodeHello(&r, payload)
        case .heartbeat:
            try expectFrames(payload, 0, r)
            return .heartbeat
        case .result: return try decodeResult(&r, payload, limits)
        case .taskFailed: return try decodeTaskFailed(&r, payload)
        case .modelRequest: return try decodeModelRequest(&r, payload)
        case .goodbye: return try decodeGoodbye(&r, payload, limits)
        case .receipt: return try decodeReceipt(&r, payload, limits)
        case .piece: return try decodePiece(&r, payload, limits)
        // Coordinator → worker.
        case .welcome: return try decodeWelcome(&r, payload)
        case .task: return try decodeTask(&r, payload, limits)
        case .modelData: return try decodeModelData(&r, payload)
        case .disconnect: return try decodeDisconnect(&r, payload)
        case .revoke:
            try expectFrames(payload, 0, r)
            return .revoke(jobID: try r.u64("job id"))
        case .tileTask: return try decodeTileTask(&r, payload, limits)
        // Client ↔ coordinator.
        case .submit: return try decodeSubmit(&r, flags, payload, limits)
        case .submitted: return try decodeSubmitted(&r, payload)
        case .statusRequest: return try decodeStatusRequest(&r, flags, payload)
        case .status: return try decodeStatus(&r, flags, payload, limits)
        case .cancel: return try decodeCancel(&r, payload)
        case .fetchRequest: return try decodeFetchRequest(&r, payload)
        case .fetchData: return try decodeFetchData(&r, payload)
        case .uploadPart: return try decodeUploadPart(&r, payload)
        case .uploadAck: return try decodeUploadAck(&r, payload)
        case .error: return try decodeError(&r, payload)
        }
    }
}
