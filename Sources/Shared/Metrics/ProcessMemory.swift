import Foundation
import TesseraCore

/// The process's memory as the kernel counts it.
package enum ProcessMemory {
    /// Resident set size now, in bytes (Linux: /proc/self/statm; elsewhere the peak,
    /// from getrusage).
    package static var residentBytes: Int {
        #if os(Linux)
        if let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = text.split(separator: " ")
            if fields.count > 1, let pages = Int(fields[1]) { return pages * Int(sysconf(Int32(_SC_PAGESIZE))) }
        }
        #endif
        return ResourceUsage.peakResidentBytes
    }
}
