import Foundation

/// How much memory this process may use at most: the machine's RAM, or less where a
/// control group caps it (a container's limit, a systemd unit's `MemoryMax=`, a batch
/// scheduler's job: cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`, of the process's
/// own group and every group above it). Read once.
package enum SystemMemory {
    package static let limit: Int = {
        let physical = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        let groups = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        return cgroupLimit(groups: groups, root: "/sys/fs/cgroup").map { min($0, physical) } ?? physical
    }()

    /// Where `limit` comes from, for messages: "the machine's memory" or "its control group's memory limit".
    package static var limitSource: String {
        limit < Int(clamping: ProcessInfo.processInfo.physicalMemory)
            ? "its control group's memory limit" : "the machine's memory"
    }

    /// The smallest memory limit of the groups `groups` (the text of `/proc/self/cgroup`) names and
    /// their parents, under the hierarchy mounted at `root`, or nil if none is set. Only the root's was
    /// read: a limit on the process's own group (a unit's `MemoryMax=`, a nested group) was not seen, and
    /// the worker was killed by the kernel instead of refusing a tile too large (operator audit 38 F6).
    /// In a container the group is its root ("0::/"); a group not visible here (another namespace) is skipped.
    static func cgroupLimit(groups: String, root: String) -> Int? {
        var files = ["\(root)/memory.max", "\(root)/memory/memory.limit_in_bytes"]
        for line in groups.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/") else { continue }
            let (folder, file): (String, String)
            if fields[0] == "0" && fields[1].isEmpty {
                (folder, file) = (root, "memory.max")  // v2, the unified hierarchy
            } else if fields[1].split(separator: ",").contains("memory") {
                (folder, file) = ("\(root)/memory", "memory.limit_in_bytes")  // v1
            } else {
                continue
            }
            var path = fields[2].split(separator: "/").map(String.init)
            while !path.isEmpty {
                files.append("\(folder)/\(path.joined(separator: "/"))/\(file)")
                path.removeLast()
            }
        }
        var limit: Int?
        for path in files {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
                let bytes = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes > 0
            {
                limit = min(limit ?? bytes, bytes)  // "max" (no limit) does not parse
            }
        }
        return limit
    }

    /// The address-space limit (`ulimit -v`, RLIMIT_AS), if one is set: allocations past it fail.
    package static var addressSpaceLimit: Int? {
        var r = rlimit()
        guard getrlimit(Int32(RLIMIT_AS.rawValue), &r) == 0, r.rlim_cur != rlim_t.max else { return nil }
        return Int(clamping: r.rlim_cur)
    }

    /// What this process may allocate in all: `limit`, or less under an address-space limit.
    package static var room: Int { addressSpaceLimit.map { min($0, limit) } ?? limit }

    /// "3.23 GiB", "768 MiB" or "200 KiB": an amount of memory (or disk) in a message.
    package static func text(_ bytes: Int) -> String {
        bytes >= 1 << 30
            ? String(format: "%.2f GiB", Double(bytes) / Double(1 << 30))
            : bytes >= 1 << 20
                ? String(format: "%.0f MiB", Double(bytes) / Double(1 << 20))
                : String(format: "%.0f KiB", Double(bytes) / Double(1 << 10))
    }
}
