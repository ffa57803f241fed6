import CZeroMQ

/// A socket event reported by a monitor. The corresponding C constants are `ZMQ_EVENT_*`.
package struct ZMQSocketEvent: OptionSet, Hashable, Sendable, CustomStringConvertible {
    package let rawValue: UInt16
    package init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The corresponding C constant is `ZMQ_EVENT_CONNECTED`.
    package static let connected = Self(rawValue: UInt16(ZMQ_EVENT_CONNECTED))
    /// The corresponding C constant is `ZMQ_EVENT_CONNECT_DELAYED`.
    package static let connectDelayed = Self(rawValue: UInt16(ZMQ_EVENT_CONNECT_DELAYED))
    /// The corresponding C constant is `ZMQ_EVENT_CONNECT_RETRIED`.
    package static let connectRetried = Self(rawValue: UInt16(ZMQ_EVENT_CONNECT_RETRIED))
    /// The corresponding C constant is `ZMQ_EVENT_LISTENING`.
    package static let listening = Self(rawValue: UInt16(ZMQ_EVENT_LISTENING))
    /// The corresponding C constant is `ZMQ_EVENT_BIND_FAILED`.
    package static let bindFailed = Self(rawValue: UInt16(ZMQ_EVENT_BIND_FAILED))
    /// The corresponding C constant is `ZMQ_EVENT_ACCEPTED`.
    package static let accepted = Self(rawValue: UInt16(ZMQ_EVENT_ACCEPTED))
    /// The corresponding C constant is `ZMQ_EVENT_ACCEPT_FAILED`.
    package static let acceptFailed = Self(rawValue: UInt16(ZMQ_EVENT_ACCEPT_FAILED))
    /// The corresponding C constant is `ZMQ_EVENT_CLOSED`.
    package static let closed = Self(rawValue: UInt16(ZMQ_EVENT_CLOSED))
    /// A peer went away (kill -9, network loss, heartbeat timeout).
    /// The corresponding C constant is `ZMQ_EVENT_DISCONNECTED`.
    package static let disconnected = Self(rawValue: UInt16(ZMQ_EVENT_DISCONNECTED))
    /// The corresponding C constant is `ZMQ_EVENT_MONITOR_STOPPED`.
    package static let monitorStopped = Self(rawValue: UInt16(ZMQ_EVENT_MONITOR_STOPPED))
    /// The corresponding C constant is `ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL`.
    package static let handshakeFailedNoDetail = Self(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))
    /// The corresponding C constant is `ZMQ_EVENT_HANDSHAKE_SUCCEEDED`.
    package static let handshakeSucceeded = Self(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_SUCCEEDED))
    /// Wrong mechanism or bad key material; `value` holds the ZMTP error code.
    /// The corresponding C constant is `ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL`.
    package static let handshakeFailedProtocol = Self(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL))
    /// The ZAP handler refused the peer; `value` is its status code (e.g. 400).
    /// The corresponding C constant is `ZMQ_EVENT_HANDSHAKE_FAILED_AUTH`.
    package static let handshakeFailedAuth = Self(rawValue: UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH))
    /// Every event. The corresponding C constant is `ZMQ_EVENT_ALL`.
    package static let all = Self(rawValue: UInt16(truncatingIfNeeded: ZMQ_EVENT_ALL))

    package var description: String {
        let names: [(Self, String)] = [
            (.connected, "connected"), (.connectDelayed, "connectDelayed"), (.connectRetried, "connectRetried"),
            (.listening, "listening"), (.bindFailed, "bindFailed"), (.accepted, "accepted"),
            (.acceptFailed, "acceptFailed"), (.closed, "closed"), (.disconnected, "disconnected"),
            (.monitorStopped, "monitorStopped"), (.handshakeFailedNoDetail, "handshakeFailedNoDetail"),
            (.handshakeSucceeded, "handshakeSucceeded"), (.handshakeFailedProtocol, "handshakeFailedProtocol"),
            (.handshakeFailedAuth, "handshakeFailedAuth"),
        ]
        let found = names.filter { contains($0.0) }.map(\.1)
        return found.isEmpty ? "event 0x\(String(rawValue, radix: 16))" : found.joined(separator: "|")
    }
}

/// One decoded monitor notification.
package struct ZMQMonitorEvent: Sendable, Equatable, CustomStringConvertible {
    /// What happened (a single event bit).
    package var event: ZMQSocketEvent
    /// The event's value: a file descriptor, a reconnect interval, an errno, a ZMTP
    /// error code (`handshakeFailedProtocol`) or a ZAP status (`handshakeFailedAuth`).
    package var value: UInt32
    /// The endpoint concerned (`tcp://127.0.0.1:5555`).
    package var endpoint: String

    package var description: String { "\(event) value=\(value) endpoint=\(endpoint)" }
}

/// Watches a socket's connection events (`zmq_socket_monitor` → an inproc PAIR),
/// for logging disconnects and authentication refusals, and for tests.
///
/// Create it from the monitored socket's thread with `socket.monitor(events:)`; read
/// it with `next(timeoutMilliseconds:)` (it can also be added to a `ZMQPoller` via
/// `socket`). Drop the monitor before the monitored socket is closed.
package struct ZMQMonitor: ~Copyable {
    /// The PAIR socket receiving the events.
    package let socket: ZMQSocket

    init(socket: consuming ZMQSocket) { self.socket = socket }

    /// The next event, or nil if none arrives within the timeout (ms; -1 = forever).
    package func next(timeoutMilliseconds: Int) throws -> ZMQMonitorEvent? {
        guard try socket.waitForMessage(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        return try Self.decode(socket.receive(maxFrames: 2, maxBytes: 4096))
    }

    /// Decodes libzmq's two-frame event message (6 bytes native-endian: UInt16 event,
    /// UInt32 value; then the endpoint). Returns nil for a malformed message.
    static func decode(_ message: ZMQMessage) -> ZMQMonitorEvent? {
        guard message.frames.count == 2, message.frames[0].count == 6 else { return nil }
        let head = message.frames[0]
        let event = head.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt16.self) }
        let value = head.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 2, as: UInt32.self) }
        return ZMQMonitorEvent(
            event: ZMQSocketEvent(rawValue: event), value: value,
            endpoint: String(decoding: message.frames[1], as: UTF8.self))
    }
}

extension ZMQSocket {
    /// Starts monitoring `events` on this socket and returns the monitor. Events that
    /// happen before this call are not reported.
    package func monitor(events: ZMQSocketEvent = .all, context: ZMQContext) throws -> ZMQMonitor {
        // Unique even when a closed socket's address is reused before its monitor is gone.
        let endpoint = "inproc://tessera-monitor-\(UInt(bitPattern: handle))-\(UInt64.random(in: 0...UInt64.max))"
        try ZMQCall.check { zmq_socket_monitor(handle, endpoint, CInt(events.rawValue)) }
        let pair = try ZMQSocket(context, type: .pair)
        try pair.set(.linger, 0)
        try pair.set(.maxMessageSize, Int64(4096))
        try pair.connect(endpoint)
        return ZMQMonitor(socket: pair)
    }

    /// Stops the monitor started by `monitor(events:context:)`.
    package func stopMonitor() throws {
        try ZMQCall.check { zmq_socket_monitor(handle, nil, 0) }
    }
}
