import Foundation
import Testing

@testable import TesseraCluster
@testable import TesseraWire
@testable import TestSupport

/// Every request of a client that reads its replies is answered, however fast it asks. libzmq counts a ROUTER
/// peer's queue as full until the socket processes its I/O thread's word that the messages were taken, which a send
/// does at most about once a millisecond: with the client queue of 2 replies, a client asking back to back lost a
/// reply within its first few hundred requests (the coordinator logged "reply dropped"; the client waited out its
/// timeout). Seen as a flaky "no reply" in `RetentionTests`.
@Suite("Back-to-back client requests", .serialized)
struct BackToBackReplyTests {
    @Test("status requests sent back to back for 15 s, while jobs run, are all answered; no reply is dropped")
    func everyRequestAnswered() throws {
        let group = try ProcessGroup("back-to-back")
        defer { group.stop() }
        // Ended jobs are removed a second after their end (more work for the loop between requests).
        let (workers, clients) = try group.startCoordinator(extra: [
            "--keep-finished", "1s", "--retention-check-ms", "200", "--retention-grace-ms", "0",
        ])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 50)
        try group.startWorker(workers, name: "w1")
        let submit = try group.submitFixture(clients, image: image, out: group.directory + "/out", log: "submit")
        #expect(group.wait(submit, timeout: 60) == 0, "\(group.log("submit"))")

        // Jobs all along, so that the coordinator's loop also serves the worker between client requests (with an
        // idle worker endpoint no reply was lost).
        let stop = Locked(false)
        let submitter = Thread {
            var k = 0
            while !stop.withLock({ $0 }) {
                k += 1
                let out = group.directory + "/more-\(k)"
                if let p = try? group.submitFixture(clients, image: image, out: out, log: "more-\(k)") {
                    _ = group.wait(p, timeout: 60)
                }
            }
        }
        submitter.start()
        defer { stop.withLock { $0 = true } }
        let context = try ZMQContext()
        let client = try TestClient(context, clients)
        var asked = 0
        let begin = Date()
        while Date().timeIntervalSince(begin) < 15 {
            do {
                // Any answer will do (ended jobs are soon removed: status then says so).
                _ = try client.status(UInt64(1 + asked % 7))
            } catch {
                Issue.record("request \(asked + 1): \(error)")
                break
            }
            asked += 1
        }
        #expect(asked > 1000, "only \(asked) requests in 15 s")
        let log = group.log("coordinator")
        #expect(!log.contains("reply dropped"), "\(log)")
    }
}
