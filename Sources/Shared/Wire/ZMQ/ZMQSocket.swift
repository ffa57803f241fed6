import CZeroMQ

/// A libzmq socket.
///
/// **Why a `~Copyable` struct and not a class.** A socket is not thread-safe and must
/// be closed exactly once, at a predictable point, before its context terminates.
/// As a non-copyable value it has exactly one owner: it closes in `deinit` when that
/// owner's scope ends (or is reassigned), and `close()` is `consuming`, so a use after
/// close or a double close does not compile. A class would make closing depend on the
/// last of any number of references, possibly on another thread, and would need a
/// runtime "already closed" state. To keep a socket in a long-lived object, store it
/// in a `var` of a final class (`var socket: ZMQSocket`); to rebuild a socket after a
/// dead peer (Paranoid Pirate), assign a new one: the old one closes right there.
///
/// Every socket is created with `ZMQ_LINGER` = `ZMQSocket.defaultLinger` (500 ms) so
/// closing never blocks context termination indefinitely; call
/// `applyTesseraDefaults(maxMessageSize:)` for the rest of the recommended options.
///
/// Use a socket only from the thread that owns it. Create it on that thread (or hand
/// it over once, e.g. before starting the thread).
package struct ZMQSocket: ~Copyable {
    /// The bounded linger every new socket gets, in milliseconds.
    package static let defaultLinger: Int32 = 500

    let handle: UnsafeMutableRawPointer
    /// The socket's type.
    package let type: ZMQSocketType
    // Keeps the context alive until this socket is closed: zmq_ctx_term in the
    // context's deinit therefore never waits for a socket.
    private let context: ZMQContext
    /// Bytes through this socket so far (for metrics).
    package let traffic = SocketTraffic()
    /// The `ipc://` socket files it bound, removed when it closes.
    private let socketFiles = BoundSocketFiles()

    /// Creates a socket of `type` in `context`, with a bounded linger.
    package init(_ context: ZMQContext, type: ZMQSocketType) throws {
        let raw = try ZMQCall.handle { zmq_socket(context.handle, type.rawValue) }
        var linger = Self.defaultLinger
        if zmq_setsockopt(raw, ZMQ_LINGER, &linger, 4) != 0 {
            let error = ZMQError.current
            _ = zmq_close(raw)
            throw error
        }
        self.handle = raw
        self.type = type
        self.context = context
    }

    deinit {
        ZMQCall.mustSucceed("zmq_close") { zmq_close(handle) }
        for file in socketFiles.files { file.removeIfUnchanged() }
    }

    /// Closes the socket now (unsent messages are kept up to the linger time).
    /// After this the value is gone: using it again does not compile.
    package consuming func close() {
        // Consuming `self` ends its lifetime here; `deinit` does the closing.
    }

    // MARK: Endpoints

    /// Binds to `endpoint` (`tcp://127.0.0.1:*` picks a free port: read `lastEndpoint`).
    /// An `ipc://PATH` whose PATH holds a file that is not a socket, or a socket another process listens on, is
    /// refused (`IPCSocketFile`: libzmq would delete it), and the socket file is removed when this socket closes.
    package func bind(_ endpoint: String) throws {
        let path = IPCSocketFile.path(of: endpoint)
        if let path { try IPCSocketFile.checkFree(path, context: "cannot listen on \(endpoint)") }
        try Self.naming("cannot listen on \(endpoint)") { try ZMQCall.check { zmq_bind(handle, endpoint) } }
        if let path, let file = IPCSocketFile(at: path) { socketFiles.files.append(file) }
    }

    /// Connects to `endpoint` (asynchronously: libzmq reconnects on its own).
    package func connect(_ endpoint: String) throws {
        try Self.naming("cannot connect to \(endpoint)") { try ZMQCall.check { zmq_connect(handle, endpoint) } }
    }

    /// Rethrows a `ZMQError` with what was being done (the endpoint), for its message.
    private static func naming(_ context: String, _ body: () throws -> Void) throws {
        do { try body() } catch var error as ZMQError {
            error.context = context
            throw error
        }
    }

    /// Stops connecting to / disconnects from `endpoint`.
    package func disconnect(_ endpoint: String) throws {
        try ZMQCall.check { zmq_disconnect(handle, endpoint) }
    }

    /// Stops listening on `endpoint` (use the `lastEndpoint` form for wildcard binds).
    package func unbind(_ endpoint: String) throws {
        try ZMQCall.check { zmq_unbind(handle, endpoint) }
    }

    /// The endpoint last bound, with the real port (`ZMQ_LAST_ENDPOINT`).
    package var lastEndpoint: String {
        get throws { try get(.lastEndpoint) }
    }

    // MARK: Options

    /// Sets an option: `try socket.set(.linger, 0)`.
    package func set<Value>(_ option: ZMQSocketOption<Value>, _ value: Value) throws {
        _ = try value.withOptionBytes { bytes in
            try ZMQCall.check { zmq_setsockopt(handle, option.rawValue, bytes.baseAddress, bytes.count) }
        }
    }

    /// Reads an option: `try socket.get(.maxMessageSize)`.
    package func get<Value>(_ option: ZMQSocketOption<Value>) throws -> Value {
        var buffer = [UInt8](repeating: 0, count: Value.optionBufferSize)
        var size = buffer.count
        _ = try buffer.withUnsafeMutableBytes { raw in
            try ZMQCall.check { zmq_getsockopt(handle, option.rawValue, raw.baseAddress, &size) }
        }
        return buffer.withUnsafeBytes { Value(optionBytes: UnsafeRawBufferPointer(rebasing: $0.prefix(size))) }
    }

    // MARK: Sending

    /// Sends `frames` as one multipart message (atomically: the peer gets all or none).
    ///
    /// Each frame is copied once into libzmq's buffers. With `.dontWait` the call throws
    /// `ZMQError.again` instead of blocking. On a ROUTER with `ROUTER_MANDATORY`, an
    /// unknown first frame (routing id) throws `ZMQError.hostUnreachable` and nothing is sent.
    /// An empty `frames` array sends nothing.
    package func send(_ frames: [[UInt8]], flags: ZMQSendFlags = []) throws {
        for (index, frame) in frames.enumerated() {
            let more = index < frames.count - 1
            try sendFrame(frame, more: more, flags: flags)
        }
    }

    /// Sends one frame; `more` = further frames of the same message follow.
    package func sendFrame(_ frame: [UInt8], more: Bool, flags: ZMQSendFlags = []) throws {
        try frame.withUnsafeBytes { try sendFrame(bytes: $0, more: more, flags: flags) }
    }

    /// Sends one frame from raw memory without an intermediate Swift array (for large
    /// `[Float]` results: `try floats.withUnsafeBytes { try socket.sendFrame(bytes: $0, more: false) }`).
    package func sendFrame(bytes: UnsafeRawBufferPointer, more: Bool, flags: ZMQSendFlags = []) throws {
        let cFlags = flags.rawValue | (more ? ZMQ_SNDMORE : 0)
        try ZMQCall.check { zmq_send(handle, bytes.baseAddress, bytes.count, cFlags) }
        traffic.add(sent: bytes.count)
    }

    // MARK: Receiving

    /// Receives one whole multipart message, blocking (up to `ZMQ_RCVTIMEO`, then
    /// `ZMQError.again`).
    ///
    /// A message with more than `maxFrames` frames or `maxBytes` bytes in total is
    /// received to the end and discarded, then `ZMQError.messageTooLarge` is thrown;
    /// the socket stays usable. (`ZMQ_MAXMSGSIZE` bounds each frame before allocation.)
    package func receive(maxFrames: Int = 64, maxBytes: Int = Int.max) throws -> ZMQMessage {
        // Blocking receive never reports "no message": it throws instead.
        try receive(dontWait: false, maxFrames: maxFrames, maxBytes: maxBytes)!
    }

    /// Receives a message if one is waiting; nil (no error) when there is none.
    package func receiveIfAvailable(maxFrames: Int = 64, maxBytes: Int = Int.max) throws -> ZMQMessage? {
        try receive(dontWait: true, maxFrames: maxFrames, maxBytes: maxBytes)
    }

    private func receive(dontWait: Bool, maxFrames: Int, maxBytes: Int) throws -> ZMQMessage? {
        guard
            let (message, oversized) = try receiveBounded(dontWait: dontWait, maxFrames: maxFrames, maxBytes: maxBytes)
        else { return nil }
        if oversized { throw ZMQError.messageTooLarge }
        return message
    }

    /// A message, or nil when none is waiting (`dontWait`). One over `maxFrames` frames or `maxBytes`
    /// bytes is received to the end and comes back `oversized`, holding only its first frames (a
    /// ROUTER's routing id among them, so the sender can be answered; metadata kept).
    package func receiveBounded(
        dontWait: Bool, maxFrames: Int, maxBytes: Int
    ) throws -> (message: ZMQMessage, oversized: Bool)? {
        let raw = ZMQRawMessage()
        guard try raw.receive(from: handle, dontWait: dontWait) else { return nil }
        var message = ZMQMessage(
            frames: [], userID: raw.property("User-Id"),
            peerAddress: raw.property("Peer-Address"), curveKey: raw.property(ZAPHandler.curveKeyProperty))
        var total = 0
        var overflow = false
        while true {
            let size = raw.count
            total = total.addingReportingOverflow(size).overflow ? Int.max : total + size
            if message.frames.count >= maxFrames || total > maxBytes { overflow = true }
            if !overflow { message.frames.append(raw.bytes()) }
            // A ROUTER's routing-id frame carries no metadata: take it from a later frame.
            if message.userID == nil { message.userID = raw.property("User-Id") }
            if message.peerAddress == nil { message.peerAddress = raw.property("Peer-Address") }
            if message.curveKey == nil { message.curveKey = raw.property(ZAPHandler.curveKeyProperty) }
            guard raw.hasMore else { break }
            // The rest of a multipart message is already queued: never blocks.
            _ = try raw.receive(from: handle, dontWait: false)
        }
        traffic.add(received: total)
        return (message, overflow)
    }

    // MARK: Waiting

    /// Waits up to `timeoutMilliseconds` (-1 = forever) for a message; true if one is ready.
    package func waitForMessage(timeoutMilliseconds: Int) throws -> Bool {
        var poller = ZMQPoller()
        poller.add(self, events: .readable)
        return try poller.poll(timeoutMilliseconds: timeoutMilliseconds) > 0
    }
}
