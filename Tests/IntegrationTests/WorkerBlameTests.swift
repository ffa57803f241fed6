import Foundation
import Testing

@testable import TesseraCluster
@testable import TesseraWire
@testable import TestSupport

/// Failures the coordinator charged to tasks that did not cause them (concurrency audit 42).
@Suite("Blame: cancels and the coordinator's own stalls", .serialized)
struct WorkerBlameTests {
    /// `submit` without `--wait` of the fixture net on `image` in `tile`-pixel tiles; returns once queued.
    func submit(_ group: ProcessGroup, _ clients: String, _ image: String, tile: Int, log: String) throws {
        let p = try group.submitFixture(
            clients, image: image, out: group.directory + "/out-" + log, tile: tile, wait: false, log: log)
        #expect(group.wait(p, timeout: 30) == 0, "\(group.log(log))")
    }

    /// F4: a cancelled job's tasks stay on the worker's credit until it reports them (it computes them anyway):
    /// freed at once, the worker got tasks past its credit, refused one, and the next job was charged a failure.
    @Test("tasks of cancelled jobs keep their worker's slots until reported: a later job gets no refusal, no failure")
    func cancelKeepsSlots() throws {
        let group = try ProcessGroup("cancel-slots")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator()
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 50)
        _ = try group.start(
            "tessera-worker",
            ["--coordinator", workers, "--threads", "1", "--name", "w1", "--debug-task-delay-ms", "700"], log: "w1")
        let context = try ZMQContext()
        let client = try TestClient(context, clients)
        var id: UInt64 = 0
        for round in 1...3 {
            for side in ["a", "b"] {
                try submit(group, clients, image, tile: ClusterFixture.tile, log: "\(side)\(round)")
                id += 1
            }
            usleep(300_000)
            _ = try client.request(.cancel(jobID: id - 1))
            _ = try client.request(.cancel(jobID: id))
        }
        try submit(group, clients, image, tile: ClusterFixture.tile, log: "victim")
        let victim = id + 1
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline, (try? client.status(victim).state) != .done { usleep(200_000) }
        #expect(try client.status(victim).state == .done, "\(group.log("coordinator"))")
        #expect(!group.log("w1").contains("past this worker's credit"), "\(group.log("w1"))")
        #expect(!group.log("coordinator").contains("task failed on a worker"), "\(group.log("coordinator"))")
    }

    /// A cancelled job's tasks queued on a worker were computed to the end (no message stopped them), and a job
    /// submitted after the cancel waited behind them. The worker now drops them when the coordinator revokes the job.
    @Test("a cancelled job's tasks not started are dropped by its worker at once: the next job does not wait for them")
    func cancelRevokesQueuedTasks() throws {
        let group = try ProcessGroup("revoke")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: ["--credit", "4"])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 50)
        _ = try group.start(
            "tessera-worker",
            ["--coordinator", workers, "--threads", "1", "--name", "w1", "--debug-task-delay-ms", "2500"], log: "w1")
        usleep(500_000)
        try submit(group, clients, image, tile: ClusterFixture.tile, log: "a")  // 9 tasks: 4 go to w1
        usleep(1_000_000)
        let context = try ZMQContext()
        let client = try TestClient(context, clients)
        _ = try client.request(.cancel(jobID: 1))
        let start = Date()
        try submit(group, clients, image, tile: 64, log: "b")  // 1 task
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, (try? client.status(2).state) != .done { usleep(100_000) }
        let waited = Date().timeIntervalSince(start)
        #expect(try client.status(2).state == .done, "\(group.log("coordinator"))")
        #expect(group.log("w1").contains("tasks=3"), "\(group.log("w1"))")
        // The task being computed (2.5 s) and job 2's (2.5 s), not the 3 queued ones (7.5 s more).
        #expect(waited < 8.5, "job 2 took \(waited) s: \(group.log("w1"))")
        #expect(!group.log("coordinator").contains("task failed on a worker"), "\(group.log("coordinator"))")
    }

    /// F2: a coordinator stopped past the heartbeat deadline retired every worker as lost and charged the task;
    /// with --max-task-losses 1 one stall failed a healthy job.
    @Test(
        "a coordinator stopped for 4 s (past the 3 s deadline) charges no worker's loss to the task: the job ends done")
    func coordinatorStallIsNotTheTasks() throws {
        let group = try ProcessGroup("coordinator-stall")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: ["--max-task-losses", "1"])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 50)
        for name in ["w1", "w2"] {
            _ = try group.start(
                "tessera-worker",
                ["--coordinator", workers, "--threads", "1", "--name", name, "--debug-task-delay-ms", "6000"],
                log: name)
        }
        usleep(500_000)
        try submit(group, clients, image, tile: 64, log: "job")  // one task, computed over the stall
        usleep(1_000_000)
        let pid = try #require(group.coordinatorPID)
        kill(pid, SIGSTOP)
        usleep(4_000_000)
        kill(pid, SIGCONT)
        let context = try ZMQContext()
        let client = try TestClient(context, clients)
        let deadline = Date().addingTimeInterval(60)
        var state = Wire.JobState.queued
        while Date() < deadline {
            state = (try? client.status(1).state) ?? state
            if state == .done || state == .failed { break }
            usleep(200_000)
        }
        let log = group.log("coordinator")
        #expect(state == .done, "\(log)")
        // Retired after the stall, not counted; or, when a worker's new session came first, replaced by it.
        #expect(
            log.contains("just after this coordinator's stall: not counted")
                || log.contains("its new session replaces this one"), "\(log)")
    }
}
