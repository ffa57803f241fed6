import Foundation

/// The process's own resource counters.
package enum ResourceUsage {
    /// Peak resident set size so far, in bytes (getrusage's ru_maxrss).
    package static var peakResidentBytes: Int {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Int(usage.ru_maxrss) * 1024
    }
}
