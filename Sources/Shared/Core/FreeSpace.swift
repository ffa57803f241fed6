import Foundation

/// Bytes free for this user on the file system holding `directory` (what `df` calls available), or nil when it
/// cannot be asked (no such folder).
public func freeBytes(_ directory: String) -> UInt64? {
    var info = statvfs()
    guard statvfs(directory, &info) == 0 else { return nil }
    return UInt64(info.f_bavail) &* UInt64(info.f_frsize)
}

/// Inodes free for this user on the file system holding `directory`, or nil when it cannot be asked (0 where the
/// file system has no fixed count and says so).
public func freeInodes(_ directory: String) -> UInt64? {
    var info = statvfs()
    guard statvfs(directory, &info) == 0 else { return nil }
    return UInt64(info.f_favail)
}

/// Whether the folder is on a file system held in memory (tmpfs, ramfs): what is written there is memory, charged
/// to this process's control group, however much room `freeBytes` reports (review 34 N1: /tmp is a tmpfs on many
/// distributions). The file system of the longest mount point holding the folder's real path.
public func isMemoryBacked(_ directory: String) -> Bool {
    // (statfs's f_type is not in Swift's Glibc module: the mount table says the type.)
    guard let real = realpath(directory, nil) else { return false }
    let path = String(cString: real)
    free(real)
    guard let table = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
    var best: (point: String, type: Substring)?
    for line in table.split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count >= 3 else { continue }
        let point = unescapedMountPoint(fields[1])
        let inside = point == "/" || path == point || path.hasPrefix(point + "/")
        if inside, point.count >= (best?.point.count ?? -1) { best = (point, fields[2]) }
    }
    return best.map { $0.type == "tmpfs" || $0.type == "ramfs" } ?? false
}

/// A mount point as /proc/self/mounts writes it, its space, tab, newline and backslash as octal escapes.
private func unescapedMountPoint(_ text: Substring) -> String {
    guard text.contains("\\") else { return String(text) }
    var bytes: [UInt8] = []
    var utf8 = Array(text.utf8)[...]
    while let byte = utf8.popFirst() {
        if byte == UInt8(ascii: "\\"), utf8.count >= 3,
            let code = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8)
        {
            bytes.append(code)
            utf8 = utf8.dropFirst(3)
        } else {
            bytes.append(byte)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Bytes a decode into `directory` may write there: its free bytes, and on a file system held in memory no more than
/// three quarters of what this process may use (`SystemMemory.room`), as for a decode into memory.
package func decodeRoom(_ directory: String) -> UInt64? {
    guard let free = freeBytes(directory) else { return nil }
    return isMemoryBacked(directory) ? min(free, UInt64(SystemMemory.room / 4 * 3)) : free
}
