import Foundation

/// Bytes free for this user on the file system holding `directory` (what `df` calls available), or nil when it
/// cannot be asked (no such folder).
public func freeBytes(_ directory: String) -> UInt64? {
    var info = statvfs()
    guard statvfs(directory, &info) == 0 else { return nil }
    return UInt64(info.f_bavail) &* UInt64(info.f_frsize)
}
