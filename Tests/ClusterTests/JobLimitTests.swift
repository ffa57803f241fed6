import Foundation
import Logging
import TesseraCluster
import Testing

@testable import CoordinatorService
@testable import TesseraCore
@testable import TesseraWire
@testable import TestSupport

/// `serve --max-jobs-per-key`: a key's unfinished jobs are capped; ended ones free a place.
@Suite("Unfinished jobs per key")
struct JobLimitTests {
    @Test("a third unfinished job is refused naming the limit and the jobs; a retry is not; a cancel frees a place")
    func limit() throws {
        try RawUploadTests().withService(configure: { $0.maxJobsPerKey = 2 }) { client, _ in try limit(client) }
    }

    /// Operator audit F11: no limit held the unfinished jobs of all keys together.
    @Test("serve --max-jobs: past the coordinator-wide limit a submission is refused; a cancel frees a place")
    func totalLimit() throws {
        try RawUploadTests().withService(configure: { $0.maxJobs = 2 }) { client, _ in
            try limit(client, expecting: "serve --max-jobs 2", naming: false)
        }
    }

    private func limit(
        _ client: borrowing TestClient, expecting: String = "--max-jobs-per-key 2", naming: Bool = true
    )
        throws
    {
        // Raw uploads waiting for their pixels count as unfinished, as do queued jobs.
        func announce(token: String) -> WireMessage {
            var spec = DamagedStoreTests.spec("cells.png", image: [])
            var options = (try? JobOptions(encoded: spec.outputOptions)) ?? JobOptions()
            options.rawImage = RawImageShape(height: 40, width: 50, channels: 3, bitDepth: 8)
            options.token = token
            spec.outputOptions = options.encoded
            return .submit(spec)
        }
        guard case .submitted(let first) = try client.request(announce(token: "a")),
            case .submitted(let second) = try client.request(announce(token: "b"))
        else {
            Issue.record("the first two jobs were not accepted")
            return
        }
        let refused = try client.request(announce(token: "c"))
        guard case .error(let message) = refused else {
            Issue.record("a third unfinished job was accepted: \(refused)")
            return
        }
        #expect(message.contains(expecting), "\(message)")
        if naming { #expect(message.contains("\(first), \(second)"), "\(message)") }
        // A retried submission (same token) gets its job, not a refusal.
        #expect(try client.request(announce(token: "b")) == .submitted(jobID: second))
        // Once one has ended, there is room again.
        _ = try client.request(.cancel(jobID: first))
        guard case .submitted = try client.request(announce(token: "c")) else {
            Issue.record("a job was refused after one of the key's jobs was cancelled")
            return
        }
    }
}

/// Who reaches a job under CURVE (CURVE audit 30): a key moved between the user and the admin folder lost its own
/// jobs (F04: owners were compared with the role's prefix), and jobs with no owner (submitted while CURVE was off,
/// or whose record lost it) were every key's (F03).
@Suite("Job ownership under CURVE")
struct JobOwnershipTests {
    @Test("the same key name owns its jobs in either role; ownerless jobs are admins' only; without CURVE, anyone's")
    func ownership() {
        let owns = { (requester: String?, owner: String?, curve: Bool) in
            CoordinatorLoop.submitted(by: requester, owner: owner, curve: curve)
        }
        #expect(
            owns("alice", "alice", true) && owns("admin/alice", "alice", true) && owns("alice", "admin/alice", true))
        #expect(!owns("bob", "alice", true) && !owns("admin/bob", "alice", true))
        #expect(!owns("bob", nil, true) && !owns("bob", "anonymous", true) && !owns("anonymous", "anonymous", true))
        #expect(owns("anonymous", "alice", false) && owns("anonymous", nil, false))
    }
}

extension JobOwnershipTests {
    /// Verification audit 32 N3: the same key as `authorized/alice.pub` and `admins/boss.pub` became admin "boss"
    /// silently; a name held by two keys of the two client folders shared their jobs (CURVE audit 30 F04 follow-up).
    @Test("a key with two names across the client folders, or a name of two keys, has no identity: refused")
    func identityAcrossFolders() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("identity-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (alice, carol, own) = (try ZMQCurve.keypair(), try ZMQCurve.keypair(), try ZMQCurve.keypair())
        func folder(_ name: String, _ keys: [(ZMQCurveKeyPair, String)]) throws -> String {
            let dir = root + "/" + name
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for (pair, file) in keys {
                try ("public-key = \"\(pair.publicKey.z85)\"\n").write(
                    toFile: "\(dir)/\(file).pub", atomically: true, encoding: .utf8)
            }
            return dir
        }
        let security = CurveServerSecurity(
            keyPair: own, authorizedKeysDirectory: try folder("users", [(alice, "alice"), (carol, "carol")]))
        let users = AuthorizedKeysPolicy(security, onSkip: { _ in })
        let admins = AuthorizedKeysPolicy(
            security, directory: try folder("admins", [(alice, "boss"), (own, "carol")]), includingOwnKey: false,
            onSkip: { _ in })
        let twoNames = CoordinatorService.identityConflict(alice.publicKey, clients: users, admins: admins)
        #expect(twoNames?.contains("the key is alice in --authorized-keys and boss in --admin-keys") == true)
        let sharedName = CoordinatorService.identityConflict(carol.publicKey, clients: users, admins: admins)
        #expect(
            sharedName?.contains("the name carol is held by another key") == true, "\(String(describing: sharedName))")
        let alone = AuthorizedKeysPolicy(
            security, directory: try folder("alone", [(alice, "alice")]), includingOwnKey: false, onSkip: { _ in })
        #expect(CoordinatorService.identityConflict(alice.publicKey, clients: users, admins: alone) == nil)
    }
}
