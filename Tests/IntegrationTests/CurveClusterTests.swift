import Foundation
import Testing

@testable import TesseraWire
@testable import TestSupport

/// `--curve` end to end with the real binaries: keys from `keygen`, a coordinator that
/// lets in only its authorized keys, listed and unlisted workers and clients.
@Suite("CURVE: keygen, authorized keys, refused strangers", .serialized)
struct CurveClusterTests {
    /// Runs `tessera-coordinator keygen NAME --out DIR`.
    static func keygen(_ group: ProcessGroup, _ name: String, _ extra: [String] = []) throws -> (Int32, String) {
        try DeployFiles.run(
            ProcessGroup.binary("tessera-coordinator"), ["keygen", name, "--out", group.directory + "/keys"] + extra)
    }

    @Test("keygen: NAME.key 0600 and NAME.pub readable, keys load, no overwrite without --force, bad names refused")
    func keygenFiles() throws {
        let group = try ProcessGroup("keygen")
        defer { group.stop() }
        let (status, output) = try Self.keygen(group, "alice")
        #expect(status == 0, "\(output)")
        let keys = group.directory + "/keys"
        var info = stat()
        #expect(stat(keys + "/alice.key", &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(stat(keys + "/alice.pub", &info) == 0 && info.st_mode & 0o777 == 0o644)
        #expect(stat(keys, &info) == 0 && info.st_mode & 0o777 == 0o700, "the created folder is private")
        let pair = try ZMQCurve.readKeyPair(path: keys + "/alice.key")
        #expect(try ZMQCurve.readPublicKey(path: keys + "/alice.pub") == pair.publicKey)
        #expect(output.contains(pair.publicKey.z85) && !output.contains(pair.secretKey.z85))

        let (again, message) = try Self.keygen(group, "alice")
        #expect(again != 0 && message.contains("alice.key already exists") && message.contains("--force"), "\(message)")
        #expect(try ZMQCurve.readKeyPair(path: keys + "/alice.key") == pair, "a refused keygen changed the key")

        let (forced, _) = try Self.keygen(group, "alice", ["--force"])
        #expect(forced == 0)
        #expect(try ZMQCurve.readKeyPair(path: keys + "/alice.key") != pair)
        #expect(stat(keys + "/alice.key", &info) == 0 && info.st_mode & 0o777 == 0o600)

        for bad in ["../x", ".hidden", "a b"] {
            let (code, text) = try Self.keygen(group, bad)
            #expect(code != 0 && text.contains("key name"), "\(bad): \(text)")
        }
        // An --out under a file says so in the system's words (paths audit 41 F9: "NSCocoaErrorDomain error 512").
        let (underFile, why) = try DeployFiles.run(
            ProcessGroup.binary("tessera-coordinator"), ["keygen", "carol", "--out", keys + "/alice.pub/sub"])
        #expect(underFile != 0 && why.contains("alice.pub/sub: Not a directory"), "\(why)")
        // Through the environment: TESSERA_KEYGEN_OUT.
        let p = try group.start(
            "tessera-coordinator", ["keygen", "bob"], log: "keygen-env",
            environment: ["TESSERA_KEYGEN_OUT": keys])
        #expect(group.wait(p, timeout: 20) == 0, "\(group.log("keygen-env"))")
        #expect(FileManager.default.fileExists(atPath: keys + "/bob.key"))
    }

