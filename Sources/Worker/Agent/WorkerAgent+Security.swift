import Logging
import TesseraWire

/// CURVE on the worker's DEALER, and the log line that tells why a coordinator
/// refuses this worker (it then never says hello, so it gets no task).
extension WorkerAgent {
    /// Makes `socket` a CURVE client when the configuration has keys (before connect).
    func secure(_ socket: borrowing ZMQSocket) throws {
        guard let curve = configuration.curve else { return }
        try ZMQCurve.configureClient(socket, pair: curve.keyPair, serverKey: curve.serverKey)
    }
}

/// Reads a socket monitor without blocking and logs each kind of handshake failure
/// once per session.
struct HandshakeWatch: ~Copyable {
    let monitor: ZMQMonitor
    let curve: Bool
    private var logged: Set<UInt16> = []
    /// Whether the coordinator refused a handshake this session (it answered: with a refusal).
    private(set) var refused = false

    init(_ socket: borrowing ZMQSocket, context: ZMQContext, curve: Bool) throws {
        monitor = try socket.monitor(events: HandshakeFailure.events, context: context)
        self.curve = curve
    }

    mutating func check(_ logger: Logger) {
        while let event = try? monitor.next(timeoutMilliseconds: 0) {
            guard let reason = HandshakeFailure.explain(event, curve: curve) else { continue }
            refused = true
            guard logged.insert(event.event.rawValue).inserted else { continue }
            logger.error("cannot register with the coordinator: \(reason)")
        }
    }
}
