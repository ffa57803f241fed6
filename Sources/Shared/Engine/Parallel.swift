import Dispatch

/// Splits `count` independent work items over at most `threads` threads.
/// `body` receives a contiguous range of items; with one thread (or one item)
/// it runs on the caller's thread.
@inlinable
func parallelRanges(
    _ count: Int, threads: Int, minimumPerThread: Int = 1,
    _ body: (Range<Int>) -> Void
) {
    guard count > 0 else { return }
    let workers = min(max(1, threads), max(1, count / max(1, minimumPerThread)))
    if workers == 1 {
        body(0..<count)
        return
    }
    DispatchQueue.concurrentPerform(iterations: workers) { i in
        let lo = count * i / workers
        let hi = count * (i + 1) / workers
        if lo < hi { body(lo..<hi) }
    }
}
