import CZeroMQ

/// A socket type. The corresponding C constants are `ZMQ_PAIR`, `ZMQ_ROUTER`, ….
package struct ZMQSocketType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    package let rawValue: CInt
    package init(rawValue: CInt) { self.rawValue = rawValue }

    /// The corresponding C constant is `ZMQ_PAIR`.
    package static let pair = ZMQSocketType(rawValue: ZMQ_PAIR)
    /// The corresponding C constant is `ZMQ_PUB`.
    package static let pub = ZMQSocketType(rawValue: ZMQ_PUB)
    /// The corresponding C constant is `ZMQ_SUB`.
    package static let sub = ZMQSocketType(rawValue: ZMQ_SUB)
    /// The corresponding C constant is `ZMQ_REQ`.
    package static let req = ZMQSocketType(rawValue: ZMQ_REQ)
    /// The corresponding C constant is `ZMQ_REP`.
    package static let rep = ZMQSocketType(rawValue: ZMQ_REP)
    /// The corresponding C constant is `ZMQ_DEALER`.
    package static let dealer = ZMQSocketType(rawValue: ZMQ_DEALER)
    /// The corresponding C constant is `ZMQ_ROUTER`.
    package static let router = ZMQSocketType(rawValue: ZMQ_ROUTER)
    /// The corresponding C constant is `ZMQ_PULL`.
    package static let pull = ZMQSocketType(rawValue: ZMQ_PULL)
    /// The corresponding C constant is `ZMQ_PUSH`.
    package static let push = ZMQSocketType(rawValue: ZMQ_PUSH)

    package var description: String {
        switch self {
        case .pair: "PAIR"
        case .pub: "PUB"
        case .sub: "SUB"
        case .req: "REQ"
        case .rep: "REP"
        case .dealer: "DEALER"
        case .router: "ROUTER"
        case .pull: "PULL"
        case .push: "PUSH"
        default: "socket type \(rawValue)"
        }
    }
}

/// A value that can be passed to `zmq_setsockopt` / read by `zmq_getsockopt`.
package protocol ZMQOptionValue {
    /// Calls `body` with the bytes libzmq expects for this value.
    func withOptionBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
    /// Decodes a value from the bytes libzmq returned (`count` valid bytes).
    init(optionBytes: UnsafeRawBufferPointer)
    /// The buffer size to offer `zmq_getsockopt`.
    static var optionBufferSize: Int { get }
}

extension Int32: ZMQOptionValue {
    package func withOptionBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: self, body)
    }
    package init(optionBytes: UnsafeRawBufferPointer) {
        self = optionBytes.count >= 4 ? optionBytes.loadUnaligned(as: Int32.self) : 0
    }
    package static var optionBufferSize: Int { 4 }
}

extension Int64: ZMQOptionValue {
    package func withOptionBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: self, body)
    }
    package init(optionBytes: UnsafeRawBufferPointer) {
        self = optionBytes.count >= 8 ? optionBytes.loadUnaligned(as: Int64.self) : 0
    }
    package static var optionBufferSize: Int { 8 }
}

/// Booleans travel as a C `int` 0 or 1.
extension Bool: ZMQOptionValue {
    package func withOptionBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Int32(self ? 1 : 0).withOptionBytes(body)
    }
    package init(optionBytes: UnsafeRawBufferPointer) { self = Int32(optionBytes: optionBytes) != 0 }
    package static var optionBufferSize: Int { 4 }
}

/// Binary options (routing id). At most 255 bytes in libzmq.
extension Array: ZMQOptionValue where Element == UInt8 {
    package func withOptionBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
    package init(optionBytes: UnsafeRawBufferPointer) { self = Array(optionBytes) }
    package static var optionBufferSize: Int { 256 }
}

