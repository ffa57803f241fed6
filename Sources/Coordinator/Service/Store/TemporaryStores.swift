import Foundation
import Logging
import TesseraCluster
import TesseraImage

/// The temporary stores of coordinators started without `--store` (every embedded
/// `run`): `tessera-store-PID-UUID` in the temporary folder, removed when their
/// coordinator stops. One killed (`kill -9`, a crash, a lost machine) left its store,
/// uploaded images and maps included, for good; every start now removes those.
///
/// A store is removed only when all of these hold, so that nothing live, and nothing
/// that is not a temporary store of this user on this host, is ever touched:
/// - it is a real folder (not a link) owned by this user, mode 0700, with the exact
///   `tessera-store-PID-UUID` name and the marker file a temporary store is made with
///   (a `--store` folder of a similar name has none), naming this host;
/// - its process is gone, and nobody holds its lock (a PID may be reused, or belong to
///   another PID namespace sharing the folder, where a live coordinator holds its lock).
///
/// A new store is made under a hidden name, marked and locked, and only then renamed
/// to its visible name: a sweep never sees a store that is not locked yet.
enum TemporaryStores {
    static let prefix = "tessera-store-"
    static let markerFile = "tessera-temporary-store"

    static var folder: String { FileManager.default.temporaryDirectory.path }

    /// Makes a new temporary store for this process: returns its path and its lock
    /// (nil where the file system has no locks: the store then relies on its PID).
    static func create(in folder: String = folder, logger: Logger) throws -> (String, StoreLock?) {
        let name = "\(prefix)\(getpid())-\(UUID().uuidString)"
        let staging = "\(folder)/.\(name)"
        let path = "\(folder)/\(name)"
        // POSIX calls, whose errno names the cause (audit 55 F5: a full TMPDIR gave Foundation's "NSCocoaErrorDomain
        // Code=640", and the hidden folder was left for good).
        func failure(_ what: String) -> ClusterError {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: staging)
            return ClusterError(
                .storage,
                "cannot create a temporary job store in \(folder) (the temporary folder, TMPDIR): \(what): \(reason); "
                    + "set TMPDIR to a folder with room, or give --store")
        }
        guard mkdir(staging, DurableFile.directoryMode) == 0, chmod(staging, DurableFile.directoryMode) == 0,
            mkdir(staging + "/jobs", DurableFile.directoryMode) == 0
        else { throw failure("cannot make its folder") }
        let marker = Array("host=\(ProcessInfo.processInfo.hostName)\n".utf8)
        let fd = open("\(staging)/\(markerFile)", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("cannot write its marker") }
        let written = write(fd, marker, marker.count)
        close(fd)
        guard written == marker.count else {
            if written >= 0 { errno = ENOSPC }
            throw failure("cannot write its marker")
        }
        var lock: StoreLock?
        do {
            lock = try StoreLock(root: staging)
        } catch {
            logger.debug("the temporary store cannot be locked", metadata: ["error": "\(error)"])
        }
        guard rename(staging, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: staging)
            throw ClusterError(.storage, "cannot create the temporary store \(path): \(reason)")
        }
        return (path, lock)
    }

    /// Removes the abandoned stores in `folder` other than `keeping`; returns their paths.
    @discardableResult
    static func removeAbandoned(in folder: String = folder, keeping: String, logger: Logger) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        var removed: [String] = []
        for name in names where name.hasPrefix(".\(prefix)") {
            // One a process killed while making it left under its hidden name (never locked, maybe no marker).
            let path = "\(folder)/\(name)"
            guard let pid = pid(of: String(name.dropFirst())), !PartialOutputs.isRunning(pid),
                StaleFolders.isOwnFolder(path, privateOnly: true)
            else { continue }
            try? FileManager.default.removeItem(atPath: path)
        }
        for name in names where name.hasPrefix(prefix) {
            let path = "\(folder)/\(name)"
            guard path != keeping, isAbandoned(path) else { continue }
            if StaleFolders.remove(
                path, notice: "removed the temporary store of a coordinator that did not stop cleanly",
                failure: "cannot remove an abandoned temporary store", failureLevel: .debug,
                metadata: ["store": "\(path)", "pid": "\(pid(of: name) ?? 0)"], logger: logger)
            {
                removed.append(path)
            }
        }
        return removed
    }

    /// Whether `path` is a temporary store of this user and host whose coordinator is gone.
    static func isAbandoned(_ path: String) -> Bool {
        let name = (path as NSString).lastPathComponent
        guard let pid = pid(of: name), StaleFolders.isOwnFolder(path, privateOnly: true) else { return false }
        guard let marker = FileIO.text("\(path)/\(markerFile)"),
            marker == "host=\(ProcessInfo.processInfo.hostName)\n"
        else { return false }
        return !PartialOutputs.isRunning(pid) && !isLocked(path)
    }

    /// The PID in `tessera-store-PID-UUID` (nil for any other name).
    static func pid(of name: String) -> pid_t? {
        guard name.hasPrefix(prefix) else { return nil }
        let parts = name.dropFirst(prefix.count).split(separator: "-", maxSplits: 1)
        guard parts.count == 2, UUID(uuidString: String(parts[1])) != nil else { return nil }
        return pid_t(parts[0]).flatMap { $0 > 0 ? $0 : nil }
    }

    /// Whether a coordinator holds the store's lock (one that cannot be checked counts as held).
    private static func isLocked(_ store: String) -> Bool {
        let fd = open(store + "/coordinator.lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return errno != ENOENT }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return true }
        flock(fd, LOCK_UN)
        return false
    }
}
