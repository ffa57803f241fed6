import Foundation
import TesseraCluster

/// One coordinator per store: an exclusive `flock` on `STORE/coordinator.lock`, held
/// while the coordinator serves. Two coordinators on one store numbered their jobs
/// from the same files and overwrote each other's (a job's map deleted under it).
/// The lock goes with the process, however it ends; the file says who holds it.
final class StoreLock {
    private let descriptor: Int32

    init(root: String) throws {
        let path = root + "/coordinator.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ClusterError(.storage, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            var holder = [UInt8](repeating: 0, count: 256)
            let n = pread(fd, &holder, holder.count, 0)
            close(fd)
            let who = String(decoding: holder.prefix(max(0, n)), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            guard reason == EWOULDBLOCK else {
                throw ClusterError(.storage, "cannot lock \(path): \(String(cString: strerror(reason)))")
            }
            throw ClusterError(
                .storage,
                "the store \(root) is in use by another coordinator (\(who.isEmpty ? "unknown" : who)): "
                    + "give each coordinator its own --store")
        }
        let me = "pid \(getpid()) on \(ProcessInfo.processInfo.hostName)\n"
        _ = ftruncate(fd, 0)
        _ = me.withCString { pwrite(fd, $0, strlen($0), 0) }
        descriptor = fd
    }

    deinit { close(descriptor) }
}
