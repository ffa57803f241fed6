#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file as a reader tells a replaced one apart: device, inode, size and modification time. A file renamed over
/// the path has another inode; one written in place another size or time.
package struct FileIdentity: Hashable, Sendable, CustomStringConvertible {
    package let device: UInt64
    package let inode: UInt64
    package let size: Int64
    package let seconds: Int
    package let nanoseconds: Int

    /// The file at `path` now (links followed); nil when it cannot be stat'ed.
    package init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(truncatingIfNeeded: info.st_dev)
        inode = UInt64(truncatingIfNeeded: info.st_ino)
        size = Int64(info.st_size)
        seconds = info.st_mtim.tv_sec
        nanoseconds = info.st_mtim.tv_nsec
    }

    /// "device 2049, inode 1234, 5678 bytes, modified at 1765126800.123456789 s" (for a message that says what
    /// changed, and a cache's key).
    package var description: String {
        let fraction = String(nanoseconds).count < 9 ? String(repeating: "0", count: 9 - String(nanoseconds).count) : ""
        return "device \(device), inode \(inode), \(size) bytes, modified at \(seconds).\(fraction)\(nanoseconds) s"
    }
}
