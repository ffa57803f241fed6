/// Bytes a socket received and sent so far (every frame, routing frames included),
/// for the metrics endpoint. The socket's thread adds; any thread may read.
package final class SocketTraffic: Sendable {
    private let counts = Locked((received: UInt64(0), sent: UInt64(0)))

    package init() {}

    func add(received: Int) { counts.withLock { $0.received &+= UInt64(received) } }
    func add(sent: Int) { counts.withLock { $0.sent &+= UInt64(sent) } }

    package var received: UInt64 { counts.withLock { $0.received } }
    package var sent: UInt64 { counts.withLock { $0.sent } }
}
