import Foundation
import Testing

@testable import TesseraWire
@testable import TestSupport

/// Audit 43 F4: the coordinator joined any registered worker's pieces up to `--max-worker-message-mib`
/// (256 MiB) each, so four fake workers, each part-way through a 256 MiB message, held 838 MB. It now keeps
/// only a result of a task the worker holds, of that task's shape (or another message of at most 1 MiB);
/// the pieces of anything else pass through and the message is dropped, failed or refused at its end.
@Suite("Bytes a worker was not asked for", .serialized)
struct UnaskedBytesTests {
    /// The pieces `WireOutbox` would cut `frames` into.
    /// The pieces of `frames`, as messages.
    static func pieces(_ frames: [[UInt8]]) -> [WireMessage] { WireSamples.pieces(frames).map { .piece($0) } }

    static func sendAll(_ socket: borrowing ZMQSocket, _ messages: [WireMessage]) throws {
        for m in messages { try socket.send(m) }
    }

    static func result(job: UInt64, task: UInt64, attempt: UInt32, side: UInt32, classes: UInt32) -> [[UInt8]] {
        WireMessage.result(
            Wire.TaskResult(
                jobID: job, taskID: task, attempt: attempt, classes: classes, height: side, width: side,
                values: [Float](repeating: 0.25, count: Int(classes * side * side)))
        ).encode()
    }

    @Test(
        "Results nobody asked for cross without being held; a wrong-shape one fails its task; a large non-result is refused"
    )
    func unaskedResults() throws {
        let group = try ProcessGroup("unasked-bytes")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator()
        let pid = try #require(group.coordinatorPID)
        let context = try ZMQContext()
        func fake(_ name: String) throws -> ZMQSocket {
            try DistributedTests.registeredWorker(context, workers, hello: DistributedTests.fakeHello(name))
        }
        let f0 = try fake("f0"), f1 = try fake("f1"), f2 = try fake("f2"), f3 = try fake("f3")
        usleep(300_000)
        let before = try #require(peakResidentBytes(of: pid))
        // 1. Four 64 MiB results for a job that does not exist, their pieces interleaved: all four part-way at once.
        let unasked = Self.pieces(Self.result(job: 999, task: 1, attempt: 1, side: 2048, classes: 4))
        for piece in unasked {
            try f0.send(piece)
            try f1.send(piece)
            try f2.send(piece)
            try f3.send(piece)
        }
        let deadline = Date().addingTimeInterval(30)
        while !group.log("coordinator").contains("unknown job") && Date() < deadline { usleep(50_000) }
        usleep(500_000)
        let growth = try #require(peakResidentBytes(of: pid)) - before
        let size = 64 << 20
        // Held, they were 4 × 64 MiB (and each decoded copy 64 MiB more); passed through, what libzmq queues.
        #expect(growth < 96 << 20, "coordinator peak RSS grew by \(growth >> 20) MiB for 4 × \(size >> 20) MiB unasked")
        print(
            "unasked results: 4 × \(size >> 20) MiB, coordinator peak RSS \(before >> 20) → \((before + growth) >> 20) MiB"
        )
        var log = group.log("coordinator")
        #expect(log.contains("rejected a result for an unknown job"), "\(log)")
        #expect(!log.contains("malformed"), "a result for an unknown job is no malformed message: \(log)")

        try f1.send(.heartbeat)
        // 2. A 2 MiB message that is not a result: no worker sends one. Refused, and the worker is let go.
        try Self.sendAll(
            f0, Self.pieces([WireMessage.heartbeat.encode()[0], [UInt8](repeating: 1, count: 2 << 20)]))
        let told = try DistributedTests.next(f0) {
            if case .disconnect(let r) = $0 { r.contains("say hello") } else { false }
        }
        #expect(told != nil, "the worker was not let go: \(group.log("coordinator"))")
        log = group.log("coordinator")
        #expect(log.contains("not a result"), "\(log)")

        // 3. A job; one fake holds its tasks and sends a 2 MiB result its task does not give: the attempt fails.
        try f1.send(.heartbeat)
        try f2.send(.goodbye([]))
        try f3.send(.goodbye([]))
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let p = try group.submitFixture(
            clients, image: image, out: group.directory + "/out", mode: .dense, log: "client")
        let task = try #require(try DistributedTests.next(f1) { if case .task = $0 { true } else { false } })
        guard case .task(let spec) = task else { return }
        try Self.sendAll(
            f1,
            Self.pieces(Self.result(job: spec.jobID, task: spec.taskID, attempt: spec.attempt, side: 420, classes: 3)))
        let failDeadline = Date().addingTimeInterval(20)
        while !group.log("coordinator").contains("rejected a result its task does not give") && Date() < failDeadline {
            usleep(50_000)
        }
        log = group.log("coordinator")
        #expect(log.contains("rejected a result its task does not give"), "\(log)")
        // The fake leaves (its tasks go back); a real worker finishes the job with the in-process map.
        try f1.send(.goodbye([]))
        try group.startWorker(workers, name: "real", threads: 2)
        try DistributedTests.expectFixtureMap(group, p, image: image)
    }
}
