/// The message type byte of frame 0.
package enum WireMessageType: UInt8, Sendable, CaseIterable {
    // Worker → coordinator (heartbeat goes both ways).
    case hello = 0x01, heartbeat = 0x02, result = 0x03, taskFailed = 0x04, modelRequest = 0x05, goodbye = 0x06
    case receipt = 0x07
    /// Both ways on the worker link: a piece of a larger message (`Wire.Piece`).
    case piece = 0x08
    // Coordinator → worker.
    case welcome = 0x11, task = 0x12, modelData = 0x13, disconnect = 0x14, tileTask = 0x15
    case revoke = 0x16
    // Client ↔ coordinator.
    case submit = 0x21, submitted = 0x22, statusRequest = 0x23, status = 0x24, cancel = 0x25
    case fetchRequest = 0x26, fetchData = 0x27, error = 0x28
    case uploadPart = 0x29, uploadAck = 0x2A

}

/// Every Tessera message, in both directions.
///
/// **Wire format (version 3; 3 added the kept classes of a `task`).** A message is one ZeroMQ multipart message (after the
/// ROUTER routing frame, if any). Frame 0 is the header: `"TSR"`, the version byte
/// (1), the type byte (`WireMessageType`), a flags byte, then the type's fixed fields,
/// little-endian (strings: UInt16 byte count + UTF-8; float lists: UInt16 count +
/// float32s). The following frames are raw payloads with no per-element encoding:
/// pixels as UInt8/UInt16-LE samples, results as float32-LE, files as bytes.
///
/// | type | header fields after the 6-byte prefix | payload frames |
/// |---|---|---|
/// | hello | u8 version, u32 threads, u64 memory, str name, str device | – |
/// | heartbeat | – | – |
/// | result | u64 job, u64 task, u32 attempt, u32 classes, u32 h, u32 w | float32 values |
/// | taskFailed | u64 job, u64 task, u32 attempt, str message | – |
/// | modelRequest | 32-byte digest | – |
/// | goodbye | u32 count, count × (u64 job, u64 task) | – |
/// | receipt | u64 job, u64 task, u32 attempt, u32 count, count × (str key, u64 size, u32 crc32) | – |
/// | piece | u64 offset, u8 count, count × u64 frame size | bytes (from offset, of the message's frames end to end) |
/// | welcome | u32 heartbeat ms, u32 liveness, u32 max tasks in flight | – |
/// | task | u64 job, u64 task, u32 attempt, digest, u8 mode, u32 y0 x0 h w, u32 dy dx, u32 image h w, u32 h w c, u8 bytes/sample, preprocessing, u32 options size, u32 count, count × u32 kept class (ascending; none: every class) | pixels, options |
/// | modelData | digest, u64 prototxt size, u64 weights size | prototxt, weights |
/// | disconnect | str reason | – |
/// | revoke | u64 job | – |
/// | tileTask | u64 job, u64 task, u32 attempt, digest, u8 mode, u32 y0 x0 h w, preprocessing, str image, u32 level (bits 16–31: image − 1), str store, u32 options size | options |
/// | submit | u8 mode, u32 tile, preprocessing, str options, 3 × source | one per inline source (flags bit 0/1/2: prototxt/weights/image inline) |
/// | submitted, cancel | u64 job | – |
/// | statusRequest | u64 job (flags bit 0: present)[, query (flags bit 1)] | – |
/// | status | u64 job (flags bit 0), u8 state, u64 × 4 counts, u32 workers, f64 tasks/s, f64 px/s, str message, u16 count + str files[, details (flags bit 1)] | – |
/// | fetchRequest | u64 job, str file, u64 offset, u32 max bytes | – |
/// | fetchData | u64 job, str file, u64 offset, u64 total | chunk bytes |
/// | error | str message | – |
/// | uploadPart | u64 job, u64 offset, u32 crc32 of the bytes, u8 last (0/1) | bytes |
/// | uploadAck | u64 job, u64 bytes received | – |
///
/// preprocessing = u8 channel order (bit 7: a std follows), f32 raw scale, f32 scale, float list mean[, float list std].
/// source = str name-or-path (+ u64 size when inline).
/// query = u8 state mask, u8 list flags (bit 0: every ended job), str owner.
/// A tileTask's level field holds the image of a multi-image file − 1 in bits 16–31 (`--image`; 0 for
/// image 1, the bytes of earlier builds). An earlier build refuses a level over 64 after reading the
/// task's ids, so its worker fails a task for another image (a `taskFailed`) instead of mapping image 1.
/// details = u32 count × job (u64 id, u8 state, str image, str owner, u64 tasks queued running done failed,
/// u32 workers, f64 tasks/s, f64 px/s, f64 submitted, f64 ended, u8 flags (bit 0: waiting for workers),
/// str message), u32 count × worker (str name, u32 threads, u32 in flight, u64 done), u64 × 5 job counts,
/// u64 matched, u64 active jobs, f64 rate window s. A coordinator answers with details only a request
/// with a query (bit 1 came within protocol 3: an earlier build refuses it as undefined flags).
///
/// Use `encode()` to get the frames and `WireMessage.decode(_:limits:)` to parse
/// untrusted frames; `ZMQSocket.send(_:to:)` / `receiveWire(limits:)` do both.
package enum WireMessage: Equatable, Sendable {
    case hello(Wire.Hello)
    case heartbeat
    case result(Wire.TaskResult)
    case taskFailed(Wire.TaskFailure)
    case modelRequest(Wire.ModelDigest)
    /// The worker is leaving and returns these unfinished tasks.
    case goodbye([Wire.TaskRef])
    /// A shared-storage task's result: the chunks the worker wrote, not the values.
    case receipt(Wire.TileReceipt)
    /// On the worker link, both ways: a piece of a message larger than `Wire.pieceBytes` (`WireOutbox`,
    /// `PieceAssembler`).
    case piece(Wire.Piece)
    case welcome(Wire.Welcome)
    case task(Wire.TaskSpec)
    case modelData(Wire.ModelData)
    /// The coordinator drops the worker (re-register on a new socket).
    case disconnect(reason: String)
    /// A shared-storage task: coordinates only; the worker reads and writes the files.
    case tileTask(Wire.TileTaskSpec)
    /// The job ended (cancelled, failed): the worker drops its tasks that have not started and reports each
    /// failed (`Wire.TaskFailure.revoked`); the one it is computing finishes.
    case revoke(jobID: UInt64)
    case submit(Wire.JobSpec)
    case submitted(jobID: UInt64)
    /// Status of one job, or of the cluster when nil; with a query, the detailed
    /// status (`Wire.StatusDetails`), the cluster's listing chosen by the query.
    case statusRequest(jobID: UInt64?, query: Wire.StatusQuery? = nil)
    case status(Wire.JobStatus)
    case cancel(jobID: UInt64)
    case fetchRequest(Wire.FetchRequest)
    case fetchData(Wire.FetchChunk)
    case error(message: String)
    /// Raw image bytes of an upload job whose submission announced them (`JobOptions.rawImage`).
    case uploadPart(Wire.UploadPart)
    /// The answer to an upload part that is not the last (the last is answered `submitted`).
    case uploadAck(jobID: UInt64, received: UInt64)

    /// "TSR".
    package static let magic: [UInt8] = [0x54, 0x53, 0x52]
    /// The protocol version this build speaks. 4: a net that pads places each pixel's window where
    /// the classifier does (`TaskGeometry.centring`); a worker of 3 would read tasks' inputs 1–3
    /// pixels off and give a shifted map, so it is refused at its handshake instead. 5: a net that
    /// pads is padded at the edges of the whole mirror-padded image (`TaskGeometry.wholeImageInput`),
    /// and fast grid points past the image are not interpolated from: a worker of 4 would give
    /// other last rows and columns. 6: that pass keeps the partial last windows of poolings that
    /// round up (Caffe's): a worker of 5 would give other last rows and columns. 7: of those windows, only
    /// the ones that start on a real input pixel are real values (`PassLayout.PartialWindows`): a worker of
    /// 6 gave NaN or saturated pixels in `dense` and `shift` maps of the nets where others start past it. 8: a
    /// message over `Wire.pieceBytes` crosses the worker link as `piece`s (`WireOutbox`), which a build of 7
    /// cannot read, and an ended job's tasks are `revoke`d.
    package static let version: UInt8 = 8
    /// Bytes before the type-specific fields.
    static let prefixSize = 6

    /// The message's type byte.
    package var type: WireMessageType {
        switch self {
        case .hello: .hello
        case .heartbeat: .heartbeat
        case .result: .result
        case .taskFailed: .taskFailed
        case .modelRequest: .modelRequest
        case .goodbye: .goodbye
        case .receipt: .receipt
        case .piece: .piece
        case .tileTask: .tileTask
        case .welcome: .welcome
        case .task: .task
        case .modelData: .modelData
        case .disconnect: .disconnect
        case .revoke: .revoke
        case .submit: .submit
        case .submitted: .submitted
        case .statusRequest: .statusRequest
        case .status: .status
        case .cancel: .cancel
        case .fetchRequest: .fetchRequest
        case .fetchData: .fetchData
        case .error: .error
        case .uploadPart: .uploadPart
        case .uploadAck: .uploadAck
        }
    }

    // MARK: Encoding

    /// The frames of this message (header first). Payload frames are copied once
    /// (float results are converted to little-endian bytes).
    package func encode() -> [[UInt8]] {
        switch self {
        case .hello(let m):
            var w = WireWriter(type: .hello)
            w.u8(m.protocolVersion); w.u32(m.threads); w.u64(m.memoryBytes); w.string(m.workerName); w.string(m.device)
            return [w.bytes]
        case .heartbeat:
            return [WireWriter(type: .heartbeat).bytes]
        case .result(let m):
            return [Self.resultHeader(m), Self.floatBytes(m.values)]
        case .taskFailed(let m):
            var w = WireWriter(type: .taskFailed)
            w.u64(m.jobID); w.u64(m.taskID); w.u32(m.attempt); w.string(m.message)
            return [w.bytes]
        case .modelRequest(let digest):
            var w = WireWriter(type: .modelRequest)
            w.raw(digest.bytes)
            return [w.bytes]
        case .goodbye(let refs):
            var w = WireWriter(type: .goodbye)
            w.u32(UInt32(clamping: refs.count))
            for r in refs { w.u64(r.jobID); w.u64(r.taskID) }
            return [w.bytes]
        case .receipt(let m):
            var w = WireWriter(type: .receipt)
            w.u64(m.jobID); w.u64(m.taskID); w.u32(m.attempt); w.u32(UInt32(clamping: m.chunks.count))
            for c in m.chunks { w.string(c.key); w.u64(c.size); w.u32(c.crc32) }
            return [w.bytes]
        case .piece(let m):
            return [Self.pieceHeader(frameSizes: m.frameSizes, offset: m.offset), m.bytes]
        case .tileTask(let m):
            var w = WireWriter(type: .tileTask)
            w.u64(m.jobID); w.u64(m.taskID); w.u32(m.attempt); w.raw(m.modelDigest.bytes); w.u8(m.mode.rawValue)
            w.u32(m.tile.y0); w.u32(m.tile.x0); w.u32(m.tile.height); w.u32(m.tile.width)
            Self.write(m.preprocessing, to: &w)
            w.string(m.imagePath); w.u32(m.levelField); w.string(m.storePath)
            w.u32(UInt32(clamping: m.options.count))
            return [w.bytes, m.options]
        case .welcome(let m):
            var w = WireWriter(type: .welcome)
            w.u32(m.heartbeatIntervalMilliseconds); w.u32(m.heartbeatLiveness); w.u32(m.maxTasksInFlight)
            return [w.bytes]
        case .task(let m):
            var w = WireWriter(type: .task)
            w.u64(m.jobID); w.u64(m.taskID); w.u32(m.attempt); w.raw(m.modelDigest.bytes); w.u8(m.mode.rawValue)
            w.u32(m.outputRect.y0); w.u32(m.outputRect.x0); w.u32(m.outputRect.height); w.u32(m.outputRect.width)
            w.u32(m.displacementY); w.u32(m.displacementX); w.u32(m.imageHeight); w.u32(m.imageWidth)
            w.u32(m.input.height); w.u32(m.input.width); w.u32(m.input.channels); w.u8(m.input.bytesPerSample)
            Self.write(m.preprocessing, to: &w)
            w.u32(UInt32(clamping: m.options.count))
            w.u32(UInt32(clamping: m.keptClasses.count))
            for k in m.keptClasses { w.u32(k) }
            return [w.bytes, m.input.pixels, m.options]
        case .modelData(let m):
            var w = WireWriter(type: .modelData)
            w.raw(m.digest.bytes); w.u64(UInt64(m.prototxt.count)); w.u64(UInt64(m.weights.count))
            return [w.bytes, m.prototxt, m.weights]
        case .disconnect(let reason):
            var w = WireWriter(type: .disconnect)
            w.string(reason)
            return [w.bytes]
        case .revoke(let id):
            var w = WireWriter(type: .revoke)
            w.u64(id)
            return [w.bytes]
        case .submit(let m):
            let sources = [m.prototxt, m.weights, m.image]
            var flags: UInt8 = 0
            for (i, s) in sources.enumerated() { if case .inline = s { flags |= 1 << i } }
            var w = WireWriter(type: .submit, flags: flags)
            w.u8(m.mode.rawValue); w.u32(m.tileSize); Self.write(m.preprocessing, to: &w); w.string(m.outputOptions)
            var frames: [[UInt8]] = []
            for s in sources {
                switch s {
                case .inline(let name, let bytes): w.string(name); w.u64(UInt64(bytes.count)); frames.append(bytes)
                case .path(let path): w.string(path)
                }
            }
            return [w.bytes] + frames
        case .submitted(let id):
            var w = WireWriter(type: .submitted)
            w.u64(id)
            return [w.bytes]
        case .statusRequest(let id, let query):
            var w = WireWriter(type: .statusRequest, flags: (id == nil ? 0 : 1) | (query == nil ? 0 : 2))
            w.u64(id ?? 0)
            if let query { Self.write(query, to: &w) }
            return [w.bytes]
        case .status(let m):
            var w = WireWriter(type: .status, flags: (m.jobID == nil ? 0 : 1) | (m.details == nil ? 0 : 2))
            w.u64(m.jobID ?? 0); w.u8(m.state.rawValue)
            w.u64(m.tasksQueued); w.u64(m.tasksRunning); w.u64(m.tasksDone); w.u64(m.tasksFailed)
            w.u32(m.workers); w.f64(m.tasksPerSecond); w.f64(m.pixelsPerSecond); w.string(m.message)
            w.u16(UInt16(clamping: m.outputFiles.count))
            for f in m.outputFiles.prefix(Int(UInt16.max)) { w.string(f) }
            if let details = m.details { Self.write(details, to: &w) }
            return [w.bytes]
        case .cancel(let id):
            var w = WireWriter(type: .cancel)
            w.u64(id)
            return [w.bytes]
        case .fetchRequest(let m):
            var w = WireWriter(type: .fetchRequest)
            w.u64(m.jobID); w.string(m.fileName); w.u64(m.offset); w.u32(m.maxBytes)
            return [w.bytes]
        case .fetchData(let m):
            var w = WireWriter(type: .fetchData)
            w.u64(m.jobID); w.string(m.fileName); w.u64(m.offset); w.u64(m.totalSize)
            return [w.bytes, m.bytes]
        case .error(let message):
            var w = WireWriter(type: .error)
            w.string(message)
            return [w.bytes]
        case .uploadPart(let m):
            var w = WireWriter(type: .uploadPart)
            w.u64(m.jobID); w.u64(m.offset); w.u32(m.crc32); w.u8(m.last ? 1 : 0)
            return [w.bytes, m.bytes]
        case .uploadAck(let id, let received):
            var w = WireWriter(type: .uploadAck)
            w.u64(id); w.u64(received)
            return [w.bytes]
        }
    }

    /// Frame 0 of a `result`; with `ZMQSocket.sendResult` the float payload is sent
    /// straight from the `[Float]` without an intermediate byte array.
    static func resultHeader(_ m: Wire.TaskResult) -> [UInt8] {
        var w = WireWriter(type: .result)
        w.u64(m.jobID); w.u64(m.taskID); w.u32(m.attempt); w.u32(m.classes); w.u32(m.height); w.u32(m.width)
        return w.bytes
    }

    /// Bit 7 of the channel-order byte says a std list follows the mean; without a std
    /// the bytes are those of earlier builds.
    static func write(_ p: Wire.Preprocessing, to w: inout WireWriter) {
        w.u8(p.channelOrder.rawValue | (p.std.isEmpty ? 0 : 0x80)); w.f32(p.rawScale); w.f32(p.scale)
        w.floats(p.mean)
        if !p.std.isEmpty { w.floats(p.std) }
    }

    /// Float32 values as little-endian bytes (a memcpy on little-endian hosts).
    static func floatBytes(_ values: [Float]) -> [UInt8] {
        #if _endian(little)
        return values.withUnsafeBytes { Array($0) }
        #else
        var out: [UInt8] = []
        out.reserveCapacity(values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        return out
        #endif
    }

    /// Little-endian bytes (count a multiple of 4) as floats.
    static func floats(fromLittleEndian bytes: [UInt8]) -> [Float] {
        let count = bytes.count / 4
        #if _endian(little)
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            bytes.withUnsafeBytes { src in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: src.prefix(count * 4)))
            }
            initialized = count
        }
        #else
        return (0..<count).map { i in
            Float(
                bitPattern: UInt32(bytes[4 * i]) | UInt32(bytes[4 * i + 1]) << 8
                    | UInt32(bytes[4 * i + 2]) << 16 | UInt32(bytes[4 * i + 3]) << 24)
        }
        #endif
    }
}
