/// The routing id a worker's session presents to the coordinator: "TW", 1, the worker process's random token
/// (8 bytes) and the session's number (4 bytes). The coordinator tells a worker that comes back (paused, its
/// link cut: the same process) from one started again (after a crash), and a new session of a worker from
/// another worker of its name. Any other id (libzmq's own, which start with 0; an earlier release's worker)
/// names no process, and such a worker is taken as before: each session a new worker.
package enum WorkerIdentity {
    static let prefix: [UInt8] = [0x54, 0x57, 0x01]

    /// The id of session `session` of the worker process `process`.
    package static func routingID(process: UInt64, session: UInt32) -> [UInt8] {
        prefix + withUnsafeBytes(of: process.bigEndian, Array.init) + withUnsafeBytes(of: session.bigEndian, Array.init)
    }

    /// The worker process whose session presents `id`, if it is one of `routingID`'s.
    package static func process(of id: RoutingID) -> UInt64? {
        let b = id.bytes
        guard b.count == prefix.count + 12, Array(b[0..<prefix.count]) == prefix else { return nil }
        return b[prefix.count..<(prefix.count + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
