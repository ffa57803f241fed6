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

extension FileIdentity {
    /// The identity `description` wrote (a job record's); nil for other text.
    package init?(recorded text: String) {
        let parts = text.split(separator: " ")
        guard parts.count == 10, parts[0] == "device", parts[2] == "inode", parts[5] == "bytes,",
            parts[6] == "modified", parts[7] == "at", parts[9] == "s",
            let device = UInt64(parts[1].dropLast()), let inode = UInt64(parts[3].dropLast()),
            let size = Int64(parts[4])
        else { return nil }
        let time = parts[8].split(separator: ".")
        guard time.count == 2, time[1].count == 9, let seconds = Int(time[0]), let nanoseconds = Int(time[1]) else {
            return nil
        }
        self.init(device: device, inode: inode, size: size, seconds: seconds, nanoseconds: nanoseconds)
    }

    package init(device: UInt64, inode: UInt64, size: Int64, seconds: Int, nanoseconds: Int) {
        self.device = device
        self.inode = inode
        self.size = size
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Whether `other` is this file, unchanged, whatever the device number: an NFS share mounted again (a
    /// reboot, an automounter) gets another one for the same file (review 31 F5: a coordinator restarted on
    /// such a host refused to resume its shared jobs, "changed while the coordinator was stopped").
    package func isSameFile(as other: FileIdentity) -> Bool {
        inode == other.inode && size == other.size && seconds == other.seconds && nanoseconds == other.nanoseconds
    }
}
