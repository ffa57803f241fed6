import Foundation
import Logging

/// The temporary stores of coordinators started without `--store` (every embedded
/// `run`): `tessera-store-PID-UUID` in the temporary folder, removed when their
/// coordinator stops. One killed (`kill -9`, a crash, a lost machine) left its store,
/// uploaded images and maps included, for good; every start now removes those.
///
/// A store is abandoned when its process is gone and nobody holds its lock: both,
/// because a PID may be reused and may belong to another PID namespace sharing the
/// folder (a live coordinator there still holds its `flock`).
enum TemporaryStores {
    static let prefix = "tessera-store-"

    static var folder: String { FileManager.default.temporaryDirectory.path }

    /// A new store's path for this process.
    static func newPath(in folder: String = folder) -> String {
        "\(folder)/\(prefix)\(getpid())-\(UUID().uuidString)"
    }

    /// Removes the abandoned stores in `folder` other than `keeping`; returns their paths.
    @discardableResult
    static func removeAbandoned(in folder: String = folder, keeping: String, logger: Logger) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        var removed: [String] = []
        for name in names where name.hasPrefix(prefix) {
            let path = "\(folder)/\(name)"
            guard path != keeping, isAbandoned(path) else { continue }
            let pid = pid(of: name) ?? 0
            do {
                try FileManager.default.removeItem(atPath: path)
                removed.append(path)
                logger.notice(
                    "removed the temporary store of a coordinator that did not stop cleanly",
                    metadata: ["store": "\(path)", "pid": "\(pid)"])
            } catch {
                // Another user's, or being removed by another coordinator starting now.
                logger.debug("cannot remove an abandoned temporary store", metadata: ["store": "\(path)"])
            }
        }
        return removed
    }

    /// Whether the temporary store at `path` is abandoned: its process is gone and nobody holds its lock.
    static func isAbandoned(_ path: String) -> Bool {
        guard let pid = pid(of: (path as NSString).lastPathComponent) else { return false }
        return !isAlive(pid) && !isLocked(path)
    }

    /// The PID in `tessera-store-PID-UUID`.
    static func pid(of name: String) -> pid_t? {
        let rest = name.dropFirst(prefix.count)
        guard let digits = rest.split(separator: "-", maxSplits: 1).first else { return nil }
        return pid_t(digits).flatMap { $0 > 0 ? $0 : nil }
    }

    private static func isAlive(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    /// Whether a coordinator holds the store's lock (a store without a lock file has none).
    private static func isLocked(_ store: String) -> Bool {
        let fd = open(store + "/coordinator.lock", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return errno != ENOENT }  // unreadable: someone else's, leave it
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return true }
        flock(fd, LOCK_UN)
        return false
    }
}
