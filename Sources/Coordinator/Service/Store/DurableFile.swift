import Foundation
import TesseraCluster
import TesseraCore

/// Write temp → fsync → rename → fsync the folder: a file appears under its final
/// name only complete and durable (the job store's records, tiles and files). A
/// crash at any point leaves either the old state or the new one, plus at worst a
/// `.NAME.tmp-*` file that `JobStore` removes at start.
///
/// The store holds other people's slides, models and maps: files are created 0600
/// and folders 0700 (owner only), whatever the umask.
enum DurableFile {
    static let fileMode: mode_t = 0o600
    static let directoryMode: mode_t = 0o700

    static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        let dir = parentPath(path)
        let temp =
            "\(dir)/.\((path as NSString).lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, fileMode)
        guard fd >= 0 else { throw ClusterError("cannot create \(temp): \(String(cString: strerror(errno)))") }
        var failure = writeAll(fd, bytes)
        if failure == nil && fsync(fd) != 0 { failure = "fsync: \(String(cString: strerror(errno)))" }
        if close(fd) != 0 && failure == nil { failure = "close: \(String(cString: strerror(errno)))" }
        if failure == nil && rename(temp, path) != 0 { failure = "rename: \(String(cString: strerror(errno)))" }
        if let failure {
            unlink(temp)
            throw ClusterError("cannot write \(path): \(failure)")
        }
        try syncDirectory(dir)
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try bytes.withUnsafeBytes { try write($0, to: path) }
    }

    /// Makes the folder's entries (a rename, a new file or subfolder) durable.
    static func syncDirectory(_ dir: String) throws {
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw ClusterError("cannot open the folder \(dir): \(String(cString: strerror(errno)))") }
        defer { close(dfd) }
        // EINVAL: a file system that cannot sync folders (nothing more to do there).
        if fsync(dfd) != 0 && errno != EINVAL {
            throw ClusterError("cannot sync the folder \(dir): \(String(cString: strerror(errno)))")
        }
    }

    /// Creates `dir` (and missing parents, each 0700) and makes each new entry durable.
    static func createDirectory(_ dir: String) throws {
        var missing: [String] = []
        var d = dir
        while !FileManager.default.fileExists(atPath: d) && d != "/" && !d.isEmpty {
            missing.append(d)
            d = parentPath(d)
        }
        for m in missing.reversed() {
            if mkdir(m, directoryMode) != 0 && errno != EEXIST {
                throw ClusterError("cannot create the folder \(m): \(String(cString: strerror(errno)))")
            }
            let parent = parentPath(m)
            try syncDirectory(parent.isEmpty ? "." : parent)  // a relative path's first folder lives in "."
        }
    }

    /// Appends `bytes` to `path` (created 0600 if missing) and fsyncs it once: the
    /// receipt journal's group commit. A crash mid-append leaves at worst a torn last
    /// line, which the reader skips.
    static func append(_ bytes: [UInt8], to path: String) throws {
        let isNew = !FileManager.default.fileExists(atPath: path)
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, fileMode)
        guard fd >= 0 else { throw ClusterError("cannot open \(path): \(String(cString: strerror(errno)))") }
        // Where it ended: a failed append is cut back to it, so the next one does not follow a torn line (audit 55
        // F9: on a full disk, half a receipt line was left and the next batch glued onto it).
        let start = lseek(fd, 0, SEEK_END)
        var failure = bytes.withUnsafeBytes { writeAll(fd, $0) }
        if failure != nil, start >= 0 { _ = ftruncate(fd, start) }
        if failure == nil && fsync(fd) != 0 { failure = "fsync: \(String(cString: strerror(errno)))" }
        if close(fd) != 0 && failure == nil { failure = "close: \(String(cString: strerror(errno)))" }
        if let failure { throw ClusterError("cannot append to \(path): \(failure)") }
        if isNew { try syncDirectory(parentPath(path)) }
    }

    /// Writes all of `bytes` to `fd` (retrying short writes and EINTR); the failure, or nil.
    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> String? {
        var offset = 0
        while offset < bytes.count {
            let n = Foundation.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return "write: \(String(cString: strerror(errno)))"
            }
            offset += n
        }
        return nil
    }
}
