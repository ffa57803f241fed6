import Foundation
import TesseraCore
import Testing

@testable import Coordinator
@testable import TesseraCluster
@testable import TesseraEngine
@testable import TesseraWire
@testable import TestSupport

/// `status` as an operator reads it (operator audit F9): a job whose workers are gone
/// says it waits for them and shows a rate of 0; `--json` is one object whose fields
/// the README documents; `--state` chooses the jobs listed; `submit --wait` says how a
/// job ended; a coordinator of an earlier build still answers the plain status.
@Suite("status: waiting for workers, rates, --json, --state, --wait's lines, an earlier coordinator")
struct StatusTests {
    /// Runs `tessera-coordinator ARGS --coordinator CLIENTS`; its exit status and output.
    static func cli(_ group: ProcessGroup, _ clients: String, _ args: [String], log: String) throws -> (Int32?, String)
    {
        let p = try group.start("tessera-coordinator", args + ["--coordinator", clients], log: log)
        return (group.wait(p, timeout: 60), group.log(log))
    }

    /// The JSON object on the one line of `text` that starts with "{".
    static func object(_ text: String) throws -> [String: Any] {
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("{") }, "no JSON line in \(text)")
        return try #require(
            try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not an object: \(line)")
    }

    @Test("The only worker vanishes: the job and the cluster wait for workers at 0 tasks/s; text and --json agree")
    func workerVanishes() throws {
        let group = try ProcessGroup("status-vanished")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(
            extra: ["--rate-window-ms", "1500", "--heartbeat-ms", "300", "--heartbeat-liveness", "3"])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image)
        let context = try ZMQContext()
        let waiter = try group.submitFixture(clients, image: image, out: group.directory + "/out", log: "submit")
        let classes = try EngineSettings(allowPadding: true).plan(
            prototxtPath: ClusterFixture.prototxt, weightsPath: ClusterFixture.weights
        ).plan.classes
        let client = try TestClient(context, clients)
        func job() throws -> Wire.JobSummary? {
            guard case .status(let s) = try client.request(.statusRequest(jobID: 1, query: Wire.StatusQuery())) else {
                return nil
            }
            return s.details?.jobs.first
        }
        var running: Wire.JobSummary?
        do {
            let fake = try DistributedTests.registeredWorker(
                context, workers, hello: DistributedTests.fakeHello("doomed"))
            // It computes three tiles (zeros of the right shape), then vanishes without a word.
            for _ in 0..<3 {
                guard
                    case .task(let t)? = try DistributedTests.next(fake, { if case .task = $0 { true } else { false } })
                else {
                    Issue.record("no task came: \(group.log("coordinator"))")
                    return
                }
                try DistributedTests.answer(t, classes: classes, on: fake)
            }
            let counted = Date().addingTimeInterval(10)
            repeat {
                usleep(20_000)
                running = try job()
            } while (running?.done ?? 0) < 3 && Date() < counted
        }  // the fake's socket is closed here: silent, as a kill -9 leaves it
        let before = try #require(running)
        #expect(before.done == 3 && before.tasksPerSecond > 0 && !before.waitingForWorkers, "\(before)")

        // The worker is declared lost, and the rate falls to 0 once the window has no completion.
        var after = before
        let aged = Date().addingTimeInterval(15)
        while (after.tasksPerSecond > 0 || !after.waitingForWorkers) && Date() < aged {
            usleep(100_000)
            after = try job() ?? after
        }
        #expect(after.waitingForWorkers && after.tasksPerSecond == 0 && after.pixelsPerSecond == 0, "\(after)")
        let total = Int(before.tasks)

        var (code, text) = try Self.cli(group, clients, ["status"], log: "cluster")
        #expect(code == 0, "\(text)")
        #expect(text.contains("cluster: waiting for workers"), "\(text)")
        #expect(text.contains("\nworkers: 0\n"), "\(text)")
        #expect(text.contains("throughput: 0.00 tasks/s"), "\(text)")
        #expect(text.contains("\njob 1: waiting for workers 3/\(total) tasks, tissue"), "\(text)")
        (code, text) = try Self.cli(group, clients, ["status", "1"], log: "job")
        #expect(code == 0, "\(text)")
        #expect(text.hasPrefix("job 1: waiting for workers, tissue\n"), "\(text)")
        #expect(
            text.contains("tasks: \(total - 3) queued, 0 running, 3 done (\(total) in all); 0 failed at least once"),
            "\(text)")
        #expect(text.contains("\nsubmitted 20") && text.contains(" UTC"), "\(text)")
        #expect(text.contains("throughput: 0.00 tasks/s, 0.000 Mpx/s, on 0 worker(s)"), "\(text)")
        #expect(!text.contains("workers: "), "a job's status repeats nothing cluster-wide: \(text)")

        (code, text) = try Self.cli(group, clients, ["status", "--json"], log: "cluster-json")
        #expect(code == 0, "\(text)")
        let cluster = try Self.object(text)
        #expect(cluster["state"] as? String == "waiting_for_workers")
        #expect((cluster["workers"] as? [Any])?.isEmpty == true)
        let tasks = try #require(cluster["tasks"] as? [String: Int])
        #expect(tasks == ["queued": total - 3, "running": 0, "done": 3, "failed": 0], "\(tasks)")
        #expect(cluster["tasks_per_second"] as? Double == 0 && cluster["pixels_per_second"] as? Double == 0)
        #expect(cluster["rate_window_seconds"] as? Double == 1.5)
        #expect(cluster["active_jobs"] as? Int == 1 && cluster["jobs_matched"] as? Int == 1)
        #expect(
            cluster["job_counts"] as? [String: Int] == [
                "queued": 0, "running": 1, "done": 0, "failed": 0, "cancelled": 0,
            ])
        let listed = try #require(cluster["jobs"] as? [[String: Any]])
        #expect(listed.count == 1)
        let j = try #require(listed.first)
        #expect(j["id"] as? Int == 1 && j["state"] as? String == "running")
        #expect(j["waiting_for_workers"] as? Bool == true && j["image"] as? String == "tissue")
        #expect(j["owner"] is NSNull, "no CURVE: no owner")
        #expect(
            j["tasks"] as? [String: Int] == ["total": total, "queued": total - 3, "running": 0, "done": 3, "failed": 0])
        #expect(j["workers"] as? Int == 0 && j["tasks_per_second"] as? Double == 0)
        let submitted = try #require(j["submitted"] as? String)
        let when = try #require(ISO8601DateFormatter().date(from: submitted), "\(submitted)")
        #expect(abs(when.timeIntervalSinceNow) < 120, "submitted \(submitted)")
        #expect(j["ended"] is NSNull && j["message"] as? String == "")
        #expect(j["outputs"] == nil, "outputs are for status JOB")

        (code, text) = try Self.cli(group, clients, ["status", "1", "--json"], log: "job-json")
        let one = try Self.object(text)
        #expect(code == 0 && one["id"] as? Int == 1 && one["image"] as? String == "tissue", "\(text)")
        #expect(one["outputs"] as? [String] == [] && one["waiting_for_workers"] as? Bool == true, "\(text)")

        // Cancelled: --state chooses it; --wait's last line says how it ended, never "0/0 tasks".
        (code, text) = try Self.cli(group, clients, ["cancel", "1"], log: "cancel")
        #expect(code == 0, "\(text)")
        #expect(group.wait(waiter) != 0)
        let waited = group.log("submit")
        #expect(waited.contains("tissue: cancelled after 3/\(total) tasks: cancelled by a client"), "\(waited)")
        #expect(!waited.contains("0/0 tasks") && !waited.contains("ETA 0s"), "\(waited)")
        #expect(waited.contains(" KB") && !waited.contains(" 0/0 MB"), "a small upload in KB: \(waited)")
        (code, text) = try Self.cli(group, clients, ["status", "--state", "cancelled", "--json"], log: "cancelled")
        let cancelled = try #require(try Self.object(text)["jobs"] as? [[String: Any]])
        #expect(cancelled.map { $0["id"] as? Int } == [1], "\(text)")
        #expect(cancelled.first?["ended"] is String, "\(text)")
        (code, text) = try Self.cli(group, clients, ["status", "--state", "running", "--json"], log: "running")
        #expect(try Self.object(text)["jobs_matched"] as? Int == 0, "\(text)")
        (code, text) = try Self.cli(group, clients, ["status", "1", "--all"], log: "misuse")
        #expect(code != 0 && text.contains("give no job id"), "\(text)")
    }

    @Test("A coordinator of an earlier build: status falls back to the plain reply; --json says it needs a newer one")
    func earlierCoordinator() throws {
        let group = try ProcessGroup("status-earlier")
        defer { group.stop() }
        let context = try ZMQContext()
        let router = try ZMQSocket(context, type: .router)
        try router.applyTesseraDefaults()
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint
        /// Answers as a coordinator of an earlier build would, while `p` runs.
        func serve(_ p: Process) throws -> Int {
            var refused = 0
            let deadline = Date().addingTimeInterval(30)
            while p.isRunning && Date() < deadline {
                guard try router.waitForMessage(timeoutMilliseconds: 50),
                    let e = try router.receiveWire(dontWait: true),
                    let peer = e.peer, case .statusRequest(let id, let query) = try e.message.get()
                else { continue }
                if query != nil {
                    refused += 1
                    let error = WireError(.badFlags, "statusRequest: flags 0x\(id == nil ? 2 : 3) not defined")
                    _ = try router.send(.error(message: "malformed message: \(error)"), to: peer)
                } else {
                    _ = try router.send(
                        .status(
                            Wire.JobStatus(
                                jobID: id, state: .running, tasksQueued: 2, workers: 1, message: "2 active job(s) of 5")
                        ),
                        to: peer)
                }
            }
            return refused
        }
        var p = try group.start("tessera-coordinator", ["status", "--coordinator", endpoint], log: "plain")
        #expect(try serve(p) == 1)
        #expect(group.wait(p) == 0, "\(group.log("plain"))")
        #expect(
            group.log("plain").contains("cluster: running\n") && group.log("plain").contains("2 active job(s) of 5"))
        p = try group.start("tessera-coordinator", ["status", "--coordinator", endpoint, "--json"], log: "json")
        _ = try serve(p)
        #expect(group.wait(p) != 0 && group.log("json").contains("an earlier build"), "\(group.log("json"))")
    }

    @Test("Times are those Foundation's formatters write, in UTC (without a formatter per time: 11 s for 20 000 jobs)")
    func timesAgreeWithFoundation() throws {
        let iso = ISO8601DateFormatter()
        iso.timeZone = TimeZone(identifier: "UTC")
        let text = DateFormatter()
        text.locale = Locale(identifier: "en_US_POSIX")
        text.timeZone = TimeZone(identifier: "UTC")
        text.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        var rng = SplitMix64(seed: 28)
        let fixed: [Double] = [1, 59.999, 951_782_400, 1_709_164_799.5, 4_102_444_800, 253_402_300_799]
        for t in fixed + (0..<500).map({ _ in Double(rng.next() % 4_102_444_800) + 0.25 }) {
            let date = Date(timeIntervalSince1970: t.rounded(.down))
            #expect(Status.timestamp(t) == .string(iso.string(from: date)), "\(t)")
            #expect(Status.time(t) == text.string(from: date), "\(t)")
        }
        #expect(Status.timestamp(0) == .null)
    }

    @Test("Progress: no ETA before there is a rate; a small upload in KB")
    func progressLines() throws {
        func line(_ draw: (Coordinator.Progress) -> Void) throws -> String {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("progress-\(UUID().uuidString)")
                .path
            defer { try? FileManager.default.removeItem(atPath: path) }
            let file = try #require(fopen(path, "w"))
            draw(Coordinator.Progress(stream: file))
            fclose(file)
            return try String(contentsOfFile: path, encoding: .utf8)
        }
        let start = Date().addingTimeInterval(-3)
        #expect(
            try line { $0.update(label: "ihc", done: 0, total: 1, pixels: 100, since: start) }
                == "ihc: 0/1 tasks  0.00 Mpx/s\n")
        #expect(
            try line { $0.update(label: "ihc", done: 2, total: 10, pixels: 100, since: start, rate: (0, 0)) }
                == "ihc: 2/10 tasks  0.00 Mpx/s\n", "nothing completed lately: no ETA")
        // A slow mode's rate in a unit that shows it (user review: "0.00 Mpx/s" throughout a naive run).
        #expect(
            try line { $0.update(label: "ihc", done: 2, total: 10, pixels: 100, since: start, rate: (0.5, 2500)) }
                == "ihc: 2/10 tasks  2.5 kpx/s  ETA 16s\n")
        #expect(Coordinator.Progress.rate(40) == "40 px/s" && Coordinator.Progress.rate(3e6) == "3.00 Mpx/s")
        #expect(
            try line { $0.update(label: "ihc", done: 2, total: 10, pixels: 100, since: start, rate: (4, 2e6)) }
                == "ihc: 2/10 tasks  2.00 Mpx/s  ETA 2s\n")
        // No worker connected (user audit: the fading rate gave an ETA that grew to minutes).
        #expect(
            try line {
                $0.update(label: "ihc", done: 2, total: 10, pixels: 100, since: start, rate: (4, 2e6), waiting: true)
            } == "ihc: 2/10 tasks  waiting for workers\n")
        #expect(
            try line { $0.transfer(label: "small.png", done: 40_000, total: 40_000, since: start) }
                .hasPrefix("small.png: uploaded 40/40 KB  13 KB/s"))
        // 1.5 MB in 3 s and a little more (the line is drawn after `start`): at most 500 KB/s, a little less
        // on a busy machine.
        let big = try line { $0.transfer(label: "big.png", done: 1_500_000, total: 48_000_000, since: start) }
        let rate =
            big.hasPrefix("big.png: uploaded 1.5/48.0 MB  ") && big.hasSuffix(" KB/s\n")
            ? Int(big.dropFirst("big.png: uploaded 1.5/48.0 MB  ".count).dropLast(" KB/s\n".count)) : nil
        #expect(rate.map { (400...500).contains($0) } == true, "\(big)")
        let failedLine = try line {
            $0.update(label: "ihc", done: 64, total: 64, pixels: 100, since: start)
            $0.ended(label: "ihc", "failed after 64/64 tasks: cannot write ihc.npy")
        }
        // 100 pixels in about 3 s: 33 px/s, or 32 on a busy machine.
        #expect(
            ["33", "32"].map { "ihc: 64/64 tasks  \($0) px/s\nihc: failed after 64/64 tasks: cannot write ihc.npy\n" }
                .contains(failedLine), "\(failedLine)")
        // A job at 100% still writing its outputs is polled again: its last line is written once.
        #expect(
            try line { p in
                for _ in 0..<3 { p.update(label: "ihc", done: 64, total: 64, pixels: 1_000_000, since: start) }
            } == "ihc: 64/64 tasks  0.33 Mpx/s\n")
    }
}