    @Test("Bad key files: clear errors naming the flag and file, no hang")
    func badKeyFiles() throws {
        let group = try ProcessGroup("badkeys")
        defer { group.stop() }
        _ = try Self.keygen(group, "coordinator")
        let keys = group.directory + "/keys"
        try "garbage".write(toFile: keys + "/broken.key", atomically: true, encoding: .utf8)
        chmod(keys + "/broken.key", 0o600)
        let coordinator = ProcessGroup.binary("tessera-coordinator")
        var (code, text) = try DeployFiles.run(
            coordinator,
            [
                "serve", "--curve", "--curve-secret-key", keys + "/broken.key",
                "--authorized-keys", keys,
            ])
        #expect(code != 0 && text.contains("--curve-secret-key") && text.contains("broken.key"), "\(text)")
        (code, text) = try DeployFiles.run(
            coordinator,
            [
                "serve", "--curve", "--curve-secret-key", keys + "/coordinator.key",
                "--authorized-keys", keys + "/missing",
            ])
        #expect(code != 0 && text.contains("--authorized-keys") && text.contains("missing"), "\(text)")
        (code, text) = try DeployFiles.run(
            coordinator, ["serve", "--curve", "--curve-secret-key", keys + "/coordinator.key"])
        #expect(code != 0 && text.contains("--authorized-keys"), "\(text)")
        // One path for both (paths audit 41 F10: the secret key's option was blamed for the folder's error).
        (code, text) = try DeployFiles.run(
            coordinator,
            [
                "serve", "--curve", "--curve-secret-key", keys + "/coordinator.key",
                "--authorized-keys", keys + "/./coordinator.key",
            ])
        #expect(code == 64 && text.contains("--curve-secret-key and --authorized-keys both name"), "\(text)")
        chmod(keys + "/coordinator.key", 0o644)
        (code, text) = try DeployFiles.run(
            coordinator,
            [
                "status", "--curve", "--curve-secret-key", keys + "/coordinator.key",
                "--curve-server-key", keys + "/coordinator.pub",
            ])
        #expect(code != 0 && text.contains("chmod 600"), "\(text)")
        (code, text) = try DeployFiles.run(
            ProcessGroup.binary("tessera-worker"), ["--coordinator", "tcp://127.0.0.1:1", "--curve"])
        #expect(code != 0 && text.contains("--curve-secret-key"), "\(text)")
        (code, text) = try DeployFiles.run(coordinator, ["status"], environment: ["TESSERA_CLIENT_CURVE": "maybe"])
        #expect(code != 0 && text.contains("TESSERA_CLIENT_CURVE=maybe"), "\(text)")
    }

    @Test(
        "With --curve: an unlisted worker gets no task and is logged, unlisted and plain clients are refused fast, listed ones finish a job"
    )
    func authorizedKeysOnly() throws {
        let group = try ProcessGroup("curve")
        defer { group.stop() }
        for name in ["coordinator", "worker", "alice", "mallory-worker", "mallory"] {
            let (code, text) = try Self.keygen(group, name)
            try #require(code == 0, "\(text)")
        }
        let keys = group.directory + "/keys"
        let authorized = group.directory + "/authorized"
        try FileManager.default.createDirectory(atPath: authorized, withIntermediateDirectories: true)
        for name in ["worker", "alice"] {
            try FileManager.default.copyItem(atPath: "\(keys)/\(name).pub", toPath: "\(authorized)/\(name).pub")
        }
        // The coordinator from flags, the workers and clients partly from the environment.
        let (workers, clients) = try group.startCoordinator(extra: [
            "--curve", "--curve-secret-key", keys + "/coordinator.key", "--authorized-keys", authorized,
        ])
        func clientFlags(_ name: String) -> [String] {
            [
                "--coordinator", clients, "--curve", "--curve-secret-key", "\(keys)/\(name).key",
                "--curve-server-key", keys + "/coordinator.pub",
            ]
        }
        try group.start(
            "tessera-worker", ["--threads", "1", "--name", "intruder"], log: "intruder",
            environment: [
                "TESSERA_WORKER_COORDINATOR": workers, "TESSERA_WORKER_CURVE": "true",
                "TESSERA_WORKER_CURVE_SECRET_KEY": keys + "/mallory-worker.key",
                "TESSERA_WORKER_CURVE_SERVER_KEY": keys + "/coordinator.pub",
            ])

        // An unlisted client cannot submit: refused with a clear message, quickly.
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 70)
        var start = Date()
        var p = try group.start(
            "tessera-coordinator",
            ["submit"] + clientFlags("mallory") + ClusterFixture.modelFlags
                + ["--out", group.directory + "/mallory-out", image], log: "mallory")
        #expect(group.wait(p, timeout: 15) == 1, "\(group.log("mallory"))")
        #expect(Date().timeIntervalSince(start) < 12)
        #expect(group.log("mallory").contains("authorized-keys"), "\(group.log("mallory"))")
        #expect(!group.log("mallory").contains("job 1"), "an unlisted client submitted a job")
        // A plain client against a CURVE coordinator.
        start = Date()
        p = try group.start("tessera-coordinator", ["status", "--coordinator", clients], log: "plain")
        #expect(group.wait(p, timeout: 15) == 1, "\(group.log("plain"))")
        #expect(group.log("plain").contains("requires CURVE"), "\(group.log("plain"))")
        // A client that has the wrong server key.
        p = try group.start(
            "tessera-coordinator",
            [
                "status", "--coordinator", clients, "--curve",
                "--curve-secret-key", keys + "/alice.key",
                "--curve-server-key", keys + "/alice.pub",
            ], log: "wrong-server")
        #expect(group.wait(p, timeout: 15) == 1, "\(group.log("wrong-server"))")

