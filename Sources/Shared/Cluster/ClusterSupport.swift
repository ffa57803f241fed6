import Foundation
import Logging
import TesseraCore

/// Heartbeat contract (the zguide's Paranoid Pirate): any message counts as a sign of
/// life; a peer silent for `liveness` intervals is dead.
package struct Heartbeat: Sendable, Equatable {
    package var intervalMilliseconds: Int = 1000
    package var liveness: Int = 3
    package init(intervalMilliseconds: Int = 1000, liveness: Int = 3) {
        self.intervalMilliseconds = intervalMilliseconds
        self.liveness = liveness
    }
    package var interval: Double { Double(intervalMilliseconds) / 1000 }
    /// Seconds of silence after which a peer is declared dead.
    package var deadline: Double { interval * Double(liveness) }
}

/// Log lines about untrusted input, at most `burst` per reason every `window`
/// seconds; the rest are counted and reported with the next line let through. A peer
/// sending garbage cannot fill the disk.
package struct RateLimitedLog: Sendable {
    let logger: Logger
    package var burst = 5
    package var window = 10.0
    /// Called with the key of every warning that `counts`, logged or suppressed (a refusals counter).
    package var onEvent: (@Sendable (String) -> Void)?
    private var windows: [String: (start: Double, count: Int, suppressed: Int)] = [:]

    package init(logger: Logger) { self.logger = logger }

    package mutating func warning(
        _ key: String, _ message: String, metadata: Logger.Metadata = [:], counts: Bool = true
    ) {
        if counts { onEvent?(key) }
        let now = monotonicSeconds()
        var w = windows[key] ?? (now, 0, 0)
        if now - w.start > window { w = (now, 0, w.suppressed) }
        if w.count < burst {
            w.count += 1
            var m = metadata
            if w.suppressed > 0 { m["suppressed"] = "\(w.suppressed)"; w.suppressed = 0 }
            logger.warning("\(message)", metadata: m)
        } else {
            w.suppressed += 1
        }
        windows[key] = w
    }
}
