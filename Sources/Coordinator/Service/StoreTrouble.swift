import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraWire

/// Tile writes that fail (a full disk): dispatching pauses for `pauseSeconds` after
/// each failure, so no more tiles are computed than can be kept, and resumes on its
/// own: the next dispatched tiles probe the store. Logged once per job when its writes
/// start failing and once when they succeed again, with the count of failed writes
/// between (not once per tile). Any thread (the loop writes map tiles, the store queue
/// durable tiles).
final class StoreTrouble: Sendable {
    static let pauseSeconds = 2.0

    private struct State {
        var until = 0.0
        /// Failed writes per job since its writes last succeeded.
        var failures: [UInt64: Int] = [:]
    }

    private let state = Locked(State())
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// Whether dispatching waits (monotonic `now`).
    func paused(_ now: Double) -> Bool { state.withLock { $0.until > now } }

    /// Failed writes of job `id` in its current run of failures (0 when it writes).
    func failures(of id: UInt64) -> Int { state.withLock { $0.failures[id] ?? 0 } }

    /// A write of job `id` failed: dispatching pauses; the job's first failure is logged.
    func failed(_ id: UInt64, _ what: String, _ error: any Error) {
        let count = state.withLock { s -> Int in
            s.until = monotonicSeconds() + Self.pauseSeconds
            s.failures[id, default: 0] += 1
            return s.failures[id]!
        }
        guard count == 1 else { return }
        logger.error(
            "cannot store the job's tiles: dispatching pauses until the store writes again (logged once per job)",
            metadata: ["job": "\(id)", "write": "\(what)", "error": "\(error)"])
    }

    /// A write of job `id` succeeded: if its writes had failed, that is logged with the count.
    func succeeded(_ id: UInt64) {
        let count = state.withLock { s -> Int in
            guard let n = s.failures.removeValue(forKey: id) else { return 0 }
            if s.failures.isEmpty { s.until = 0 }
            return n
        }
        guard count > 0 else { return }
        logger.notice(
            "the store writes the job's tiles again: dispatching resumes",
            metadata: ["job": "\(id)", "failed-writes": "\(count)"])
    }

    /// Job `id` ended: a run of failures it had is logged with its count.
    func ended(_ id: UInt64) {
        let count = state.withLock { s -> Int in
            let n = s.failures.removeValue(forKey: id) ?? 0
            if s.failures.isEmpty { s.until = 0 }
            return n
        }
        guard count > 0 else { return }
        logger.warning(
            "the job ended while the store could not write its tiles",
            metadata: ["job": "\(id)", "failed-writes": "\(count)"])
    }
}
