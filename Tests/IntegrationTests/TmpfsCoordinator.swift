import Foundation
import Testing

@testable import TesseraCluster
@testable import TestSupport

/// A coordinator whose store is on a small tmpfs in a private mount namespace (held by a `sleep` across
/// coordinator restarts), and the client commands the disk-full tests run against it. Needs root, `unshare` and
/// `nsenter` (`DiskFullTests.available`).
final class TmpfsCoordinator {
    let group: ProcessGroup
    let mountPoint: String
    private let inNamespace: [String]
    private(set) var coordinator: Process?

    /// Mounts a tmpfs of `size` (`mount`'s words: "8m") at `GROUP/tmpfs`.
    init(_ group: ProcessGroup, size: String) throws {
        self.group = group
        mountPoint = group.directory + "/tmpfs"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mounted = group.directory + "/mounted"
        let holder = try group.start(
            DiskFullTests.unshare,
            [
                "--mount", "--propagation", "private", "sh", "-c",
                "mount -t tmpfs -o size=\(size),mode=0700 tessera-full \"$0\" && touch \"$1\" && exec sleep 900",
                mountPoint, mounted,
            ], log: "holder")
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: mounted) && Date() < deadline { usleep(50_000) }
        try #require(FileManager.default.fileExists(atPath: mounted), "tmpfs: \(group.log("holder"))")
        inNamespace = [DiskFullTests.nsenter, "-t", "\(holder.processIdentifier)", "-m", "--"]
    }

    /// Runs `script` with `sh -c` in the namespace, `$0` the mount point.
    func shell(_ script: String) throws -> (Int32, String) {
        try runCommand(inNamespace + ["sh", "-c", script, mountPoint])
    }

    /// Bytes free on the tmpfs.
    func free() throws -> Int {
        let (status, text) = try shell("df -B1 --output=avail \"$0\" | tail -1")
        try #require(status == 0, "\(text)")
        return try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), "\(text)")
    }

    /// Starts `serve` with its store on the tmpfs (logged as `name`); returns its endpoints.
    func startCoordinator(_ name: String, _ arguments: [String] = []) throws -> (workers: String, clients: String) {
        let ready = group.directory + "/ready-\(name)"
        coordinator = try group.start(
            DiskFullTests.nsenter,
            Array(inNamespace.dropFirst()) + [
                ProcessGroup.binary("tessera-coordinator"), "serve", "--worker-endpoint", "tcp://127.0.0.1:*",
                "--client-endpoint", "tcp://127.0.0.1:*", "--store", mountPoint + "/store", "--ready-file", ready,
            ] + arguments, log: name)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let lines = ((try? String(contentsOfFile: ready, encoding: .utf8)) ?? "").split(separator: "\n")
            if lines.count == 2 { return (String(lines[0]), String(lines[1])) }
            usleep(20_000)
        }
        throw ClusterError("the coordinator did not start: \(group.log(name))")
    }

    /// Kills the coordinator (SIGKILL) and waits for it.
    func killCoordinator() {
        if let coordinator { kill(coordinator.processIdentifier, SIGKILL) }
        coordinator?.waitUntilExit()
    }

    /// A client command against `clients`: its exit status (nil: still running after 60 s) and output.
    func client(_ args: [String], _ clients: String, log: String) throws -> (Int32?, String) {
        let p = try group.start("tessera-coordinator", args + ["--coordinator", clients], log: log)
        return (group.wait(p, timeout: 60), group.log(log))
    }

    /// `status ID` once it says `state` (done), or after `timeout` s.
    func statusOnce(_ id: Int, _ clients: String, says state: String = "done", timeout: Double = 60) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var text = ""
        while !text.contains("job \(id): \(state)") && Date() < deadline {
            text = try client(["status", "\(id)"], clients, log: "status").1
            usleep(200_000)
        }
        return text
    }

    /// The tasks of job `id` done, as `status` says.
    func tasksDone(_ id: Int, _ clients: String) throws -> Int? {
        let (_, text) = try client(["status", "\(id)"], clients, log: "status")
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("tasks:") }) else { return nil }
        let words = line.split(separator: " ")
        return words.firstIndex(of: "done").flatMap { Int(words[$0 - 1]) }
    }
}
