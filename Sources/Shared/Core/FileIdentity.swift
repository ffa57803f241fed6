#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file as a reader tells a replaced one apart: device, inode, size and modification time. A file renamed over
/// the path has another inode; one written in place another size or time. Its status-change time is kept too,
/// for `isSameFile` across devices; it is not part of equality (a `chmod` changes it).
package struct FileIdentity: Hashable, Sendable, CustomStringConvertible {
    package let device: UInt64
    package let inode: UInt64
    package let size: Int64
    package let seconds: Int
    package let nanoseconds: Int
    /// `st_ctim` (nil in an identity recorded before it was).
    package let changed: Timestamp?

    package struct Timestamp: Hashable, Sendable {
        package let seconds: Int
        package let nanoseconds: Int
        package init(seconds: Int, nanoseconds: Int) { (self.seconds, self.nanoseconds) = (seconds, nanoseconds) }
        /// "1765126800.123456789"
        var text: String {
            let digits = String(nanoseconds)
            return "\(seconds)." + String(repeating: "0", count: max(0, 9 - digits.count)) + digits
        }
    }

    /// The file at `path` now (links followed); nil when it cannot be stat'ed.
    package init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(truncatingIfNeeded: info.st_dev)
        inode = UInt64(truncatingIfNeeded: info.st_ino)
        size = Int64(info.st_size)
        seconds = info.st_mtim.tv_sec
        nanoseconds = info.st_mtim.tv_nsec
        changed = Timestamp(seconds: info.st_ctim.tv_sec, nanoseconds: info.st_ctim.tv_nsec)
    }

    /// "device 2049, inode 1234, 5678 bytes, modified at 1765126800.123456789 s, changed at 1765126801.5 s" (for a
    /// message that says what changed, a job record, and a cache's key).
    package var description: String {
        "device \(device), inode \(inode), \(size) bytes, modified at "
            + Timestamp(seconds: seconds, nanoseconds: nanoseconds).text + " s"
            + (changed.map { ", changed at \($0.text) s" } ?? "")
    }

    package static func == (a: FileIdentity, b: FileIdentity) -> Bool {
        a.device == b.device && a.inode == b.inode && a.size == b.size && a.seconds == b.seconds
            && a.nanoseconds == b.nanoseconds
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(device)
        hasher.combine(inode)
        hasher.combine(size)
        hasher.combine(seconds)
        hasher.combine(nanoseconds)
    }
}

extension FileIdentity {
    /// The identity `description` wrote (a job record's, with or without the change time); nil for other text.
    package init?(recorded text: String) {
        let parts = text.split(separator: " ")
        guard parts.count == 10 || parts.count == 14, parts[0] == "device", parts[2] == "inode",
            parts[5] == "bytes,", parts[6] == "modified", parts[7] == "at",
            let device = UInt64(parts[1].dropLast()), let inode = UInt64(parts[3].dropLast()),
            let size = Int64(parts[4])
        else { return nil }
        func time(_ text: Substring) -> Timestamp? {
            let halves = text.split(separator: ".")
            guard halves.count == 2, halves[1].count == 9, let s = Int(halves[0]), let n = Int(halves[1]) else {
                return nil
            }
            return Timestamp(seconds: s, nanoseconds: n)
        }
        var changed: Timestamp?
        if parts.count == 14 {
            guard parts[9] == "s,", parts[10] == "changed", parts[11] == "at", parts[13] == "s",
                let c = time(parts[12])
            else { return nil }
            changed = c
        } else {
            guard parts[9] == "s" else { return nil }
        }
        guard let modified = time(parts[8]) else { return nil }
        self.init(
            device: device, inode: inode, size: size, seconds: modified.seconds, nanoseconds: modified.nanoseconds,
            changed: changed)
    }

    package init(
        device: UInt64, inode: UInt64, size: Int64, seconds: Int, nanoseconds: Int, changed: Timestamp? = nil
    ) {
        self.device = device
        self.inode = inode
        self.size = size
        self.seconds = seconds
        self.nanoseconds = nanoseconds
        self.changed = changed
    }

    /// Whether `other` is this file, unchanged. On another device number it must also have the same status-change
    /// time: an NFS share mounted again (a reboot, an automounter) gets another one for the same file, whose
    /// inode and times the server keeps (review 31 F5: a coordinator restarted on such a host refused to resume
    /// its shared jobs), while two fresh file systems number their inodes alike (review 34 F3: another image of
    /// the same size and modification time on a swapped mount passed). Without a recorded change time, a device
    /// change alone is taken for a remount.
    package func isSameFile(as other: FileIdentity) -> Bool {
        guard inode == other.inode, size == other.size, seconds == other.seconds, nanoseconds == other.nanoseconds
        else { return false }
        guard device != other.device, let mine = changed, let theirs = other.changed else { return true }
        return mine == theirs
    }
}
