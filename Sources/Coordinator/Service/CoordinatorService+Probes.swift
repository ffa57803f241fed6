import Foundation

/// What `/readyz` asks of the coordinator beyond "endpoints bound": a store it can write.
extension CoordinatorService {
    /// Free bytes under which the store is called full.
    static let fullStoreBytes = 1 << 20

    package var storeReadiness: (ready: Bool, detail: String) {
        guard let folder = jobsFolder.withLock({ $0 }) else { return (false, "the store is not prepared yet") }
        guard access(folder, W_OK) == 0 else {
            // No path: the probe answers unauthenticated HTTP clients (security audit).
            return (false, "the store (--store) is not writable: \(String(cString: strerror(errno)))")
        }
        // Full, it still serves status and downloads (so it stays ready: not ready, a Kubernetes Service would stop
        // routing to it), but takes no new job: said (audit 55 F8: "store writable" on a store 100 % full).
        var info = statvfs()
        if statvfs(folder, &info) == 0 {
            let free = Int(clamping: UInt64(info.f_bavail) &* UInt64(info.f_frsize))
            if free < Self.fullStoreBytes || (info.f_files > 0 && info.f_favail == 0) {
                return (
                    true,
                    "endpoints bound, store writable but full (\(free >> 10) KiB, \(info.f_favail) inodes free): new "
                        + "jobs cannot be stored"
                )
            }
        }
        return (true, "endpoints bound, store writable")
    }
}
