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
    }

    private let lock = NSLock()
    private var state = State(lastTick: monotonicSeconds())

    /// `detail`: why it is not ready yet.
    package init(notReadyBecause detail: String = "starting") {
        state.readyDetail = detail
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
        }
    }

    /// Seconds since the loop last went round.
    package var secondsSinceTick: Double { monotonicSeconds() - withLock { $0.lastTick } }

    package var readiness: (ready: Bool, detail: String) { withLock { ($0.ready, $0.readyDetail) } }
}
