import Foundation

/// How much memory this process may use at most: the machine's RAM, or less where a
/// control group caps it (a container's limit: cgroup v2 `memory.max`, v1
/// `memory.limit_in_bytes`). Read once.
package enum SystemMemory {
    package static let limit: Int = {
        var limit = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
                let bytes = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes > 0
            {
                limit = min(limit, bytes)  // "max" (no limit) does not parse
            }
        }
        return limit
    }()

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
