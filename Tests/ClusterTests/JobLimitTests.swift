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
        #expect(owns("alice", "alice", true) && owns("admin/alice", "alice", true) && owns("alice", "admin/alice", true))
        #expect(!owns("bob", "alice", true) && !owns("admin/bob", "alice", true))
        #expect(!owns("bob", nil, true) && !owns("bob", "anonymous", true) && !owns("anonymous", "anonymous", true))
        #expect(owns("anonymous", "alice", false) && owns("anonymous", nil, false))
    }
}
