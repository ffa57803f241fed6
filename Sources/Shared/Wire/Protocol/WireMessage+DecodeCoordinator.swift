import TesseraCore

/// Decoders of the messages the coordinator sends a worker (the table in `WireMessage`).
extension WireMessage {
    static func decodeWelcome(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        let interval = try r.u32("heartbeat interval", in: 1...3_600_000)
        let liveness = try r.u32("heartbeat liveness", in: 1...1000)
        let credit = try r.u32("max tasks in flight", in: 1...65_536)
        return .welcome(
            Wire.Welcome(
                heartbeatIntervalMilliseconds: interval, heartbeatLiveness: liveness,
                maxTasksInFlight: credit))
    }

    /// A task: its ids and model, where its output goes, its input pixels (frame 0),
    /// preprocessing and engine options (frame 1). The largest header, so its parts
    /// are read by the helpers below, in wire order.
    static func decodeTask(_ r: inout WireReader, _ payload: [[UInt8]], _ limits: WireLimits) throws -> WireMessage {
        try expectFrames(payload, 2, r)
        let job = try r.u64("job id"), task = try r.u64("task id"), attempt = try r.u32("attempt")
        return try naming((job, task, attempt)) {
            try decodeTaskBody(&r, payload, limits, job: job, task: task, attempt: attempt)
        }
    }

    /// Rethrows a decoding error with the task it was for.
    private static func naming(
        _ ref: (UInt64, UInt64, UInt32), _ body: () throws -> WireMessage
    ) throws -> WireMessage {
        do { return try body() } catch var error as WireError {
            error.task = ref
            throw error
        }
    }

    private static func decodeTaskBody(
        _ r: inout WireReader, _ payload: [[UInt8]], _ limits: WireLimits, job: UInt64, task: UInt64, attempt: UInt32
    ) throws -> WireMessage {
        let modelDigest = try digest(&r)
        let mode = try mode(&r)
        let outputRect = try taskOutputRect(&r, limits)
        let (dy, dx) = try taskDisplacement(&r, mode: mode, limits)
        let imageH = try r.u32("image height", in: 0...Int(Int32.max))
        let imageW = try r.u32("image width", in: 0...Int(Int32.max))
        let input = try taskInput(&r, pixels: payload[0], limits)
        // The mean is per channel of the net's input, not of the image (a grey image
        // feeds a colour net): the worker checks it against the net.
        let pre = try preprocessing(&r, limits: limits)
        try taskOptionsSize(&r, frame: payload[1], limits)
        let keptCount = try r.u32("kept classes", in: 0...Int(UInt16.max))
        var kept: [UInt32] = []
        for _ in 0..<keptCount {
            let k = try r.u32("kept class", in: 0...Int(UInt16.max))
            guard kept.last.map({ $0 < k }) ?? true else {
                throw r.error(.invalidValue, "kept classes must increase: \(k) after \(kept.last!)")
            }
            kept.append(k)
        }
        return .task(
            Wire.TaskSpec(
                jobID: job, taskID: task, attempt: attempt, modelDigest: modelDigest, mode: mode,
                outputRect: outputRect,
                displacementY: dy, displacementX: dx, imageHeight: imageH, imageWidth: imageW,
                input: input, preprocessing: pre,
                options: payload[1], keptClasses: kept))
    }

    /// A shared-storage task: ids, model, the map tile, preprocessing, the image
    /// and store paths (checked by the worker against what it may read and write)
    /// and the engine options (frame 0).
    static func decodeTileTask(
        _ r: inout WireReader, _ payload: [[UInt8]], _ limits: WireLimits
    ) throws
        -> WireMessage
    {
        try expectFrames(payload, 1, r)
        let job = try r.u64("job id"), task = try r.u64("task id"), attempt = try r.u32("attempt")
        return try naming((job, task, attempt)) {
            try decodeTileTaskBody(&r, payload, limits, job: job, task: task, attempt: attempt)
        }
    }

    private static func decodeTileTaskBody(
        _ r: inout WireReader, _ payload: [[UInt8]], _ limits: WireLimits, job: UInt64, task: UInt64, attempt: UInt32
    ) throws -> WireMessage {
        let modelDigest = try digest(&r)
        let mode = try mode(&r)
        let tile = try taskOutputRect(&r, limits)
        let pre = try preprocessing(&r, limits: limits)
        let image = try r.string("image path")
        // The level, and above bit 15 the image − 1 (`TileTaskSpec.levelField`).
        let field = try r.u32("level and image")
        let level = field & 0xFFFF
        guard level <= 64 else { throw r.error(.limitExceeded, "level \(level) outside 0…64") }
        let store = try r.string("store path")
        guard !image.isEmpty, !store.isEmpty else { throw r.error(.invalidValue, "empty image or store path") }
        try taskOptionsSize(&r, frame: payload[0], limits)
        return .tileTask(
            Wire.TileTaskSpec(
                jobID: job, taskID: task, attempt: attempt, modelDigest: modelDigest, mode: mode, tile: tile,
                preprocessing: pre, imagePath: image, image: (field >> 16) + 1, level: level, storePath: store,
                options: payload[0]))
    }