/// String options (`ZAP_DOMAIN`, `LAST_ENDPOINT`). Read values drop the trailing NUL.
extension String: ZMQOptionValue {
    package func withOptionBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Array(utf8).withUnsafeBytes(body)
    }
    package init(optionBytes: UnsafeRawBufferPointer) {
        var bytes = Array(optionBytes)
        if let nul = bytes.firstIndex(of: 0) { bytes.removeSubrange(nul...) }
        self = String(decoding: bytes, as: UTF8.self)
    }
    package static var optionBufferSize: Int { 1024 }
}

/// A socket option whose value has type `Value`. The statics name libzmq's options;
/// each one's doc gives its C constant.
///
///     try socket.set(.linger, 500)
///     let endpoint = try socket.get(.lastEndpoint)
package struct ZMQSocketOption<Value: ZMQOptionValue>: RawRepresentable, Hashable, Sendable {
    package let rawValue: CInt
    package init(rawValue: CInt) { self.rawValue = rawValue }
}

extension ZMQSocketOption where Value == Int32 {
    /// Milliseconds to keep unsent messages after close (-1 = forever: never use).
    /// The corresponding C constant is `ZMQ_LINGER`.
    package static var linger: Self { Self(rawValue: ZMQ_LINGER) }
    /// What the socket could do now without blocking (`ZMQ_POLLIN`/`ZMQ_POLLOUT` bits; read only). Reading it
    /// makes libzmq process the commands its I/O threads sent the socket. The corresponding C constant is
    /// `ZMQ_EVENTS`.
    package static var events: Self { Self(rawValue: ZMQ_EVENTS) }
    /// Send high-water mark, messages per pipe. The corresponding C constant is `ZMQ_SNDHWM`.
    package static var sendHighWaterMark: Self { Self(rawValue: ZMQ_SNDHWM) }
    /// Receive high-water mark, messages per pipe. The corresponding C constant is `ZMQ_RCVHWM`.
    package static var receiveHighWaterMark: Self { Self(rawValue: ZMQ_RCVHWM) }
    /// Milliseconds a blocking receive waits before `EAGAIN` (-1 = forever).
    /// The corresponding C constant is `ZMQ_RCVTIMEO`.
    package static var receiveTimeout: Self { Self(rawValue: ZMQ_RCVTIMEO) }
    /// Milliseconds a blocking send waits before `EAGAIN` (-1 = forever).
    /// The corresponding C constant is `ZMQ_SNDTIMEO`.
    package static var sendTimeout: Self { Self(rawValue: ZMQ_SNDTIMEO) }
    /// ZMTP heartbeat (PING) interval in ms, 0 = off. The corresponding C constant is `ZMQ_HEARTBEAT_IVL`.
    package static var heartbeatInterval: Self { Self(rawValue: ZMQ_HEARTBEAT_IVL) }
    /// TTL (ms, multiple of 100) the remote should use for us. The corresponding C constant is `ZMQ_HEARTBEAT_TTL`.
    package static var heartbeatTTL: Self { Self(rawValue: ZMQ_HEARTBEAT_TTL) }
    /// Ms without any traffic after a PING before the connection is dropped. Keep it above
    /// the longest message transfer (libzmq#2709). The corresponding C constant is `ZMQ_HEARTBEAT_TIMEOUT`.
    package static var heartbeatTimeout: Self { Self(rawValue: ZMQ_HEARTBEAT_TIMEOUT) }
    /// Initial reconnect interval, ms. The corresponding C constant is `ZMQ_RECONNECT_IVL`.
    package static var reconnectInterval: Self { Self(rawValue: ZMQ_RECONNECT_IVL) }
    /// Cap of the exponential reconnect backoff, ms (0 = no backoff). The corresponding C
    /// constant is `ZMQ_RECONNECT_IVL_MAX`.
    package static var reconnectIntervalMax: Self { Self(rawValue: ZMQ_RECONNECT_IVL_MAX) }
    /// Ms allowed for the ZMTP/security handshake. The corresponding C constant is `ZMQ_HANDSHAKE_IVL`.
    package static var handshakeInterval: Self { Self(rawValue: ZMQ_HANDSHAKE_IVL) }
    /// The socket type (read only). The corresponding C constant is `ZMQ_TYPE`.
    package static var type: Self { Self(rawValue: ZMQ_TYPE) }
    /// The security mechanism in use (read only): 0 null, 1 plain, 2 curve.
    /// The corresponding C constant is `ZMQ_MECHANISM`.
    package static var mechanism: Self { Self(rawValue: ZMQ_MECHANISM) }
}

