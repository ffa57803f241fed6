import Foundation
import Logging
import TesseraImage

/// The unfinished map stores a shared-storage job builds in its output folder
/// (`.STEM.zarr.partial-TOKEN`, renamed into place when done). A coordinator killed with
/// `kill -9` (or a lost machine) left its partial there for good, many GB for a large
/// slide. Each partial records which coordinator store it belongs to (`tessera-owner.txt`:
/// host, store folder and the submitting key), and its coordinator holds a lock on that
/// record while the job is active. When a new job plans the same output, a partial is
/// removed only if it is a folder of this user, its record names this host, nobody
/// holds its lock (so no coordinator, in whatever namespace or private /tmp, works on
/// it), and its store is positively gone (not found) or an abandoned temporary store:
/// nothing can resume it. An interrupted `--store` job's partial (its store exists), a
/// locked one, another host's and one without the record are never touched.
/// A finished map keeps only the submitting key, in its `.zattrs` (`tessera.submitted_by`, written by
/// `MapStore.finish`), and the record goes (`finish`): zarr-python warned about the stray file on every
/// open. A job of another key may not replace the map (`CoordinatorLoop.sharedOutputClash`).
package enum PartialOutputs {
    static let ownerFile = "tessera-owner.txt"

    /// The file in a shared job's folder that names the partial map its submission is about to create.
    static let plannedFile = "partial-map.txt"

    /// Names in `dir` (the job's folder) the partial map about to be created at `path`, before the job's
    /// record: a coordinator killed in between left that map in the shared output for good, as nothing
    /// named it (chaos audit 28). `removePlanned` removes it at the next start.
    static func plan(_ path: String, jobFolder dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try DurableFile.write(Array(path.utf8), to: "\(dir)/\(plannedFile)")
    }

    /// The partial map an interrupted submission whose folder is `dir` planned, removed when it is there (a
    /// folder of a partial map's name, with no owner record or one of `storeRoot`). Returns it when removed.
    @discardableResult
    static func removePlanned(jobFolder dir: String, storeRoot: String, logger: Logger) -> String? {
        guard let text = FileIO.text("\(dir)/\(plannedFile)") else { return nil }
        let path = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return remove(
            path, storeRoot: storeRoot,
            notice: "removed the partial map of a shared submission the coordinator stopped during",
            failure: "cannot remove the partial map of an interrupted shared submission", logger: logger)
    }

    /// The partial map `path` of a job that failed when the coordinator could not resume it, removed when it
    /// is there (as `removePlanned`'s): a failed job leaves no map, and nothing can resume this one.
    @discardableResult
    static func removeUnresumable(_ path: String, storeRoot: String, logger: Logger) -> String? {
        remove(
            path, storeRoot: storeRoot,
            notice: "removed the partial map of a job that could not be resumed",
            failure: "cannot remove the partial map of a job that could not be resumed", logger: logger)
    }

    /// Removes `path` if it is a folder named as a partial map, with no owner record or one of `storeRoot`.
    private static func remove(
        _ path: String, storeRoot: String, notice: Logger.Message, failure: Logger.Message, logger: Logger
    ) -> String? {
        let name = (path as NSString).lastPathComponent
        var isDirectory: ObjCBool = false
        guard path.hasPrefix("/"), name.hasPrefix("."), name.contains(".partial-"),
            FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue,
            owner(of: path).map({ $0.store == storeRoot }) ?? true
        else { return nil }
        let removed = StaleFolders.remove(
            path, notice: notice, failure: failure, failureLevel: .warning, metadata: ["map": "\(path)"],
            logger: logger)
        return removed ? path : nil
    }

    /// Records in the new partial `path` the coordinator store `root` it belongs to, and
    /// the key that submitted the job (`key`: nil without CURVE).
    static func markOwner(_ path: String, storeRoot root: String, key: String?) throws {
        let text = "host=\(ProcessInfo.processInfo.hostName)\nstore=\(root)\nkey=\(key ?? "anonymous")\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: "\(path)/\(ownerFile)"), options: .atomic)
    }

    /// The submitting key in the record of the partial `path` ("anonymous" without CURVE; nil: no record).
    static func submittingKey(_ path: String) -> String? { fields("\(path)/\(ownerFile)")["key"] }

    /// Removes a finished store's record (before it is renamed into place): its key is in `.zattrs` by now.
    /// A store an earlier build finished (then stopped before the rename) has none there: its record keeps
    /// the key alone, as that build left it.
    static func finish(_ path: String) {
        let file = "\(path)/\(ownerFile)"
        guard MapStore.submittedBy(path) == nil, let key = fields(file)["key"] else {
            unlink(file)
            return
        }
        try? Data("key=\(key)\n".utf8).write(to: URL(fileURLWithPath: file), options: .atomic)
    }

    /// The key whose job wrote the finished map at `path` (nil: unrecorded or anonymous); maps of
    /// earlier versions kept it in the record file.
    static func mapOwner(_ path: String) -> String? {
        (MapStore.submittedBy(path) ?? fields("\(path)/\(ownerFile)")["key"]).flatMap {
            $0 == "anonymous" ? nil : $0
        }
    }

    private static func fields(_ file: String) -> [String: String] {
        // A regular file of at most 16 MiB: the folder is the client's (hostile-peer audit 54: a FIFO record
        // blocked the preparation queue, so every later submission hung).
        guard let text = FileIO.text(file) else { return [:] }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        return fields
    }

    /// Removes the partials of `stem` in `folder` that nothing can resume; returns them.
    @discardableResult
    static func removeOrphans(stem: String, in folder: String, logger: Logger) -> [String] {
        var removed: [String] = []
        let prefixes = [".\(stem).zarr.partial-", ".\(stem).chunks.partial-"]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        where prefixes.contains(where: { name.hasPrefix($0) }) {
            let path = "\(folder)/\(name)"
            guard StaleFolders.isOwnFolder(path), let owner = owner(of: path),
                owner.host == ProcessInfo.processInfo.hostName,
                let lock = PartialLock(path)  // held by a live coordinator: not an orphan
            else { continue }
            defer { lock.release() }
            var storeInfo = stat()
            let storeGone = stat(owner.store, &storeInfo) != 0 && errno == ENOENT
            guard storeGone || TemporaryStores.isAbandoned(owner.store) else { continue }
            if StaleFolders.remove(
                path,
                notice:
                    "removed the unfinished map of a coordinator that stopped without finishing it (its store is gone, so nothing can resume it)",
                failure: "cannot remove an orphaned partial map", failureLevel: .warning,
                metadata: ["map": "\(path)", "store": "\(owner.store)"], logger: logger)
            {
                removed.append(path)
            }
        }
        return removed
    }

    // MARK: - Who writes an output now

    /// The pid in the name of an unfinished output a process writes itself (`.NAME.partial-PID`,
    /// `.NAME.partial-PID-RANDOM`, `.NAME.tmp-PID-RANDOM`); nil for a coordinator's partial map, whose
    /// token (base 36) is no pid (it was read as one: "3k9x…" as pid 3, whose absence made a live
    /// coordinator's partial "stale").
    package static func writerPID(_ name: String) -> pid_t? {
        guard let marker = name.range(of: ".partial-") ?? name.range(of: ".tmp-") else { return nil }
        let field = name[marker.upperBound...].prefix { $0 != "-" }
        guard !field.isEmpty, field.allSatisfy({ $0.isASCII && $0.isNumber }), let pid = pid_t(field), pid > 0 else {
            return nil
        }
        return pid
    }

    /// Whether process `pid` is running (on this machine).
    package static func isRunning(_ pid: pid_t) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

    /// Whether a live coordinator holds the lock of the partial map at `path` (`PartialLock`).
    package static func isHeld(_ path: String) -> Bool {
        let fd = open("\(path)/\(ownerFile)", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)  // (a FIFO: not waited on)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_SH | LOCK_NB) == 0 else { return errno == EWOULDBLOCK }
        flock(fd, LOCK_UN)
        return false
    }

    /// The unfinished output of `stem` in `folder` that another live process writes now (a `run` or
    /// `export` by its pid, a coordinator by its lock; not one of coordinator store `ownStore`), named for a
    /// message; nil when none. Two runs of one image into one --out both computed it, and the last
    /// silently replaced the first (user audit F18).
    package static func liveWriter(stem: String, in folder: String, ownStore: String? = nil) -> String? {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        where name.hasPrefix(".\(stem).") && (name.contains(".partial-") || name.contains(".tmp-")) {
            if let pid = writerPID(name) {
                if pid != getpid(), isRunning(pid) { return "process \(pid) (\(name))" }
            } else if isHeld("\(folder)/\(name)"), ownStore == nil || owner(of: "\(folder)/\(name)")?.store != ownStore
            {
                // (A finishing job's record no longer names its store, but its lock is held till the rename: a
                // run's check let a second run of the image through then, and only its coordinator refused it.)
                return "a coordinator (\(name))"
            }
        }
        return nil
    }

    static func owner(of partial: String) -> (host: String, store: String)? {
        let fields = fields("\(partial)/\(ownerFile)")
        guard let host = fields["host"], let store = fields["store"], store.hasPrefix("/") else { return nil }
        return (host, store)
    }
}

/// The lock a coordinator holds on a partial map's record while its job is active (an
/// exclusive `flock`; released at the job's end, or by the kernel if the process dies).
final class PartialLock: @unchecked Sendable {
    private let lock = NSLock()
    private var descriptor: Int32

    /// Takes the lock of the partial map at `path`; nil if it has no record, the file
    /// system has no locks, or another process holds it.
    init?(_ path: String) {
        let fd = open("\(path)/\(PartialOutputs.ownerFile)", O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return nil
        }
        descriptor = fd
    }

    func release() {
        lock.withLock {
            if descriptor >= 0 { close(descriptor) }
            descriptor = -1
        }
    }

    deinit { release() }
}
