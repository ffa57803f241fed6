import Foundation

/// Progress of long work on stderr: a bar redrawn in place on a terminal,
/// plain lines (at most one every few seconds) otherwise.
final class Progress {
    private let stream: UnsafeMutablePointer<FILE>
    private let isTerminal: Bool
    private var lastLine = Date.distantPast
    private var drawn = false
    /// The `last` line was written (a job at 100% still writing its outputs is polled again).
    private var lastWritten = false

    init(stream: UnsafeMutablePointer<FILE>) {
        self.stream = stream
        isTerminal = isatty(fileno(stream)) != 0
    }

    /// `done` of `total` tasks of an image of `pixels` pixels, started at `since` with
    /// `already` of them done (restored from a store): the rate and the ETA count only
    /// the tasks done since.
    /// `rate` (tasks and map pixels per second) when the caller knows it better (a
    /// coordinator's status, measured over its last seconds). No ETA is shown until
    /// there is a rate: with nothing done yet it would read "ETA 0s".
    /// `waiting`: no worker is there to compute (said instead of a rate and an ETA).
    func update(
        label: String, done: Int, total: Int, pixels: Int, since: Date, already: Int = 0,
        rate: (tasks: Double, pixels: Double)? = nil, waiting: Bool = false
    ) {
        let elapsed = Date().timeIntervalSince(since)
        let fraction = Double(done) / Double(max(1, total))
        let now = Double(max(0, done - already))
        let measured =
            rate ?? (elapsed > 0 ? (now / elapsed, Double(pixels) * now / Double(max(1, total)) / elapsed) : (0, 0))
        var stats = "\(done)/\(total) tasks  \(Self.rate(measured.pixels))"
        if waiting {
            stats = "\(done)/\(total) tasks  waiting for workers"
        } else if done < total, measured.tasks > 0 {
            stats += String(format: "  ETA %.0fs", Double(total - done) / measured.tasks)
        }
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        emit(terminal: "\(label) \(bar) \(stats)", line: "\(label): \(stats)", last: total > 0 && done == total)
    }

    /// Map pixels per second in a unit that shows them: `naive` of a large net runs at thousands of pixels a
    /// second, which read "0.00 Mpx/s" throughout (user review).
    static func rate(_ pixelsPerSecond: Double) -> String {
        if pixelsPerSecond >= 1e5 || pixelsPerSecond == 0 { return String(format: "%.2f Mpx/s", pixelsPerSecond / 1e6) }
        if pixelsPerSecond >= 100 { return String(format: "%.1f kpx/s", pixelsPerSecond / 1e3) }
        return String(format: "%.0f px/s", pixelsPerSecond)
    }

    /// The last line of work that did not finish: "ihc: failed after 3/64 tasks".
    func ended(label: String, _ text: String) {
        lastWritten = false
        emit(terminal: "\(label) \(text)", line: "\(label): \(text)", last: true)
        finish()
    }

    /// Redraws `terminal` in place on a terminal; otherwise writes `line`, at most one
    /// every 5 s (and always the `last`).
    private func emit(terminal: String, line: String, last: Bool) {
        if isTerminal {
            fputs("\r\(terminal)", stream)
            drawn = true
        } else if last ? !lastWritten : Date().timeIntervalSince(lastLine) >= 5 {
            fputs("\(line)\n", stream)
            lastLine = Date()
            lastWritten = last
        }
        fflush(stream)
    }

    /// `done` of `total` bytes sent, started at `since` (an upload), in KB below a megabyte.
    func transfer(label: String, done: Int, total: Int, since: Date) {
        let elapsed = max(Date().timeIntervalSince(since), 1e-6)
        let stats =
            "uploaded \(Self.amount(Double(done), unitOf: Double(total)))/\(Self.bytes(Double(total)))  "
            + "\(Self.bytes(Double(done) / elapsed))/s"
        emit(terminal: "\(label) \(stats)", line: "\(label): \(stats)", last: done == total)
    }

    /// "512 B", "340 KB", "12.5 MB", "1.2 GB" (decimal units).
    static func bytes(_ count: Double) -> String {
        amount(count, unitOf: count) + " " + unit(count).name
    }

    /// `count` in the unit `bytes` chooses, without the unit's name ("0/340 KB").
    private static func amount(_ count: Double, unitOf reference: Double) -> String {
        let (scale, _, digits) = unit(reference)
        return String(format: "%.\(digits)f", count / scale)
    }

    private static func unit(_ count: Double) -> (scale: Double, name: String, digits: Int) {
        switch count {
        case ..<1e3: (1, "B", 0)
        case ..<1e6: (1e3, "KB", 0)
        case ..<1e8: (1e6, "MB", 1)
        case ..<1e9: (1e6, "MB", 0)
        default: (1e9, "GB", 1)
        }
    }

    func finish() {
        if drawn { fputs("\n", stream) }
        drawn = false
        lastWritten = false
        lastLine = .distantPast
    }
}