        // The listed worker and client finish a job; the intruder never joins.
        try group.start(
            "tessera-worker", ["--threads", "1", "--name", "trusted", "--coordinator", workers], log: "trusted",
            environment: [
                "TESSERA_WORKER_CURVE": "1", "TESSERA_WORKER_CURVE_SECRET_KEY": keys + "/worker.key",
                "TESSERA_WORKER_CURVE_SERVER_KEY": keys + "/coordinator.pub",
            ])
        let out = group.directory + "/out"
        p = try group.start(
            "tessera-coordinator",
            ["submit"] + clientFlags("alice") + ClusterFixture.modelFlags
                + [
                    "--mode", "dense", "--tile", "\(ClusterFixture.tile)", "--outputs", "npy", "--wait",
                    "--out", out, image,
                ], log: "alice")
        #expect(group.wait(p, timeout: 90) == 0, "\(group.log("alice"))\n\(group.log("coordinator"))")
        let local = try ClusterFixture.localNPY(image: image, mode: .dense, scratch: group.directory)
        #expect(ClusterFixture.bytes(out + "/tissue.npy") == local)

        let log = group.log("coordinator")
        #expect(log.contains("refused a connection"), "\(log)")
        #expect(log.contains("unlisted public key"), "\(log)")
        #expect(log.contains("worker=trusted") && !log.contains("worker=intruder"), "\(log)")
        #expect(group.log("intruder").contains("refused this key"), "\(group.log("intruder"))")
        // It tries again, saying it was refused, not that nothing answered (audit 44 D7).
        let retried = Date().addingTimeInterval(15)
        while !group.log("intruder").contains("refused by the coordinator: trying again") && Date() < retried {
            usleep(100_000)
        }
        #expect(group.log("intruder").contains("refused by the coordinator: trying again"), "\(group.log("intruder"))")
        #expect(!group.log("intruder").contains("no answer from the coordinator"), "\(group.log("intruder"))")

