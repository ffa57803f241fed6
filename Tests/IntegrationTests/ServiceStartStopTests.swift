import CLISupport
import Foundation
import Testing

@testable import TestSupport

/// What an operator meets starting and stopping `serve` and workers by hand (operator audit 38).
@Suite("serve and workers: start-up warnings, SIGHUP")
struct ServiceStartStopTests {
    /// F8: deploy/README §1 starts both with `&` in a terminal; closing it killed them (exit 129) without the
    /// clean stop SIGTERM gives (the store synced, a worker's tasks handed back).
    @Test("SIGHUP stops serve and a worker cleanly, as SIGTERM does")
    func hangUp() throws {
        if signalIsIgnored(SIGHUP) { return }  // started under nohup: they inherit SIGHUP ignored
        let group = try ProcessGroup("sighup")
        defer { group.stop() }
        let ready = group.directory + "/ready"
        let coordinator = try group.start(
            "tessera-coordinator",
            [
                "serve", "--worker-endpoint", "tcp://127.0.0.1:*", "--client-endpoint", "tcp://127.0.0.1:*",
                "--store", group.directory + "/store", "--ready-file", ready,
            ], log: "coordinator")
        let started = Date().addingTimeInterval(20)
        while (try? String(contentsOfFile: ready, encoding: .utf8))?.split(separator: "\n").count != 2
            && Date() < started
        {
            usleep(20_000)
        }
        let workers = try #require(
            (try? String(contentsOfFile: ready, encoding: .utf8))?.split(separator: "\n").first.map(String.init),
            "\(group.log("coordinator"))")
        let worker = try group.start(
            "tessera-worker", ["--coordinator", workers, "--threads", "1", "--name", "w"], log: "worker")
        let deadline = Date().addingTimeInterval(20)
        while !group.log("coordinator").contains("worker joined") && Date() < deadline { usleep(50_000) }
        kill(worker.processIdentifier, SIGHUP)
        #expect(group.wait(worker, timeout: 20) == 0, "\(group.log("worker"))")
        kill(coordinator.processIdentifier, SIGHUP)
        #expect(group.wait(coordinator, timeout: 20) == 0, "\(group.log("coordinator"))")
        #expect(group.log("coordinator").contains("coordinator stopped"), "\(group.log("coordinator"))")
    }

    /// F4: with roles, an empty users' folder is accepted (users may be added later) but was not mentioned.
    @Test("CURVE with roles and no user key: serve starts, with a warning naming the folder")
    func noUserKeys() throws {
        let group = try ProcessGroup("no-user-keys")
        defer { group.stop() }
        for name in ["coordinator", "worker"] {
            let (code, text) = try CurveClusterTests.keygen(group, name)
            #expect(code == 0, "\(text)")
        }
        let keys = group.directory + "/keys"
        let (users, workerKeys) = (group.directory + "/users", group.directory + "/workers")
        for folder in [users, workerKeys] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: keys + "/worker.pub", toPath: workerKeys + "/worker.pub")
        _ = try group.startCoordinator(extra: [
            "--curve", "--curve-secret-key", keys + "/coordinator.key", "--authorized-keys", users,
            "--worker-keys", workerKeys,
        ])
        let log = group.log("coordinator")
        #expect(log.contains("no user keys yet") && log.contains(users), "\(log)")
    }
}
