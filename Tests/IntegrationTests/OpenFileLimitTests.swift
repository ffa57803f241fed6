import Foundation
import Testing

@testable import TestSupport

/// Deploy audit 51 F1: under systemd's default soft limit of 1024 open files a coordinator with ~1000 unfinished
/// jobs refused jobs, and workers waited unanswered "trying again" with nothing in its log.
@Suite("The coordinator's open-file limit")
struct OpenFileLimitTests {
    @Test("serve raises its soft limit, warns of a hard limit below --max-jobs, and logs connections it cannot accept")
    func openFileLimit() throws {
        let group = try ProcessGroup("nofile")
        defer { group.stop() }
        let ready = group.directory + "/ready"
        // Soft limit 32, hard 48: raised to 48, which is below --max-jobs + 1024.
        try group.start(
            "/bin/sh",
            [
                "-c", "ulimit -Sn 32 && ulimit -Hn 48 && exec \"$0\" \"$@\"",
                ProcessGroup.binary("tessera-coordinator"), "serve", "--worker-endpoint", "tcp://127.0.0.1:*",
                "--client-endpoint", "tcp://127.0.0.1:*", "--store", group.directory + "/store", "--ready-file",
                ready,
            ], log: "coordinator")
        var endpoints: [String] = []
        let deadline = Date().addingTimeInterval(20)
        while endpoints.count != 2 && Date() < deadline {
            endpoints = ((try? String(contentsOfFile: ready, encoding: .utf8)) ?? "").split(separator: "\n").map(
                String.init)
            usleep(20_000)
        }
        try #require(endpoints.count == 2, "the coordinator did not start: \(group.log("coordinator"))")
        #expect(group.log("coordinator").contains("the open-file limit is 48, below --max-jobs (10000)"))
        // More idle connections than the limit leaves room for.
        let port = try #require(endpoints[0].split(separator: ":").last.flatMap { Int($0) })
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        for _ in 0..<40 { sockets.append(idleTCPConnection(to: port)) }
        let logged = Date().addingTimeInterval(10)
        while !group.log("coordinator").contains("cannot accept a connection") && Date() < logged { usleep(50_000) }
        let log = group.log("coordinator")
        #expect(log.contains("cannot accept a connection: Too many open files (the open-file limit"), "\(log)")
    }
}