        // The coordinator's own key is a valid client key (health checks in containers).
        p = try group.start(
            "tessera-coordinator",
            [
                "status", "--coordinator", clients, "--curve",
                "--curve-secret-key", keys + "/coordinator.key",
                "--curve-server-key", keys + "/coordinator.key",
            ], log: "self")
        #expect(group.wait(p, timeout: 15) == 0, "\(group.log("self"))")
        #expect(group.log("self").contains("workers: 1"), "\(group.log("self"))")
    }

    @Test(
        "Roles: a client key cannot join as a worker; key B cannot see, cancel or fetch key A's job; an admin key can; refusals and admin uses name the keys"
    )
    func roles() throws {
        let group = try ProcessGroup("curve-roles")
        defer { group.stop() }
        for name in ["coordinator", "gpu-1", "alice", "bob", "root"] {
            let (code, text) = try Self.keygen(group, name)
            try #require(code == 0, "\(text)")
        }
        let keys = group.directory + "/keys"
        let clientKeys = group.directory + "/clients", workerKeys = group.directory + "/workers"
        let adminKeys = group.directory + "/admins"
        for (dir, names) in [(clientKeys, ["alice", "bob"]), (workerKeys, ["gpu-1"]), (adminKeys, ["root"])] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for n in names { try FileManager.default.copyItem(atPath: "\(keys)/\(n).pub", toPath: "\(dir)/\(n).pub") }
        }
        let port = try freeLoopbackPort()
        let shared = group.directory + "/shared"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        let (workers, clients) = try group.startCoordinator(extra: [
            "--curve", "--curve-secret-key", keys + "/coordinator.key", "--authorized-keys", clientKeys,
            "--worker-keys", workerKeys, "--admin-keys", adminKeys, "--metrics-address", "127.0.0.1:\(port)",
            "--shared-root", shared,
        ])
        func worker(_ key: String) throws {
            try group.start(
                "tessera-worker",
                [
                    "--threads", "1", "--name", "as-\(key)", "--coordinator", workers, "--curve",
                    "--curve-secret-key", "\(keys)/\(key).key", "--curve-server-key", keys + "/coordinator.pub",
                    "--debug-task-delay-ms", "200", "--shared-root", shared,
                ], log: "worker-\(key)")
        }
        func client(_ key: String, _ args: [String], log: String) throws -> (Int32?, String) {
            let p = try group.start(
                "tessera-coordinator",
                args + [
                    "--coordinator", clients, "--curve", "--curve-secret-key", "\(keys)/\(key).key",
                    "--curve-server-key", keys + "/coordinator.pub",
                ], log: log)
            return (group.wait(p, timeout: 60), group.log(log))
        }
        try worker("alice")  // a client key trying to compute
        try worker("root")  // admin keys are for the client endpoint only
        try worker("coordinator")  // with --worker-keys, not even the coordinator's own key
        try worker("gpu-1")
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 70)
        let (code, text) = try client(
            "alice",
            ["submit"] + ClusterFixture.modelFlags
                + ["--mode", "dense", "--tile", "24", "--outputs", "npy", "--out", group.directory + "/out", image],
            log: "alice-submit")
        #expect(code == 0 && text.contains("job 1"), "\(text)")
        // Bob: status, cancel and fetch of alice's job are refused; the cluster's status is not.
        for (verb, args) in [
            ("status", ["status", "1"]), ("cancel", ["cancel", "1"]),
            ("fetch", ["fetch", "1", "--out", group.directory + "/bob"]),
        ] {
            let (c, t) = try client("bob", args, log: "bob-\(verb)")
            #expect(c != 0 && t.contains("submitted with another key"), "bob \(verb): \(t)")
        }
        // With --json, the refusal is JSON too (user audit: it was plain text), and the exit status 1.
        let (cj, tj) = try client("bob", ["status", "1", "--json"], log: "bob-status-json")
        let refusal = try JSONSerialization.jsonObject(with: Data(tj.utf8.filter { $0 != 10 })) as? [String: Any]
        #expect(cj == 1 && refusal?["state"] as? String == "refused" && refusal?["id"] as? Int == 1, "\(tj)")
        #expect((refusal?["message"] as? String)?.contains("submitted with another key") == true, "\(tj)")
        let (c1, t1) = try client("bob", ["status"], log: "bob-cluster")
        #expect(c1 == 0 && !t1.contains("job 1:"), "bob's job list shows alice's job: \(t1)")
        let (ca, ta) = try client("alice", ["status"], log: "alice-cluster")
        #expect(ca == 0 && ta.contains("job 1: ") && ta.contains("tissue"), "alice's job list: \(ta)")
        // Listing every job, or alice's by name, shows bob none of hers, nor counts them (operator audit F9).
        for (name, args) in [
            ("all", ["status", "--all", "--json"]), ("owner", ["status", "--owner", "alice", "--json"]),
        ] {
            let (c, t) = try client("bob", args, log: "bob-\(name)")
            let o = try StatusTests.object(t)
            #expect(c == 0 && (o["jobs"] as? [Any])?.isEmpty == true && o["jobs_matched"] as? Int == 0, "\(t)")
            #expect((o["job_counts"] as? [String: Int])?.values.allSatisfy { $0 == 0 } == true, "\(t)")
        }
        let (cl, tl) = try client("alice", ["status", "--all", "--json"], log: "alice-all")
        let mine = try #require(try StatusTests.object(tl)["jobs"] as? [[String: Any]], "\(tl)")
        #expect(cl == 0 && mine.map { $0["id"] as? Int } == [1] && mine.first?["owner"] as? String == "alice", "\(tl)")
        let (c2, t2) = try client("alice", ["status", "1"], log: "alice-status")
        #expect(c2 == 0 && t2.contains("job 1"), "\(t2)")
        // The admin key sees and fetches alice's job once done, and cancels her second one.
        var state = ""
        let done = Date().addingTimeInterval(60)
        while !state.contains("job 1: done") && Date() < done {
            let (c, t) = try client("root", ["status", "1"], log: "root-status")
            #expect(c == 0, "root status: \(t)")
            state = t
            usleep(200_000)
        }
        #expect(state.contains("job 1: done"), "\(state)")
        let (cr, tr) = try client("root", ["status"], log: "root-cluster")
        #expect(cr == 0 && tr.contains("job 1: done, tissue [alice]"), "the admin's job list: \(tr)")
        let (cra, tra) = try client("root", ["status", "--owner", "alice", "--json"], log: "root-owner")
        let hers = try #require(try StatusTests.object(tra)["jobs"] as? [[String: Any]], "\(tra)")
        #expect(cra == 0 && hers.map { $0["id"] as? Int } == [1] && hers.first?["state"] as? String == "done", "\(tra)")
        let (cd, td) = try client("alice", ["cancel", "1"], log: "alice-cancel-done")
        #expect(cd == 0 && td.contains("job 1 had ended (done): nothing to cancel"), "\(td)")
        let (c3, t3) = try client("root", ["fetch", "1", "--out", group.directory + "/root"], log: "root-fetch")
        #expect(c3 == 0 && FileManager.default.fileExists(atPath: group.directory + "/root/tissue.npy"), "\(t3)")
        let (c4, t4) = try client(
            "alice",
            ["submit"] + ClusterFixture.modelFlags
                + ["--mode", "dense", "--tile", "24", "--outputs", "npy", "--out", group.directory + "/out2", image],
            log: "alice-submit-2")
        #expect(c4 == 0 && t4.contains("job 2"), "\(t4)")
        let (c5, t5) = try client("root", ["cancel", "2"], log: "root-cancel")
        #expect(c5 == 0 && t5.contains("job 2: cancelled") && !t5.contains("nothing to cancel"), "root cancel: \(t5)")
        let (c5b, t5b) = try client("root", ["cancel", "2"], log: "root-cancel-again")
        #expect(c5b == 0 && t5b.contains("job 2 had ended (cancelled): nothing to cancel"), "cancel again: \(t5b)")
        // status JOB's exit status says how the job ended: 3 for cancelled (0 for done, above).
        let (c5c, t5c) = try client("alice", ["status", "2"], log: "alice-status-cancelled")
        #expect(
            c5c == 3 && t5c.contains("job 2: cancelled"), "status of a cancelled job: \(String(describing: c5c)) \(t5c)"
        )
        let (c6, t6) = try client("bob", ["status", "2"], log: "bob-status-2")
        #expect(c6 != 0 && t6.contains("submitted with another key"), "\(t6)")
        // A worker key is not a client.
        let (c7, t7) = try client("gpu-1", ["status"], log: "gpu-status")
        #expect(c7 != 0 && t7.contains("refused this key"), "\(t7)")
        // A finished map on the shared storage is its key's: bob may not replace alice's; an admin may.
        let slide = shared + "/tissue.png"
        try ClusterFixture.writeImage(to: slide, height: 60, width: 70)
        func sharedJob(_ key: String) throws -> (Int32?, String) {
            try client(
                key,
                ["submit"] + ClusterFixture.modelFlags
                    + ["--mode", "dense", "--tile", "24", "--shared", "--wait", "--out", shared + "/maps", slide],
                log: "\(key)-shared")
        }
        let (s1, l1) = try sharedJob("alice")
        #expect(s1 == 0, "\(l1)")
        let (s2, l2) = try sharedJob("bob")
        #expect(s2 != 0 && l2.contains("is the map of a job of key alice"), "\(l2)")
        let (s3, l3) = try sharedJob("root")
        #expect(s3 == 0, "an admin replaces it: \(l3)")
        // An admin's jobs are its key name's, as a user's are (identity ignores the role): listed as root's, and
        // found by --owner root (they showed as admin/root, which --owner root missed).
        let (c8, t8) = try client("alice", ["status", "--owner", "root", "--json"], log: "alice-owner-root")
        let aliceSees = try StatusTests.object(t8)["jobs"] as? [Any]
        #expect(c8 == 0 && aliceSees?.isEmpty == true, "not alice's: \(t8)")
        let (c9, t9) = try client("root", ["status", "--owner", "root", "--json", "--all"], log: "root-owner-root")
        let rootJobs = try #require(try StatusTests.object(t9)["jobs"] as? [[String: Any]], "\(t9)")
        #expect(c9 == 0 && rootJobs.count == 1 && rootJobs.first?["owner"] as? String == "root", "\(t9)")
        let deadline = Date().addingTimeInterval(15)
        while !(group.log("worker-alice").contains("refused this key")
            && group.log("worker-root").contains("refused this key"))
            && Date() < deadline
        {
            usleep(100_000)
        }
        #expect(group.log("worker-alice").contains("refused this key"), "\(group.log("worker-alice"))")
        #expect(group.log("worker-root").contains("refused this key"), "\(group.log("worker-root"))")
        let log = group.log("coordinator")
        #expect(log.contains("worker=as-gpu-1") && log.contains("key=gpu-1"), "the worker's key is logged: \(log)")
        #expect(!log.contains("worker=as-alice"), "a client key joined as a worker: \(log)")
        #expect(!log.contains("worker=as-root"), "an admin key joined as a worker: \(log)")
        #expect(!log.contains("worker=as-coordinator"), "the coordinator's key joined as a worker: \(log)")
        // Refusals name the key and its role, not only "unlisted public key <z85>".
        for reason in [
            "client key alice may not join as a worker", "admin key root may not join as a worker",
            "client key coordinator may not join as a worker", "worker key gpu-1 may not connect as a client",
        ] {
            #expect(log.contains(reason), "\(reason): \(log)")
        }
        let metrics = try PrometheusText(try httpGet(port: port, path: "/metrics").body)
        // Each refused request counts once (each counted twice before).
        // Bob's status, cancel and fetch of job 1, his status --json of it, and his status of job 2.
        #expect(metrics.value("tessera_refusals_total", ["reason": "not-owner"]) == 5)
        #expect((metrics.value("tessera_refusals_total", ["reason": "auth-role"]) ?? 0) >= 4)
        for verb in ["status", "fetch", "cancel"] {
            #expect(
                log.contains("admin key: \(verb) of another key's job") && log.contains("key=admin/root"),
                "the admin's \(verb) is logged with its key: \(log)")
        }
        #expect(
            log.contains("refused a request for another key's job") && log.contains("key=bob")
                && log.contains("owner=alice"), "\(log)")
    }

    @Test(
        "Role folders: a key in both --worker-keys and --admin-keys is refused in both roles, naming it (the coordinator still starts); an empty worker-keys folder is refused; empty user and admin folders are not"
    )
    func overlappingRoles() throws {
        let group = try ProcessGroup("curve-overlap")
        defer { group.stop() }
        for name in ["coordinator", "gpu-1", "alice"] {
            let (code, text) = try Self.keygen(group, name)
            try #require(code == 0, "\(text)")
        }
        let keys = group.directory + "/keys"
        let both = group.directory + "/both", clientKeys = group.directory + "/clients"
        for (dir, names) in [(both, ["gpu-1"]), (clientKeys, ["alice"])] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for n in names { try FileManager.default.copyItem(atPath: "\(keys)/\(n).pub", toPath: "\(dir)/\(n).pub") }
        }
        // It exited 1 at the start, so a key added to both while serving kept a crash-restarted coordinator down
        // (CURVE audit 30 F05). Now the key is refused in both roles, said at the start and at each handshake.
        let (workers, clients) = try group.startCoordinator(
            extra: [
                "--curve", "--curve-secret-key", keys + "/coordinator.key", "--authorized-keys", clientKeys,
                "--worker-keys", both, "--admin-keys", both,
            ], name: "both")
        #expect(group.log("both").contains("the key gpu-1 is in both --worker-keys and --admin-keys"))
        let worker = try group.start(
            "tessera-worker",
            [
                "--threads", "1", "--name", "gpu", "--coordinator", workers, "--curve", "--curve-secret-key",
                keys + "/gpu-1.key", "--curve-server-key", keys + "/coordinator.pub",
            ], log: "worker-gpu")
        defer { kill(worker.processIdentifier, SIGKILL) }
        let (client, text) = try runCommand([
            ProcessGroup.binary("tessera-coordinator"), "status", "--coordinator", clients, "--curve",
            "--curve-secret-key", keys + "/gpu-1.key", "--curve-server-key", keys + "/coordinator.pub",
        ])
        #expect(client != 0 && text.contains("refused this key"), "\(text)")
        let refused = Date().addingTimeInterval(20)
        while !group.log("worker-gpu").contains("refused this key") && Date() < refused { usleep(100_000) }
        #expect(group.log("worker-gpu").contains("refused this key"), "\(group.log("worker-gpu"))")
        #expect(!group.log("both").contains("worker=gpu"), "the key joined as a worker: \(group.log("both"))")
        let empty = group.directory + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let (s2, o2) = try runCommand([
            ProcessGroup.binary("tessera-coordinator"), "serve", "--worker-endpoint", "tcp://127.0.0.1:*",
            "--client-endpoint", "tcp://127.0.0.1:*", "--curve", "--curve-secret-key", keys + "/coordinator.key",
            "--authorized-keys", clientKeys, "--worker-keys", empty,
        ])
        #expect(s2 != 0 && o2.contains("--worker-keys") && o2.contains("no worker could join"), "\(o2)")
        // Workers listed, no users or admins yet: the coordinator starts (its own key is a client).
        _ = try group.startCoordinator(extra: [
            "--curve", "--curve-secret-key", keys + "/coordinator.key", "--authorized-keys", empty,
            "--worker-keys", both, "--admin-keys", empty,
        ])
    }

    /// CURVE audit 30 F06: a client without CURVE, or with another coordinator's public key, fails its handshake
    /// before the ZAP handler is asked: such peers were neither logged nor counted.
    @Test("Handshakes that fail before ZAP (no CURVE, the wrong server key) are logged and counted")
    func failedHandshakesCounted() throws {
        let group = try ProcessGroup("curve-handshakes")
        defer { group.stop() }
        for name in ["coordinator", "alice", "other"] {
            let (code, text) = try Self.keygen(group, name)
            try #require(code == 0, "\(text)")
        }
        let keys = group.directory + "/keys", authorized = group.directory + "/authorized"
        try FileManager.default.createDirectory(atPath: authorized, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: keys + "/alice.pub", toPath: authorized + "/alice.pub")
        let port = try freeLoopbackPort()
        let (_, clients) = try group.startCoordinator(extra: [
            "--curve", "--curve-secret-key", keys + "/coordinator.key", "--authorized-keys", authorized,
            "--metrics-address", "127.0.0.1:\(port)",
        ])
        let wrongKey = [
            "--curve", "--curve-secret-key", keys + "/alice.key", "--curve-server-key", keys + "/other.pub",
        ]
        // Which side closes first is a race: a connection libzmq sees closed before it reads the peer's greeting or
        // first command reports no detail (`handshake-dropped`, logged with CURVE on), as a client without CURVE
        // often is; the wrong key is reported once the server has read the client's first command, so that client
        // is asked again, up to 4 times, until it is.
        for (extra, line) in [
            ([String](), "security handshake"), (wrongKey, "another coordinator public key"),
        ] {
            for _ in 0..<4 where !group.log("coordinator").contains(line) {
                let (code, text) = try runCommand(
                    [ProcessGroup.binary("tessera-coordinator"), "status", "--coordinator", clients] + extra)
                #expect(code != 0, "\(text)")
                let deadline = Date().addingTimeInterval(3)
                while !group.log("coordinator").contains(line) && Date() < deadline { usleep(100_000) }
            }
        }
        let log = group.log("coordinator")
        #expect(
            (log.contains("mechanism mismatch: the peer does not use CURVE")
                || log.contains("a peer closed its connection during the security handshake"))
                && log.contains("endpoint=clients"), "\(log)")
        #expect(log.contains("cryptographic error: the peer uses another coordinator public key"), "\(log)")
        let metrics = try PrometheusText(try httpGet(port: port, path: "/metrics").body)
        #expect((metrics.value("tessera_refusals_total", ["reason": "handshake-key"]) ?? 0) >= 1)
        let noCurve = ["handshake-mechanism", "handshake-dropped"].compactMap {
            metrics.value("tessera_refusals_total", ["reason": $0])
        }
        #expect(noCurve.reduce(0, +) >= 1, "\(noCurve)")
    }

    /// Operator audit (HIGH): deleting a key's `.pub` only refused new handshakes. A worker already
    /// connected kept receiving tasks (and, in upload jobs, the images), a connected client finished its
    /// download. Now the key's next message is refused: the worker's tasks go to another worker and the
    /// job's map is whole, the client's requests get "revoked".
    /// Ops audit: a key replaced under the same name (a rotation after a leak) left the old key's open
    /// connection working; connections are now judged by their key. Here w2's key is rotated, alice's deleted.
    @Test(
        "Revoking a key (deleting or replacing its .pub) also stops its open connections: worker retired, client refused"
    )
    func revocationReachesOpenConnections() throws {
        let group = try ProcessGroup("curve-revoke")
        defer { group.stop() }
        for name in ["coordinator", "w1", "w2", "alice", "w2-rotated"] {
            let (code, text) = try Self.keygen(group, name)
            try #require(code == 0, "\(text)")
        }
        let keys = group.directory + "/keys"
        let clientKeys = group.directory + "/clients", workerKeys = group.directory + "/workers"
        for (dir, names) in [(clientKeys, ["alice"]), (workerKeys, ["w1", "w2"])] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for n in names {
                try FileManager.default.copyItem(atPath: "\(keys)/\(n).pub", toPath: "\(dir)/\(n).pub")
            }
        }
        let port = try freeLoopbackPort()
        let (workers, clients) = try group.startCoordinator(extra: [
            "--curve", "--curve-secret-key", keys + "/coordinator.key", "--authorized-keys", clientKeys,
            "--worker-keys", workerKeys, "--metrics-address", "127.0.0.1:\(port)",
        ])
        for key in ["w1", "w2"] {
            try group.start(
                "tessera-worker",
                [
                    "--threads", "1", "--name", key, "--coordinator", workers, "--curve",
                    "--curve-secret-key", "\(keys)/\(key).key", "--curve-server-key", keys + "/coordinator.pub",
                    "--debug-task-delay-ms", "300",
                ], log: "worker-\(key)")
        }
        let client = try TestClient(
            try ZMQContext(), clients, curve: (keys + "/alice.key", keys + "/coordinator.pub"))
        let up = Date().addingTimeInterval(30)
        while (try? client.status(nil).workers) != 2 && Date() < up { usleep(100_000) }
        try #require(try client.status(nil).workers == 2)
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 96, width: 96)
        let submit = try group.start(
            "tessera-coordinator",
            [
                "submit", "--coordinator", clients, "--curve", "--curve-secret-key", keys + "/alice.key",
                "--curve-server-key", keys + "/coordinator.pub",
            ] + ClusterFixture.modelFlags
                + [
                    "--mode", "dense", "--tile", "\(ClusterFixture.tile)", "--outputs", "npy", "--wait", "--out",
                    group.directory + "/out", image,
                ],
            log: "submit")
        // Once both workers compute, w2's key is replaced by a new one under the same name.
        let busy = Date().addingTimeInterval(30)
        while (try? client.status(1).tasksDone) ?? 0 < 2 && Date() < busy { usleep(50_000) }
        let rotated = try String(contentsOfFile: keys + "/w2-rotated.pub", encoding: .utf8)
        try rotated.write(toFile: workerKeys + "/w2.pub.tmp", atomically: false, encoding: .utf8)
        #expect(rename(workerKeys + "/w2.pub.tmp", workerKeys + "/w2.pub") == 0)
        #expect(group.wait(submit, timeout: 120) == 0, "\(group.log("submit"))\n\(group.log("coordinator"))")
        let log = group.log("coordinator")
        #expect(log.contains("refused a worker whose key was revoked") && log.contains("key=w2"), "\(log)")
        #expect(log.contains("its key w2 was revoked"), "\(log)")
        // The map is whole: the same as one without the revocation.
        let reference = try ClusterFixture.localNPY(image: image, mode: .dense, scratch: group.directory)
        #expect(ClusterFixture.bytes(group.directory + "/out/tissue.npy") == reference)
        // The client connection opened before alice's key goes is refused at its next request.
        try FileManager.default.removeItem(atPath: clientKeys + "/alice.pub")
        usleep(2_500_000)  // the folders are re-read every 2 s
        guard case .error(let message) = try client.request(.statusRequest(jobID: 1)) else {
            Issue.record("a revoked key's open connection still gets answers")
            return
        }
        #expect(message.contains("alice is no longer authorized"), "\(message)")
        let metrics = try PrometheusText(try httpGet(port: port, path: "/metrics").body)
        #expect((metrics.value("tessera_refusals_total", ["reason": "revoked-key"]) ?? 0) >= 2)
    }
}
