/// Turns a client socket's monitor events into the reason a connection cannot work,
/// in words a user can act on (CURVE key not listed, mechanism mismatch, wrong key).
package enum HandshakeFailure {
    /// The monitor events that say a handshake succeeded or failed.
    package static let events: ZMQSocketEvent = [
        .handshakeSucceeded, .handshakeFailedAuth,
        .handshakeFailedProtocol, .handshakeFailedNoDetail,
    ]

    /// nil for a success or an unrelated event; otherwise why the peer at `endpoint`
    /// refused us, given whether we used CURVE.
    package static func explain(_ event: ZMQMonitorEvent, curve: Bool) -> String? {
        let endpoint = event.endpoint
        switch event.event {
        case .handshakeFailedAuth:
            return "\(endpoint) refused this key (authentication status \(event.value)): its public key is not "
                + "in the coordinator's authorized-keys folder, or its role may not connect here (with --worker-keys, "
                + "worker keys join only as workers and client keys only as clients; the coordinator's log says which)"
        case .handshakeFailedProtocol:
            // ZMTP error codes (zmq.h): 0x11000001 cryptographic, 0x11000002/3 mechanism or command mismatch.
            let code = "0x" + String(event.value, radix: 16)
            if event.value == 0x1100_0001 {
                return
                    "CURVE handshake with \(endpoint) failed (\(code), cryptographic error): wrong coordinator public key (--curve-server-key)?"
            }
            return curve
                ? "security handshake with \(endpoint) failed (\(code)): does the coordinator run with --curve?"
                : "security handshake with \(endpoint) failed (\(code)): the coordinator requires CURVE (give --curve and keys)"
        case .handshakeFailedNoDetail:
            // The server closed the connection during the handshake.
            return curve
                ? "security handshake with \(endpoint) failed (errno \(event.value)): wrong coordinator public key "
                    + "(--curve-server-key), or the coordinator does not use --curve"
                : "security handshake with \(endpoint) failed (errno \(event.value)): the coordinator probably "
                    + "requires CURVE (give --curve and keys)"
        default:
            return nil
        }
    }
}
