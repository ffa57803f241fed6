import Foundation
import Testing

@testable import Coordinator
@testable import TesseraWire

/// Memory audit 50 F2: a submission is answered once the job is prepared (a `--tissue` view of a large
/// single-level TIFF takes minutes), and the client took the silence for a coordinator gone: it sent the request
/// again and gave up. With `slowReply`, while the request's connection is up, it waits for the answer instead.
@Suite("A client waits for a slow answer while the connection is up")
struct SlowReplyTests {
    /// A coordinator stand-in on TCP that answers its first request after `delay` s; returns how many copies of
    /// the request it received by then, and the reply the client got.
    func exchange(slowReply: String?, delay: Double) throws -> (copies: Int, reply: Result<WireMessage, Error>) {
        let context = try ZMQContext()
        let bound = BackgroundTask<String>.Box()
        let server = BackgroundTask.detach {
            var copies = 0
            do {
                let router = try ZMQSocket(context, type: .router)
                try router.applyTesseraDefaults()
                try router.bind("tcp://127.0.0.1:*")
                bound.set(try router.lastEndpoint)
                var first: (peer: RoutingID, at: Date)?
                let end = Date().addingTimeInterval(delay + 10)
                while Date() < end {
                    if let f = first, Date().timeIntervalSince(f.at) >= delay {
                        _ = try router.send(.submitted(jobID: 7), to: f.peer)
                        // Resent copies still on their way count too.
                        Foundation.Thread.sleep(forTimeInterval: 0.3)
                        while let envelope = try router.receiveWire(dontWait: true) {
                            if case .success(.cancel) = envelope.message { copies += 1 }
                        }
                        return copies
                    }
                    guard try router.waitForMessage(timeoutMilliseconds: 50),
                        let envelope = try router.receiveWire(dontWait: true), let peer = envelope.peer
                    else { continue }
                    if case .success(.cancel) = envelope.message {
                        copies += 1
                        if first == nil { first = (peer, Date()) }
                    }
                }
            } catch {
                bound.set("")
            }
            return copies
        }
        let endpoint = bound.get()
        try #require(!endpoint.isEmpty, "the stand-in coordinator could not bind")
        let client = try ClusterClient(endpoint: endpoint, context: context, reconnectTimeout: 5)
        let reply = Result {
            try client.request(
                .cancel(jobID: 3), timeout: delay + 5, attemptTimeout: 1, slowReply: slowReply)
        }
        return (server.wait(), reply)
    }

    @Test("an answer 4 s after a 1 s attempt: waited for, the request sent once")
    func waitsWhileConnected() throws {
        let (copies, reply) = try exchange(slowReply: "the coordinator prepares the job", delay: 4)
        guard case .success(.submitted(let id)) = reply else {
            Issue.record("no answer: \(reply)")
            return
        }
        #expect(id == 7)
        #expect(copies == 1, "the request was sent \(copies) times")
    }

    /// Without `slowReply` (an ordinary idempotent request) the client asks again after each attempt: what a
    /// submission did before.
    @Test func resendsWithoutSlowReply() throws {
        let (copies, _) = try exchange(slowReply: nil, delay: 4)
        #expect(copies >= 2, "the request was sent \(copies) times")
    }
}

/// A thread whose result can be waited for.
private final class BackgroundTask<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: T?

    static func detach(_ body: @escaping @Sendable () -> T) -> BackgroundTask<T> {
        let task = BackgroundTask<T>()
        Foundation.Thread.detachNewThread {
            task.result = body()
            task.done.signal()
        }
        return task
    }

    func wait() -> T {
        done.wait()
        return result!
    }

    /// A value handed from one thread to another once.
    final class Box: @unchecked Sendable {
        private let ready = DispatchSemaphore(value: 0)
        private var value: T?
        func set(_ value: T) {
            guard self.value == nil else { return }
            self.value = value
            ready.signal()
        }
        func get() -> T {
            ready.wait()
            return value!
        }
    }
}
