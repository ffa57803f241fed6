import Foundation

/// Scratch folders named after this test process (`PREFIX<pid>` under the temporary directory), so that a
/// later run removes what an earlier one left behind: a failed or interrupted test, or files a test keeps
/// until its process ends (compiled libraries other processes load), cannot pile up in /tmp.
enum ProcessScratch {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var swept: Set<String> = []

    /// This process's folder for `prefix`, created on first use; the first call for each prefix also
    /// removes the folders of processes that have ended.
    static func folder(_ prefix: String) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if swept.insert(prefix).inserted { removeStale(prefix: prefix) }
        let path = NSTemporaryDirectory() + prefix + "\(ProcessInfo.processInfo.processIdentifier)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A fresh, empty folder inside this process's folder for `prefix`.
    static func fresh(_ prefix: String) throws -> String {
        let path = try folder(prefix) + "/" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Removes `PREFIX<pid>` folders whose process has ended.
    static func removeStale(prefix: String) {
        let temporary = NSTemporaryDirectory()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? []
        for name in names where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), kill(pid, 0) != 0, errno == ESRCH else { continue }
            try? FileManager.default.removeItem(atPath: temporary + name)
        }
    }
}
