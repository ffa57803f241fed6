import Foundation

/// Progress of long work on stderr: a bar redrawn in place on a terminal,
/// plain lines (at most one every few seconds) otherwise.
final class Progress {
    private let stream: UnsafeMutablePointer<FILE>
    private let isTerminal: Bool
    private var lastLine = Date.distantPast
    private var drawn = false

    init(stream: UnsafeMutablePointer<FILE>) {
        self.stream = stream
        isTerminal = isatty(fileno(stream)) != 0
    }

    /// `done` of `total` tasks of an image of `pixels` pixels, started at `since` with
    /// `already` of them done (restored from a store): the rate and the ETA count only
    /// the tasks done since.
    /// `rate` (map pixels per second) when the caller knows it better (a coordinator's status).
    func update(label: String, done: Int, total: Int, pixels: Int, since: Date, already: Int = 0, rate: Double? = nil) {
        let elapsed = Date().timeIntervalSince(since)
        let fraction = Double(done) / Double(max(1, total))
        let now = Double(max(0, done - already))
        let rate = rate ?? (elapsed > 0 ? Double(pixels) * now / Double(max(1, total)) / elapsed : 0)
        let eta = now > 0 ? elapsed * Double(max(0, total - done)) / now : 0
        let stats = String(format: "%d/%d tasks  %.2f Mpx/s  ETA %.0fs", done, total, rate / 1e6, eta)
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        emit(terminal: "\(label) \(bar) \(stats)", line: "\(label): \(stats)", last: done == total)
    }

    /// Redraws `terminal` in place on a terminal; otherwise writes `line`, at most one
    /// every 5 s (and always the `last`).
    private func emit(terminal: String, line: String, last: Bool) {
        if isTerminal {
            fputs("\r\(terminal)", stream)
            drawn = true
        } else if last || Date().timeIntervalSince(lastLine) >= 5 {
            fputs("\(line)\n", stream)
            lastLine = Date()
        }
        fflush(stream)
    }

    /// `done` of `total` bytes sent, started at `since` (an upload).
    func transfer(label: String, done: Int, total: Int, since: Date) {
        let elapsed = max(Date().timeIntervalSince(since), 1e-6)
        let stats = String(
            format: "uploaded %.0f/%.0f MB  %.0f MB/s", Double(done) / 1e6, Double(total) / 1e6,
            Double(done) / elapsed / 1e6)
        emit(terminal: "\(label) \(stats)", line: "\(label): \(stats)", last: done == total)
    }

    func finish() {
        if drawn { fputs("\n", stream) }
        drawn = false
        lastLine = .distantPast
    }
}