extension ZMQSocketOption where Value == Int64 {
    /// Largest inbound frame in bytes (-1 = no limit); a peer announcing more is
    /// disconnected before anything is allocated. The corresponding C constant is `ZMQ_MAXMSGSIZE`.
    package static var maxMessageSize: Self { Self(rawValue: ZMQ_MAXMSGSIZE) }
}

extension ZMQSocketOption where Value == Bool {
    /// Queue messages only to completed connections. The corresponding C constant is `ZMQ_IMMEDIATE`.
    package static var immediate: Self { Self(rawValue: ZMQ_IMMEDIATE) }
    /// ROUTER: fail with `EHOSTUNREACH` for unknown peers and `EAGAIN` on a full pipe
    /// instead of dropping silently (write only). The corresponding C constant is `ZMQ_ROUTER_MANDATORY`.
    package static var routerMandatory: Self { Self(rawValue: ZMQ_ROUTER_MANDATORY) }
    /// Act as the CURVE server. The corresponding C constant is `ZMQ_CURVE_SERVER`.
    package static var curveServer: Self { Self(rawValue: ZMQ_CURVE_SERVER) }
    /// Whether more frames of the current message follow (read only).
    /// The corresponding C constant is `ZMQ_RCVMORE`.
    package static var receiveMore: Self { Self(rawValue: ZMQ_RCVMORE) }
}

extension ZMQSocketOption where Value == [UInt8] {
    /// The identity this socket presents to a ROUTER peer (1…255 bytes, not starting
    /// with 0). The corresponding C constant is `ZMQ_ROUTING_ID`.
    package static var routingID: Self { Self(rawValue: ZMQ_ROUTING_ID) }
}

extension ZMQSocketOption where Value == ZMQCurveKey {
    /// This socket's long-term public key. The corresponding C constant is `ZMQ_CURVE_PUBLICKEY`.
    package static var curvePublicKey: Self { Self(rawValue: ZMQ_CURVE_PUBLICKEY) }
    /// This socket's long-term secret key. The corresponding C constant is `ZMQ_CURVE_SECRETKEY`.
    package static var curveSecretKey: Self { Self(rawValue: ZMQ_CURVE_SECRETKEY) }
    /// The server's public key (set on clients). The corresponding C constant is `ZMQ_CURVE_SERVERKEY`.
    package static var curveServerKey: Self { Self(rawValue: ZMQ_CURVE_SERVERKEY) }
}

extension ZMQSocketOption where Value == String {
    /// The ZAP domain; setting one makes libzmq consult the ZAP handler even for the
    /// NULL mechanism, and refuse ZMTP 1.0/2.0 peers. The corresponding C constant is `ZMQ_ZAP_DOMAIN`.
    package static var zapDomain: Self { Self(rawValue: ZMQ_ZAP_DOMAIN) }
    /// The endpoint last bound, with the real port for `tcp://…:*` (read only).
    /// The corresponding C constant is `ZMQ_LAST_ENDPOINT`.
    package static var lastEndpoint: Self { Self(rawValue: ZMQ_LAST_ENDPOINT) }
}

/// Send flags. The corresponding C constants are `ZMQ_DONTWAIT` and `ZMQ_SNDMORE`.
package struct ZMQSendFlags: OptionSet, Sendable {
    package let rawValue: CInt
    package init(rawValue: CInt) { self.rawValue = rawValue }
    /// Fail with `ZMQError.again` instead of blocking. The corresponding C constant is `ZMQ_DONTWAIT`.
    package static let dontWait = ZMQSendFlags(rawValue: ZMQ_DONTWAIT)
}
