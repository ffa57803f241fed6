import Foundation
import Testing

@testable import TesseraCore

/// The memory limit the engine sizes its tiles by (operator audit 38 F6: a limit on the process's own
/// control group, a systemd unit's `MemoryMax=`, was not seen, and the worker was killed by the kernel).
@Suite("System memory: control-group limits")
struct SystemMemoryTests {
    /// A fake `/sys/fs/cgroup` with `files` (relative path → contents).
    func hierarchy(_ files: [String: String]) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-\(UUID().uuidString)").path
        for (path, text) in files {
            let full = root + "/" + path
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
        return root
    }

    @Test("cgroup v2: the smallest limit of the process's group and its parents; none set is nil")
    func unified() throws {
        let root = try hierarchy([
            "memory.max": "max\n", "system.slice/memory.max": "8000000000\n",
            "system.slice/tessera-worker@0.service/memory.max": "419430400\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let own = "0::/system.slice/tessera-worker@0.service\n"
        #expect(SystemMemory.cgroupLimit(groups: own, root: root) == 419_430_400)
        #expect(SystemMemory.cgroupLimit(groups: "0::/system.slice/other.service\n", root: root) == 8_000_000_000)
        #expect(SystemMemory.cgroupLimit(groups: "0::/\n", root: root) == nil)  // a container's own root, no limit
        #expect(SystemMemory.cgroupLimit(groups: "", root: root) == nil)
    }

    @Test("cgroup v1: the memory controller's line; the root's limit still counts; unreadable lines are skipped")
    func legacy() throws {
        let root = try hierarchy([
            "memory/memory.limit_in_bytes": "9223372036854771712\n",
            "memory/slurm/uid_0/job_7/memory.limit_in_bytes": "2147483648\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let groups = "12:pids:/slurm/uid_0/job_7\n4:memory:/slurm/uid_0/job_7\n0::/\nnonsense\n3:cpu,cpuacct:/x\n"
        #expect(SystemMemory.cgroupLimit(groups: groups, root: root) == 2_147_483_648)
        #expect(SystemMemory.cgroupLimit(groups: "4:memory:/elsewhere\n", root: root) == 9_223_372_036_854_771_712)
    }
}
