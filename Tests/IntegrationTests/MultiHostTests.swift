import Foundation
import Testing

@testable import TesseraCluster
@testable import TestSupport

/// Coordinator and workers as separate hosts: each in its own network namespace,
/// joined by virtual Ethernet links, with the shared folder bind-mounted into each
/// host's own mount namespace at one path (as an NFS mount would be). The workers
/// read the image and write the map through that mount; the coordinator reaches them
/// only over the links. Needs root and `ip` (iproute2): skipped, with the reason,
/// where namespaces cannot be made.
@Suite("Multi-host: coordinator and workers in separate network namespaces", .serialized)
struct MultiHostTests {
    static let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Whether this machine lets us create a namespace (root and iproute2), checked once.
    static let available: Bool = {
        guard getuid() == 0, let ip else { return false }
        let name = "tsr-probe-\(getpid())"
        guard (try? runCommand([ip, "netns", "add", name]))?.status == 0 else { return false }
        _ = try? runCommand([ip, "netns", "del", name])
        return (try? runCommand(["unshare", "--mount", "true"]))?.status == 0
    }()

    @Test(
        "Workers in their own namespaces write the map through a bind-mounted shared folder; it equals the in-process map",
        .enabled(if: available, "needs root, iproute2 and unshare to make network and mount namespaces"))
    func separateHosts() throws {
        let ip = try #require(Self.ip)
        let group = try ProcessGroup("multi-host")
        let tag = String(UInt32.random(in: 0...UInt32.max) % 100_000)
        let hosts = ["c", "w1", "w2"].map { "tsr-\($0)-\(tag)" }
        defer {
            group.stop()
            for h in hosts { _ = try? runCommand([ip, "netns", "del", h]) }
        }
        func sh(_ args: [String]) throws {
            let r = try runCommand([ip] + args)
            guard r.status == 0 else { throw ClusterError("ip \(args.joined(separator: " ")): \(r.output)") }
        }
        for h in hosts {
            try sh(["netns", "add", h])
            try sh(["-n", h, "link", "set", "lo", "up"])
        }
        // A point-to-point link from the coordinator's host to each worker's: 10.77.k.1 ↔ 10.77.k.2.
        for (k, worker) in hosts.dropFirst().enumerated() {
            let (a, b) = ("tc\(k)-\(tag)", "tw\(k)-\(tag)")
            try sh(["link", "add", a, "type", "veth", "peer", "name", b])
            try sh(["link", "set", a, "netns", hosts[0]])
            try sh(["link", "set", b, "netns", worker])
            try sh(["-n", hosts[0], "addr", "add", "10.77.\(k + 1).1/24", "dev", a])
            try sh(["-n", worker, "addr", "add", "10.77.\(k + 1).2/24", "dev", b])
            try sh(["-n", hosts[0], "link", "set", a, "up"])
            try sh(["-n", worker, "link", "set", b, "up"])
        }
        // The shared folder: real files in `backing`, seen by every host at `mount`
        // (empty outside the hosts' mount namespaces).
        let backing = group.directory + "/nfs-export"
        let mount = group.directory + "/mnt"
        for d in [backing, mount] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        }
        let image = mount + "/tissue.png"
        try ClusterFixture.writeImage(to: backing + "/tissue.png")
        let expected = try ClusterFixture.localNPY(
            image: backing + "/tissue.png", mode: .dense, scratch: group.directory)
        /// `binary args` on `host` with the shared folder mounted.
        func onHost(_ host: String, _ binary: String, _ args: [String], log: String) throws -> Process {
            let command = ([ProcessGroup.binary(binary)] + args).map { "'\($0)'" }.joined(separator: " ")
            return try group.start(
                ip,
                [
                    "netns", "exec", host, "unshare", "--mount", "sh", "-c",
                    "mount --bind '\(backing)' '\(mount)' && exec \(command)",
                ], log: log)
        }
        _ = try onHost(
            hosts[0], "tessera-coordinator",
            [
                "serve", "--worker-endpoint", "tcp://0.0.0.0:7701", "--client-endpoint", "tcp://127.0.0.1:7702",
                "--shared-root", mount, "--heartbeat-ms", "300",
            ], log: "coordinator")
        for (k, worker) in hosts.dropFirst().enumerated() {
            _ = try onHost(
                worker, "tessera-worker",
                [
                    "--coordinator", "tcp://10.77.\(k + 1).1:7701", "--threads", "1", "--name", "host-w\(k + 1)",
                    "--shared-root", mount,
                ], log: "w\(k + 1)")
        }
        // Both remote workers registered over their links before the job starts.
        let deadline = Date().addingTimeInterval(30)
        while group.log("coordinator").components(separatedBy: "worker joined").count < 3 && Date() < deadline {
            usleep(50_000)
        }
        let client = try onHost(
            hosts[0], "tessera-coordinator",
            ["submit", "--coordinator", "tcp://127.0.0.1:7702", "--reconnect-timeout", "30"] + ClusterFixture.modelFlags
                + [
                    "--mode", "dense", "--tile", "\(ClusterFixture.tile)", "--shared", "--wait", "--out",
                    mount + "/out",
                    image,
                ], log: "client")
        #expect(group.wait(client, timeout: 120) == 0, "\(group.log("client"))\n\(group.log("coordinator"))")
        let log = group.log("coordinator")
        let joined = log.split(separator: "\n").filter { $0.contains("worker joined") }
        #expect(
            joined.contains { $0.contains("worker=host-w1") } && joined.contains { $0.contains("worker=host-w2") },
            "both hosts joined over their links: \(log)")
        #expect(
            !FileManager.default.fileExists(atPath: mount + "/out"), "outside the hosts the mount point stays empty")
        let export = try group.start(
            "tessera-coordinator",
            ["export", backing + "/out/tissue.zarr", "--outputs", "npy", "--out", group.directory],
            log: "export")
        #expect(group.wait(export, timeout: 60) == 0, "\(group.log("export"))")
        #expect(
            ClusterFixture.bytes(group.directory + "/tissue.npy") == expected,
            "the map written by workers on other hosts differs from the in-process one")
    }
}
