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
