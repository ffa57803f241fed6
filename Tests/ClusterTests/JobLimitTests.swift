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
