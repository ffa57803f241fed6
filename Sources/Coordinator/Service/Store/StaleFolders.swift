import Foundation
import Logging

/// What the sweeps of leftovers (`TemporaryStores`, `PartialOutputs`) share: which
/// folders they may touch at all, and removing one with a log line either way.
enum StaleFolders {
    /// Whether `path` is a real folder (not a link) owned by this user; with
    /// `privateOnly`, also closed to the group and others (mode 0700).
    static func isOwnFolder(_ path: String, privateOnly: Bool = false) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_uid == getuid() else { return false }
        return !privateOnly || info.st_mode & 0o077 == 0
    }

    /// Removes the folder at `path`: logs `notice` (with `metadata`) when it is gone, or
    /// `failure` at `failureLevel` with the error; whether it was removed.
    static func remove(
        _ path: String, notice: Logger.Message, failure: Logger.Message, failureLevel: Logger.Level,
        metadata: Logger.Metadata, logger: Logger
    ) -> Bool {
        do {
            try FileManager.default.removeItem(atPath: path)
            logger.notice(notice, metadata: metadata)
            return true
        } catch {
            logger.log(level: failureLevel, failure, metadata: metadata.merging(["error": "\(error)"]) { $1 })
            return false
        }
    }
}
