import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error reported by libzmq, keeping its `errno` so callers can match on it:
///
///     do { try socket.send(frames, to: peer) }
///     catch ZMQError.hostUnreachable { /* peer is gone: task not dispatched */ }
///
/// The description comes from `zmq_strerror`, which also knows libzmq's own codes
/// (`ETERM`, `EFSM`, …).
package struct ZMQError: RawRepresentable, Error, Hashable, Sendable, CustomStringConvertible {
    /// The `errno` value.
    package let rawValue: CInt
    /// What was being done ("binding tcp://*:5555"), for the message; not compared.
    package var context: String?

    package init(rawValue: CInt) { self.rawValue = rawValue }

    package static func == (a: ZMQError, b: ZMQError) -> Bool { a.rawValue == b.rawValue }
    package func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

    /// The operation would block (non-blocking send/receive, full pipe with
    /// `ROUTER_MANDATORY`, or a receive timeout). The corresponding C constant is `EAGAIN`.
    package static let again = ZMQError(rawValue: EAGAIN)
    /// A ROUTER with `ROUTER_MANDATORY` was asked to send to an unknown peer.
    /// The corresponding C constant is `EHOSTUNREACH`.
    package static let hostUnreachable = ZMQError(rawValue: EHOSTUNREACH)
    /// The context was terminated or shut down. The corresponding C constant is `ETERM`.
    package static let terminated = ZMQError(rawValue: ETERM)
    /// A signal interrupted the call (retried internally; only seen if it persists).
    /// The corresponding C constant is `EINTR`.
    package static let interrupted = ZMQError(rawValue: EINTR)
    /// The operation is not valid in the socket's current state (e.g. a REQ sending
    /// twice). The corresponding C constant is `EFSM`.
    package static let invalidState = ZMQError(rawValue: EFSM)
    /// An argument was invalid (bad option value, bad endpoint). The corresponding C
    /// constant is `EINVAL`.
    package static let invalidArgument = ZMQError(rawValue: EINVAL)
    /// The endpoint's transport is not supported. The corresponding C constant is `EPROTONOSUPPORT`.
    package static let protocolNotSupported = ZMQError(rawValue: EPROTONOSUPPORT)
    /// The address is already in use. The corresponding C constant is `EADDRINUSE`.
    package static let addressInUse = ZMQError(rawValue: EADDRINUSE)
    /// A received multipart message exceeded the frame or byte limits given to
    /// `ZMQSocket.receive`; it was drained and discarded. The corresponding C constant is `EMSGSIZE`.
    package static let messageTooLarge = ZMQError(rawValue: EMSGSIZE)

    /// Lets `catch ZMQError.again { … }` match a thrown error.
    package static func ~= (lhs: ZMQError, rhs: any Error) -> Bool {
        (rhs as? ZMQError) == lhs
    }

    /// The current `zmq_errno()` as an error.
    static var current: ZMQError { ZMQError(rawValue: zmq_errno()) }

    package var description: String {
        let text = String(cString: zmq_strerror(rawValue))
        guard let context else { return "ZMQError(\(rawValue)): " + text }
        let hint =
            rawValue == EINVAL || rawValue == EPROTONOSUPPORT
            ? " (an endpoint looks like tcp://HOST:PORT, e.g. tcp://10.0.0.5:5555)"
            : rawValue == EADDRINUSE
                ? (context.contains("ipc://")
                    ? " (another process listens there: stop it, or pick another path)"
                    : " (another process listens there: pick another port)")
                : rawValue == EEXIST && context.contains("ipc://")
                    ? " (a file that is not a socket is there, which listening would delete: pick another path)" : ""
        return "\(context): \(text)\(hint)"
    }
}