    /// The output rectangle: within UInt32 and within the per-task pixel limit.
    private static func taskOutputRect(_ r: inout WireReader, _ limits: WireLimits) throws -> Wire.Rect {
        let pixelLimit = limits.maxPixelsPerTask
        let y0 = try r.u32("output y0"), x0 = try r.u32("output x0")
        let oh = try r.u32("output height", in: 1...pixelLimit), ow = try r.u32("output width", in: 1...pixelLimit)
        guard !y0.addingReportingOverflow(oh).overflow, !x0.addingReportingOverflow(ow).overflow else {
            throw r.error(.invalidValue, "output rect overflows")
        }
        guard let outPixels = Checked.product(Int(oh), Int(ow)), outPixels <= pixelLimit else {
            throw r.error(.limitExceeded, "output \(oh)×\(ow) pixels, limit \(pixelLimit)")
        }
        return Wire.Rect(y0: y0, x0: x0, height: oh, width: ow)
    }

    /// The displacement of a `shift` task; every other mode has none.
    private static func taskDisplacement(
        _ r: inout WireReader, mode: Wire.Mode,
        _ limits: WireLimits
    ) throws -> (y: UInt32, x: UInt32) {
        let dy = try r.u32("displacement y", in: 0...limits.maxDisplacement)
        let dx = try r.u32("displacement x", in: 0...limits.maxDisplacement)
        guard mode == .shift || (dy == 0 && dx == 0) else {
            throw r.error(.invalidValue, "displacement (\(dy), \(dx)) in mode \(mode)")
        }
        return (dy, dx)
    }

    /// The input region's shape, checked against the limits and the pixel frame's size.
    private static func taskInput(
        _ r: inout WireReader, pixels: [UInt8],
        _ limits: WireLimits
    ) throws -> Wire.PixelRegion {
        let pixelLimit = limits.maxPixelsPerTask
        let ih = try r.u32("input height", in: 1...pixelLimit), iw = try r.u32("input width", in: 1...pixelLimit)
        let channels = try r.u32("channels", in: 1...limits.maxChannels)
        let bps = try r.u8("bytes per sample")
        guard bps == 1 || bps == 2 else { throw r.error(.invalidValue, "bytes per sample \(bps)") }
        guard let inPixels = Checked.product(Int(ih), Int(iw)), inPixels <= pixelLimit else {
            throw r.error(.limitExceeded, "input \(ih)×\(iw) pixels, limit \(pixelLimit)")
        }
        guard let pixelBytes = Checked.product(inPixels, Int(channels), Int(bps)), pixelBytes == pixels.count
        else {
            throw r.error(
                .sizeMismatch,
                "pixel frame has \(pixels.count) bytes, header declares "
                    + "\(ih)×\(iw)×\(channels)×\(bps)")
        }
        return Wire.PixelRegion(height: ih, width: iw, channels: channels, bytesPerSample: bps, pixels: pixels)
    }

    /// The options frame's declared size: within the limit and equal to the frame's.
    private static func taskOptionsSize(_ r: inout WireReader, frame: [UInt8], _ limits: WireLimits) throws {
        let optionsSize = Int(try r.u32("options size"))
        guard optionsSize <= limits.maxOptionsBytes else {
            throw r.error(.limitExceeded, "options of \(optionsSize) bytes, limit \(limits.maxOptionsBytes)")
        }
        guard optionsSize == frame.count else {
            throw r.error(.sizeMismatch, "options frame has \(frame.count) bytes, header declares \(optionsSize)")
        }
    }

    static func decodeModelData(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 2, r)
        let d = try digest(&r)
        let protoSize = try r.u64("prototxt size"), weightsSize = try r.u64("weights size")
        guard protoSize == UInt64(payload[0].count), weightsSize == UInt64(payload[1].count) else {
            throw r.error(
                .sizeMismatch,
                "frames of \(payload[0].count)/\(payload[1].count) bytes, "
                    + "header declares \(protoSize)/\(weightsSize)")
        }
        return .modelData(Wire.ModelData(digest: d, prototxt: payload[0], weights: payload[1]))
    }

    static func decodeDisconnect(_ r: inout WireReader, _ payload: [[UInt8]]) throws -> WireMessage {
        try expectFrames(payload, 0, r)
        return .disconnect(reason: try r.string("reason"))
    }
}
