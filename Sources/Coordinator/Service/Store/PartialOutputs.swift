import Foundation
import Logging

/// The unfinished map stores a shared-storage job builds in its output folder
/// (`.STEM.zarr.partial-TOKEN`, renamed into place when done). A coordinator killed with
/// `kill -9` (or a lost machine) left its partial there for good, many GB for a large
/// slide. Each partial records which coordinator store it belongs to (`tessera-owner.txt`:
/// host and store folder); when a new job plans the same output, the partials whose store
/// is gone, or is an abandoned temporary store, are removed: no coordinator can resume
/// them. A partial of a store that still exists (an interrupted `--store` job, which
/// resumes into it) or of another host is never touched, nor one without the record.
/// A finished map keeps only the submitting key in its record (`finish`): a job of
/// another key may not replace it (`CoordinatorLoop.sharedOutputClash`).
enum PartialOutputs {
    static let ownerFile = "tessera-owner.txt"

    /// Records in the new partial `path` the coordinator store `root` it belongs to, and
    /// the key that submitted the job (`key`: nil without CURVE).
    static func markOwner(_ path: String, storeRoot root: String, key: String?) throws {
        let text = "host=\(ProcessInfo.processInfo.hostName)\nstore=\(root)\nkey=\(key ?? "anonymous")\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: "\(path)/\(ownerFile)"), options: .atomic)
    }

    /// Keeps only the submitting key in a finished store's record (before it is renamed
    /// into place): the map's owner, whom another key may not replace it for.
    static func finish(_ path: String) {
        let file = "\(path)/\(ownerFile)"
        guard let key = fields(file)["key"] else {
            unlink(file)
            return
        }
        try? Data("key=\(key)\n".utf8).write(to: URL(fileURLWithPath: file), options: .atomic)
    }

    /// The key whose job wrote the finished map at `path` (nil: unrecorded or anonymous).
    static func mapOwner(_ path: String) -> String? {
        fields("\(path)/\(ownerFile)")["key"].flatMap { $0 == "anonymous" ? nil : $0 }
    }

    private static func fields(_ file: String) -> [String: String] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [:] }
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
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        where name.hasPrefix(".\(stem).") && name.contains(".partial-") {
            let path = "\(folder)/\(name)"
            guard let owner = owner(of: path), owner.host == ProcessInfo.processInfo.hostName else { continue }
            let storeGone = !FileManager.default.fileExists(atPath: owner.store)
            let abandoned =
                (owner.store as NSString).lastPathComponent.hasPrefix(TemporaryStores.prefix)
                && TemporaryStores.isAbandoned(owner.store)
            guard storeGone || abandoned else { continue }
            do {
                try FileManager.default.removeItem(atPath: path)
                removed.append(path)
                logger.notice(
                    "removed the unfinished map of a coordinator that stopped without finishing it (its store is gone, so nothing can resume it)",
                    metadata: ["map": "\(path)", "store": "\(owner.store)"])
            } catch {
                logger.warning(
                    "cannot remove an orphaned partial map", metadata: ["map": "\(path)", "error": "\(error)"])
            }
        }
        return removed
    }

    static func owner(of partial: String) -> (host: String, store: String)? {
        let fields = fields("\(partial)/\(ownerFile)")
        guard let host = fields["host"], let store = fields["store"], store.hasPrefix("/") else { return nil }
        return (host, store)
    }
}
