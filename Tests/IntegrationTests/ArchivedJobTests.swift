import Foundation
import Testing

@testable import TesseraCluster
@testable import TesseraEngine
@testable import TesseraWire
@testable import TestSupport

/// An ended job becomes an `ArchivedJob` a rate window after its end (soak audit 31 F2: every
/// ended job stayed a full `CoordinatorJob`, 10–40 KB, until a restart). Its status, counts
/// and rates, and its outputs stay as they were; a late result of it is dropped without a
/// rejection (nor a warning).
@Suite("Ended jobs archived: status and fetch unchanged, late results dropped quietly")
struct ArchivedJobTests {
    @Test(
        "A cancelled job's late result after archiving is no rejection; a done job's status and outputs before and after"
    )
    func archivedJobs() throws {
        let group = try ProcessGroup("archived-jobs")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(
            extra: ["--rate-window-ms", "3000", "--log-level", "debug"])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let classes = try EngineSettings(allowPadding: true).plan(
            prototxtPath: ClusterFixture.prototxt, weightsPath: ClusterFixture.weights
        ).plan.classes
        let context = try ZMQContext()
        let client = try TestClient(context, clients)
        let fake = try DistributedTests.registeredWorker(context, workers, hello: DistributedTests.fakeHello("late"))
        func nextTask() throws -> Wire.TaskSpec? {
            guard case .task(let t)? = try DistributedTests.next(fake, { if case .task = $0 { true } else { false } })
            else { return nil }
            return t
        }
        /// The job's status (detailed with a query); a missing reply records the coordinator's log.
        func status(_ job: UInt64?, _ query: Wire.StatusQuery? = nil) throws -> Wire.JobStatus {
            do {
                return try client.status(job, query: query)
            } catch {
                Issue.record("no reply to status \(job.map(String.init) ?? "") : \(group.log("coordinator"))")
                throw error
            }
        }
        func answer(_ t: Wire.TaskSpec) throws {
            let (h, w) = (t.outputRect.height, t.outputRect.width)
            try fake.send(
                .result(
                    Wire.TaskResult(
                        jobID: t.jobID, taskID: t.taskID, attempt: t.attempt, classes: UInt32(classes),
                        height: h, width: w, values: [Float](repeating: 0.25, count: classes * Int(h * w)))))
        }
        func archived(_ job: Int) -> Bool {
            group.log("coordinator").split(separator: "\n").contains {
                $0.contains("ended job archived") && $0.contains("job=\(job)")
            }
        }
        /// Waits for job `job`'s archiving, the fake answering heartbeats meanwhile.
        func awaitArchived(_ job: Int) throws {
            let deadline = Date().addingTimeInterval(20)
            while !archived(job) && Date() < deadline {
                if try fake.waitForMessage(timeoutMilliseconds: 50), let e = try fake.receiveWire(dontWait: true),
                    case .heartbeat? = try? e.message.get()
                {
                    try fake.send(.heartbeat)
                }
            }
        }

        // Job 1: the fake worker holds its first task, unanswered, and the job is cancelled.
        let first = try group.submitFixture(clients, image: image, out: group.directory + "/out1", log: "submit1")
        let held = try #require(try nextTask(), "no task came: \(group.log("coordinator"))")
        #expect(held.jobID == 1)
        let (code, text) = try StatusTests.cli(group, clients, ["cancel", "1"], log: "cancel")
        #expect(code == 0, "\(text)")
        #expect(group.wait(first) != 0)
        try awaitArchived(1)
        #expect(archived(1), "job 1 not archived: \(group.log("coordinator"))")
        #expect(try status(1).state == .cancelled)
        try answer(held)
        let second = try group.submitFixture(clients, image: image, out: group.directory + "/out2", log: "submit2")
        // Job 2's tasks are all answered.
        var done: Wire.JobSummary?
        var nextPoll = Date()
        let deadline = Date().addingTimeInterval(60)
        while done == nil && Date() < deadline {
            if try fake.waitForMessage(timeoutMilliseconds: 20), let e = try fake.receiveWire(dontWait: true),
                let m = try? e.message.get()
            {
                if case .heartbeat = m { try fake.send(.heartbeat) }
                if case .task(let t) = m {
                    #expect(t.jobID == 2)
                    try answer(t)
                }
            }
            // Not back to back: a client's replies queue two deep (`peerQueueMessages`), and under load a reply
            // still in flight when the next one is sent is dropped as unread.
            guard Date() >= nextPoll else { continue }
            nextPoll = Date().addingTimeInterval(0.05)
            let job = try status(2, Wire.StatusQuery()).details?.jobs.first
            if job?.state == .done { done = job }
        }
        let before = try #require(done, "job 2 did not end: \(group.log("coordinator"))")
        #expect(!archived(2), "archived within its rate window")
        #expect(group.wait(second) == 0, "\(group.log("submit2"))")
        let coordinatorLog = group.log("coordinator")
        #expect(!coordinatorLog.contains("rejected a result"), "\(coordinatorLog)")
        #expect(coordinatorLog.contains("result for an ended job dropped"), "\(coordinatorLog)")

        // Job 2 archived: the same summary (counts, rates, times), and the same outputs to fetch.
        try awaitArchived(2)
        #expect(archived(2), "job 2 not archived: \(group.log("coordinator"))")
        let after = try #require(try status(2, Wire.StatusQuery()).details?.jobs.first)
        #expect(after.state == .done && after.done == before.done && after.tasks == before.tasks, "\(after)")
        #expect(before.done == before.tasks && before.tasksPerSecond > 0 && before.pixelsPerSecond > 0, "\(before)")
        #expect(after.tasksPerSecond == before.tasksPerSecond && after.pixelsPerSecond == before.pixelsPerSecond)
        #expect(after.submitted == before.submitted && after.ended == before.ended && after.image == before.image)
        #expect(after.message == before.message && after.failed == before.failed)
        let plain = try status(2)
        #expect(plain.tasksDone == before.done && plain.outputFiles == ["tissue.npy"], "\(plain)")
        let (fetched, fetchText) = try StatusTests.cli(
            group, clients, ["fetch", "2", "--out", group.directory + "/again"], log: "fetch")
        #expect(fetched == 0, "\(fetchText)")
        let original = FileManager.default.contents(atPath: group.directory + "/out2/tissue.npy")
        #expect(
            original != nil && original == FileManager.default.contents(atPath: group.directory + "/again/tissue.npy"))
        let listed = try #require(try status(nil, Wire.StatusQuery(allEnded: true)).details)
        #expect(listed.jobs.map(\.id) == [1, 2] && listed.jobs.map(\.state) == [.cancelled, .done], "\(listed.jobs)")
    }
}
