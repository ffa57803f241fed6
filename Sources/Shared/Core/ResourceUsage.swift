import Foundation

/// The process's own resource counters.
package enum ResourceUsage {
    /// Peak resident set size so far, in bytes (getrusage's ru_maxrss).
    package static var peakResidentBytes: Int {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Int(usage.ru_maxrss) * 1024
    }

    /// User + system CPU seconds of the whole process, or of the calling thread only.
    package static func cpuSeconds(thisThread: Bool = false) -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(thisThread ? 1 : RUSAGE_SELF.rawValue), &usage)  // 1: RUSAGE_THREAD (Linux)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
