/// Tasks and map pixels completed over the last `seconds`, in buckets of 1/32 of it:
/// the rate `status` shows for an active job and for the cluster. An average since the
/// start (what status showed before) never falls to 0 when nothing completes any more
/// (every worker gone): this one does, within `seconds` (operator audit F9).
struct RateWindow {
    /// The window, in seconds.
    let seconds: Double
    private static let buckets = 32
    private var slot: [Int]
    private var tasks: [Int]
    private var pixels: [Int]

    init(seconds: Double) {
        self.seconds = max(seconds, 1e-3)
        slot = Array(repeating: -1, count: Self.buckets)
        tasks = Array(repeating: 0, count: Self.buckets)
        pixels = Array(repeating: 0, count: Self.buckets)
    }

    private func slotNumber(_ now: Double) -> Int { Int(max(0, now) / (seconds / Double(Self.buckets))) }

    /// One task of `pixels` map pixels completed at `now` (monotonic seconds).
    mutating func record(at now: Double, pixels count: Int) {
        let n = slotNumber(now)
        let b = n % Self.buckets
        if slot[b] != n {
            slot[b] = n
            tasks[b] = 0
            pixels[b] = 0
        }
        tasks[b] += 1
        pixels[b] += count
    }

    /// Tasks and pixels per second at `now` over the window, or over the time since
    /// `start` when that is shorter (a job that began a few seconds ago).
    func rates(at now: Double, since start: Double) -> (tasks: Double, pixels: Double) {
        let n = slotNumber(now)
        var t = 0
        var p = 0
        for b in 0..<Self.buckets where slot[b] > n - Self.buckets && slot[b] <= n {
            t += tasks[b]
            p += pixels[b]
        }
        let span = min(seconds, max(now - start, seconds / Double(Self.buckets)))
        return (Double(t) / span, Double(p) / span)
    }
}
