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
            try DistributedTests.answer(t, classes: classes, value: 0.25, on: fake)
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

    /// Verification audit 34 F1: a straggler's original whose job ended (its copy won) and was removed by retention
    /// came back as "a result for an unknown job": rejected, and the worker's slot stayed taken for good.
    @Test("A late result of a job retention removed frees its worker's slot, without a rejection")
    func lateResultAfterRemoval() throws {
        let group = try ProcessGroup("removed-late")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: [
            "--credit", "1", "--straggler-floor-ms", "300", "--straggler-factor", "1", "--keep-finished", "1s",
            "--retention-check-ms", "200", "--retention-grace-ms", "0", "--log-level", "debug",
        ])
        let image = group.directory + "/small.png"
        try ClusterFixture.writeImage(to: image, height: 40, width: 72)
        let classes = try EngineSettings(allowPadding: true).plan(
            prototxtPath: ClusterFixture.prototxt, weightsPath: ClusterFixture.weights
        ).plan.classes
        let context = try ZMQContext()
        let slow = try DistributedTests.registeredWorker(context, workers, hello: DistributedTests.fakeHello("slow"))
        let quick = try DistributedTests.registeredWorker(context, workers, hello: DistributedTests.fakeHello("quick"))
        func answer(_ t: Wire.TaskSpec, on fake: borrowing ZMQSocket) throws {
            try DistributedTests.answer(t, classes: classes, value: 0.5, on: fake)
        }
        /// One message of `fake`, if any: heartbeats answered; a task returned.
        func poll(_ fake: borrowing ZMQSocket) throws -> Wire.TaskSpec? {
            guard try fake.waitForMessage(timeoutMilliseconds: 10), let e = try fake.receiveWire(dontWait: true),
                let m = try? e.message.get()
            else { return nil }
            if case .heartbeat = m { try fake.send(.heartbeat) }
            if case .task(let t) = m { return t }
            return nil
        }
        /// Serves both fakes until `done` says so of slow's tasks (at most 30 s): quick answers every task, slow
        /// keeps its tasks.
        func serve(until done: ([Wire.TaskSpec]) -> Bool) throws -> [Wire.TaskSpec] {
            var kept: [Wire.TaskSpec] = []
            let deadline = Date().addingTimeInterval(30)
            while !done(kept) && Date() < deadline {
                if let t = try poll(slow) { kept.append(t) }
                if let t = try poll(quick) { try answer(t, on: quick) }
            }
            return kept
        }
        func submit(_ name: String) throws -> Process {
            try group.start(
                "tessera-coordinator",
                ["submit", "--coordinator", clients] + ClusterFixture.modelFlags
                    + [
                        "--mode", "dense", "--tile", "\(ClusterFixture.tile)", "--outputs", "npy", "--out",
                        group.directory + "/" + name, image,
                    ], log: name)
        }
        // Job 1: quick computes its tasks and the copy of the one slow keeps (a straggler); the job ends, and
        // retention removes it a second later (nobody fetches it: no download keeps it).
        _ = try submit("submit1")
        let kept = try serve { _ in group.log("coordinator").contains("job removed") }
        #expect(group.log("coordinator").contains("job removed"), "\(group.log("coordinator"))")
        #expect(group.log("coordinator").contains("straggler"), "no straggler copy: \(group.log("coordinator"))")
        let held = try #require(kept.first, "slow got no task: \(group.log("coordinator"))")
        try answer(held, on: slow)
        // The slot is free: job 2's tasks come to slow too (credit 1).
        _ = try submit("submit2")
        let later = try serve { $0.contains { $0.jobID == 2 } }
        #expect(later.contains { $0.jobID == 2 }, "the late result kept the slot: \(group.log("coordinator"))")
        let log = group.log("coordinator")
        #expect(!log.contains("rejected a result"), "\(log)")
    }

    /// Verification audit 34 F2: a worker of another release got no answer and retried its hello for good.
    @Test("A hello in another protocol version is answered with a disconnect naming this release")
    func otherReleaseAnswered() throws {
        let group = try ProcessGroup("other-release")
        defer { group.stop() }
        let (workers, _) = try group.startCoordinator()
        let socket = try ZMQSocket(try ZMQContext(), type: .dealer)
        try socket.applyTesseraDefaults()
        try socket.connect(workers)
        var hello = DistributedTests.fakeHello("old")
        hello[0][3] = WireMessage.version - 1
        try socket.send(hello)
        let reply = try DistributedTests.next(socket) { if case .disconnect = $0 { true } else { false } }
        guard case .disconnect(let reason)? = reply else {
            Issue.record("no disconnect: \(group.log("coordinator"))")
            return
        }
        #expect(reason.contains("this coordinator runs \(TesseraVersion.description)"), "\(reason)")
    }
}
