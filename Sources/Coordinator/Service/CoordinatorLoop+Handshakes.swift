import Foundation
import TesseraWire

/// Security handshakes that fail before the ZAP handler is asked: a peer without CURVE on a CURVE coordinator (or
/// the reverse), or one that encrypted to another coordinator's public key. libzmq reports them only through a
/// socket monitor; they went unlogged and uncounted (CURVE audit 30 F06: 300 such peers, no line, no count).
extension CoordinatorLoop {
    /// The events read from each endpoint's monitor.
    static let handshakeEvents: ZMQSocketEvent = [.handshakeFailedProtocol, .handshakeFailedNoDetail, .acceptFailed]

    /// Logs (rate-limited per cause, so that one retrying peer does not hide another) and counts the failed
    /// handshakes `monitor` has queued on `endpoint` ("workers", "clients"): `tessera_refusals_total{reason=…}`
    /// `handshake-mechanism` (CURVE on one side only), `handshake-key` (another coordinator's public key),
    /// `handshake-protocol` (any other protocol error), and `handshake-dropped` for a peer that closed
    /// mid-handshake (logged only with CURVE on: without, it is a port scan or a TCP probe).
    func readHandshakeFailures(_ monitor: borrowing ZMQMonitor, endpoint: String) {
        while let event = try? monitor.next(timeoutMilliseconds: 0) {
            if event.event == .acceptFailed {
                // Out of file descriptors, most often: peers then wait unanswered, and nothing was logged (deploy
                // audit 51 F1: a worker "trying again" for ever).
                let cause = String(cString: strerror(Int32(bitPattern: event.value)))
                rejects.warning(
                    "accept-failed",
                    "cannot accept a connection: \(cause)"
                        + (event.value == UInt32(EMFILE) || event.value == UInt32(ENFILE)
                            ? " (the open-file limit: too many jobs or peers; raise LimitNOFILE= or ulimit -n)" : ""),
                    metadata: ["endpoint": "\(endpoint)", "errno": "\(event.value)"])
                continue
            }
            if event.event == .handshakeFailedNoDetail {
                // A peer that closed first: libzmq reports a client without CURVE this way as often as not
                // (verification audit 32 N2), so with CURVE on it is logged too; without, it is a probe.
                guard configuration.curve != nil else {
                    CoordinatorMetrics.refused("handshake-dropped")
                    continue
                }
                rejects.warning(
                    "handshake-dropped",
                    "a peer closed its connection during the security handshake: a client without CURVE, one with "
                        + "another coordinator's public key, or a port probe",
                    metadata: ["endpoint": "\(endpoint)", "errno": "\(event.value)"])
                continue
            }
            guard event.event == .handshakeFailedProtocol else { continue }
            let cause = [0x1100_0001: "handshake-key", 0x1100_0002: "handshake-mechanism"][event.value]
            rejects.warning(
                cause ?? "handshake-protocol", "a peer's security handshake failed",
                metadata: [
                    "endpoint": "\(endpoint)", "code": "0x\(String(event.value, radix: 16))",
                    "reason": "\(Self.handshakeReason(event.value, curve: configuration.curve != nil))",
                ])
        }
    }

    /// What a ZMTP protocol error code (zmq.h `ZMQ_PROTOCOL_ERROR_*`) says about the peer.
    static func handshakeReason(_ code: UInt32, curve: Bool) -> String {
        switch code {
        case 0x1100_0001:
            return "cryptographic error: the peer uses another coordinator public key (--curve-server-key)"
        case 0x1100_0002:
            return curve
                ? "mechanism mismatch: the peer does not use CURVE (give it --curve and keys)"
                : "mechanism mismatch: the peer uses CURVE, this coordinator does not"
        default: return "malformed handshake (not a Tessera peer, or another ZeroMQ security setting)"
        }
    }
}
