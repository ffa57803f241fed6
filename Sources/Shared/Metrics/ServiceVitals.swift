import Foundation
import TesseraCore

/// What `/healthz` and `/readyz` read about a service: when its main loop last went
/// round (a loop stuck on one request stops ticking) and whether it is ready (the
/// coordinator's endpoints bound, a worker registered). The loop writes, the probe
/// thread reads; each access is one short lock.
package final class ServiceVitals: @unchecked Sendable {
    // Safe: `state` is private and read or written only inside `lock`.
    private struct State {
        var lastTick: Double
        var ready = false
        var readyDetail = "starting"
        /// It has not been ready yet (a coordinator reading its store back).
        var starting = true
    }

    private let lock = NSLock()
    private var state = State(lastTick: monotonicSeconds())
    /// Several loops' vitals read as one (`init(combining:)`); empty for a loop's own.
    private let parts: [(name: String, vitals: ServiceVitals)]

    /// `detail`: why it is not ready yet.
    package init(notReadyBecause detail: String = "starting") {
        parts = []
        state.readyDetail = detail
    }

    /// The vitals of a process with several loops (a worker's compute pipelines): stalled
    /// when any loop is, ready when all are (the detail names those that are not).
    package init(combining parts: [(name: String, vitals: ServiceVitals)]) {
        self.parts = parts
    }

    private func withLock<T>(_ body: (inout State) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&state)
    }

    /// The loop went round: call once per iteration.
    package func tick() {
        let now = monotonicSeconds()
        withLock { $0.lastTick = now }
    }

    package func setReady(_ ready: Bool, _ detail: String) {
        withLock {
            $0.ready = ready
            $0.readyDetail = detail
            if ready { $0.starting = false }
        }
    }

    /// Whether it has never been ready (any part, for combined vitals).
    package var isStarting: Bool {
        guard parts.isEmpty else { return parts.contains { $0.vitals.isStarting } }
        return withLock { $0.starting }
    }

    /// Seconds since the loop last went round.
    package var secondsSinceTick: Double {
        if !parts.isEmpty { return parts.map(\.vitals.secondsSinceTick).max()! }
        return monotonicSeconds() - withLock { $0.lastTick }
    }

    package var readiness: (ready: Bool, detail: String) {
        guard !parts.isEmpty else { return withLock { ($0.ready, $0.readyDetail) } }
        let waiting = parts.filter { !$0.vitals.readiness.ready }
        if waiting.isEmpty { return (true, "\(parts.count) pipelines: \(parts[0].vitals.readiness.detail)") }
        return (false, waiting.map { "\($0.name): \($0.vitals.readiness.detail)" }.joined(separator: "; "))
    }
}
