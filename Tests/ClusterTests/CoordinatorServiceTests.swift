import Foundation
import Logging
import Testing

@testable import CoordinatorService
@testable import TesseraCluster
@testable import TesseraWire
@testable import TestSupport

/// The coordinator service's life cycle: starting, stopping, and stopping on its own
/// when it can no longer run safely.
@Suite("Coordinator service: life cycle and failing closed")
struct CoordinatorServiceTests {
    /// Runs `body` on another thread; false if it has not returned within `seconds`.
    static func returns(within seconds: Double, _ body: @escaping @Sendable () -> Void) -> Bool {
        let done = DispatchSemaphore(value: 0)
        Thread {
            body()
            done.signal()
        }.start()
        return done.wait(timeout: .now() + seconds) == .success
    }

    @Test("A result's values: NaN and infinities never pass; outside [0, 1] only for nets without a softmax or sigmoid")
    func impossibleValues() {
        #expect(CoordinatorLoop.impossibleValue([0, 0.5, 1], probabilities: true) == nil)
        #expect(CoordinatorLoop.impossibleValue([0.2, 2.0], probabilities: true) == 2.0)
        #expect(CoordinatorLoop.impossibleValue([-0.1], probabilities: true) == -0.1)
        #expect(CoordinatorLoop.impossibleValue([-3, 7.5], probabilities: false) == nil)
        #expect(CoordinatorLoop.impossibleValue([0.3, .nan], probabilities: false)?.isNaN == true)
        #expect(CoordinatorLoop.impossibleValue([.infinity], probabilities: false) == .infinity)
    }

    @Test("stop() and waitUntilStopped() return at once when start() never ran")
    func stopWithoutStart() throws {
        let service = CoordinatorService(
            context: try ZMQContext(),
            configuration: .init(workerEndpoint: "inproc://w-never", clientEndpoint: "inproc://c-never"),
            logger: Logger(label: "test.lifecycle"))
        #expect(Self.returns(within: 5) { service.stop() }, "stop() hangs without start()")
        #expect(Self.returns(within: 5) { service.waitUntilStopped() })
        #expect(Self.returns(within: 5) { service.stop() }, "a second stop() hangs")
        #expect(service.failure == nil)
    }

    /// Two coordinators on one store numbered their jobs from the same files and
    /// overwrote each other's; the second is now refused until the first stops.
    @Test("A store serves one coordinator at a time; it is free again once that one stops")
    func oneCoordinatorPerStore() throws {
        let root = NSTemporaryDirectory() + "tessera-store-lock-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        func service() throws -> CoordinatorService {
            CoordinatorService(
                context: try ZMQContext(),
                configuration: .init(
                    workerEndpoint: "tcp://127.0.0.1:*", clientEndpoint: "tcp://127.0.0.1:*", storeDirectory: root),
                logger: Logger(label: "test.store-lock"))
        }
        let first = try service()
        _ = try first.start()
        let second = try service()
        #expect {
            _ = try second.start()
        } throws: {
            "\($0)".contains("the store \(root) is in use by another coordinator (pid \(getpid())")
                && "\($0)".contains("give each coordinator its own --store")
        }
        first.stop()
        let third = try service()
        _ = try third.start()
        third.stop()
    }

    /// A coordinator killed with -9 (or crashed) left its temporary store, uploads and
    /// maps included, in the temporary folder for good.
    @Test("Temporary stores: removed when their process is gone and nobody holds the lock; a live one is kept")
    func abandonedTemporaryStores() throws {
        let folder = NSTemporaryDirectory() + "tessera-sweep-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // A PID that is gone: a child that has exited and been reaped.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        let dead = child.processIdentifier
        let host = ProcessInfo.processInfo.hostName
        func store(
            _ pid: pid_t, lock: Bool = false, marker: String? = nil, mode: Int16 = 0o700, name: String? = nil
        ) throws -> String {
            let path = "\(folder)/\(name ?? "tessera-store-\(pid)-\(UUID().uuidString)")"
            try FileManager.default.createDirectory(atPath: path + "/jobs/1", withIntermediateDirectories: true)
            try Data("image".utf8).write(to: URL(fileURLWithPath: path + "/jobs/1/image.raw"))
            try Data((marker ?? "host=\(host)\n").utf8).write(
                to: URL(fileURLWithPath: path + "/" + TemporaryStores.markerFile))
            if lock { try Data().write(to: URL(fileURLWithPath: path + "/coordinator.lock")) }
            chmod(path, mode_t(mode))
            return path
        }
        let abandoned = try store(dead)
        let unlocked = try store(dead, lock: true)
        let held = try store(dead, lock: true)  // another namespace's live coordinator
        let live = try store(getpid())
        let mine = try store(dead)
        let other = try store(dead, name: "tessera-stores-\(dead)-\(UUID().uuidString)")
        let notUUID = try store(dead, name: "tessera-store-\(dead)-slurm-job")  // a --store of a similar name
        let otherHost = try store(dead, marker: "host=not-\(host)\n")
        let open = try store(dead, mode: 0o755)  // not a store this code made
        let unmarked = try store(dead)
        try FileManager.default.removeItem(atPath: unmarked + "/" + TemporaryStores.markerFile)
        let link = "\(folder)/tessera-store-\(dead)-\(UUID().uuidString)"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: abandoned)
        let lock = try StoreLock(root: held)
        let removed = TemporaryStores.removeAbandoned(in: folder, keeping: mine, logger: Logger(label: "test.sweep"))
        #expect(Set(removed) == [abandoned, unlocked], "\(removed)")
        for path in [held, live, mine, other, notUUID, otherHost, open, unmarked] {
            #expect(FileManager.default.fileExists(atPath: path + "/jobs/1/image.raw"), "\(path) was removed")
        }
        _ = lock
        #expect(TemporaryStores.pid(of: "tessera-store-123-\(UUID().uuidString)") == 123)
        #expect(TemporaryStores.pid(of: "tessera-store-123-UUID") == nil)
        #expect(TemporaryStores.pid(of: "tessera-store-x-\(UUID().uuidString)") == nil)

        // End to end: a coordinator without --store killed with -9 leaves its store; the next one removes it.
        let binary = ProcessGroup.binary("tessera-coordinator")
        let ready = folder + "/ready"
        let killed = Process()
        killed.executableURL = URL(fileURLWithPath: binary)
        killed.arguments = [
            "serve", "--worker-endpoint", "tcp://127.0.0.1:*", "--client-endpoint", "tcp://127.0.0.1:*",
            "--ready-file", ready,
        ]
        killed.standardError = FileHandle.nullDevice
        try killed.run()
        let deadline = Date().addingTimeInterval(20)
        let prefix = "tessera-store-\(killed.processIdentifier)-"
        func leftover() -> String? {
            ((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? [])
                .first { $0.hasPrefix(prefix) }
        }
        while !FileManager.default.fileExists(atPath: ready) && Date() < deadline { usleep(20_000) }
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        let left = try #require(leftover(), "the killed coordinator had no temporary store")
        let next = CoordinatorService(
            context: try ZMQContext(),
            configuration: .init(workerEndpoint: "tcp://127.0.0.1:*", clientEndpoint: "tcp://127.0.0.1:*"),
            logger: Logger(label: "test.sweep"))
        _ = try next.start()
        defer { next.stop() }
        let swept = Date().addingTimeInterval(10)
        while leftover() != nil && Date() < swept { usleep(20_000) }
        #expect(leftover() == nil, "\(left) is still there")
    }

    @Test("A started service stops once, however many threads ask")
    func stopTwice() throws {
        let service = CoordinatorService(
            context: try ZMQContext(),
            configuration: .init(workerEndpoint: "tcp://127.0.0.1:*", clientEndpoint: "tcp://127.0.0.1:*"),
            logger: Logger(label: "test.lifecycle"))
        _ = try service.start()
        #expect(Self.returns(within: 10) { service.stop() })
        #expect(Self.returns(within: 5) { service.stop() })
        #expect(Self.returns(within: 5) { service.waitUntilStopped() })
        #expect(service.failure == nil)
    }

    @Test("When the ZAP handler fails the service stops: endpoints closed, the reason kept")
    func zapFailureStopsTheService() throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "injected fault" } }
        let context = try ZMQContext()
        let service = CoordinatorService(
            context: context,
            configuration: .init(workerEndpoint: "tcp://127.0.0.1:*", clientEndpoint: "tcp://127.0.0.1:*"),
            logger: Logger(label: "test.zap-failure"))
        let (workers, clients) = try service.start()
        defer { service.stop() }
        let zap = try #require(service.authentication.withLock { $0 })
        zap.injectFailure(Broken())
        #expect(Self.returns(within: 10) { service.waitUntilStopped() }, "the service kept running")
        let reason = try #require(service.failure)
        #expect(reason.description.contains("authentication (ZAP) handler failed"), "\(reason)")
        #expect(reason.description.contains("injected fault"), "\(reason)")
        // Both ports are free again: the endpoints are closed, not just unattended
        // (libzmq unbinds on its I/O thread, so a moment after the close).
        for endpoint in [workers, clients] {
            let socket = try ZMQSocket(context, type: .router)
            try socket.set(.linger, 0)
            var bound = false
            for _ in 0..<100 where !bound {
                bound = (try? socket.bind(endpoint)) != nil
                if !bound { usleep(20_000) }
            }
            #expect(bound, "\(endpoint) is still bound")
        }
    }
}

/// Found by an operator audit: jobs took turns, so a user with ten jobs got ten shares of
/// the cluster and a user with one got one; then by audit 46 (F2): keys took turns per task, so a
/// key whose tasks took 100 times longer held nearly every worker.
@Suite("Fair share: keys, then each key's jobs, get equal work")
struct FairShareTests {
    /// Picks `n` tasks, each charged its cost in the key and the job (`costs`: seconds per job).
    static func run(_ owners: [String], costs: [Double], _ n: Int) -> (picks: [Int], keys: [String: Double]) {
        var share = FairShare()
        var given = [Double](repeating: 0, count: owners.count)
        var picks: [Int] = []
        for turn in 0..<n {
            let i = share.pick(Array(zip(owners, given)).map { (key: $0.0, given: $0.1) }, turn: turn)
            picks.append(i)
            given[i] += costs[i]
            share.charge(owners[i], costs[i])
        }
        return (picks, share.keys)
    }

    @Test("a key with three jobs and a key with one get half the tasks each; each key's jobs take turns")
    func keysTakeTurns() {
        let picks = Self.run(["alice", "alice", "bob", "alice"], costs: [1, 1, 1, 1], 12).picks
        #expect(picks.filter { $0 == 2 }.count == 6, "\(picks)")
        for job in [0, 1, 3] { #expect(picks.filter { $0 == job }.count == 2, "\(picks)") }
    }

    @Test("without CURVE (one key) jobs simply take turns")
    func oneKey() {
        #expect(Self.run(["", "", ""], costs: [1, 1, 1], 6).picks == [0, 1, 2, 0, 1, 2])
    }

    @Test("a key whose tasks cost 100 times more gets the same work, not the same number of tasks")
    func equalWork() {
        let (picks, keys) = Self.run(["alice", "bob"], costs: [1, 0.01], 505)
        #expect(picks.filter { $0 == 0 }.count == 5, "alice: \(picks.filter { $0 == 0 }.count) tasks")
        #expect(abs(keys["alice"]! - keys["bob"]!) <= 1.0 + 1e-9, "\(keys)")
        // Within a key too: its two jobs get equal work.
        let mine = Self.run(["alice", "alice"], costs: [1, 0.01], 202).picks
        #expect(mine.filter { $0 == 0 }.count == 2, "\(mine)")
    }

    @Test("a key that had no work starts level with the others: idle time is not banked")
    func noBanking() {
        var share = FairShare()
        for _ in 0..<10 { share.charge("alice", 1) }
        share.keep(["alice", "bob"])
        // Bob arrives: level with alice, they alternate (not ten tasks in a row for bob).
        var picks: [Int] = []
        var given = [10.0, 0]
        for turn in 0..<6 {
            let i = share.pick([(key: "alice", given: given[0]), (key: "bob", given: given[1])], turn: turn)
            picks.append(i)
            given[i] += 1
            share.charge(i == 0 ? "alice" : "bob", 1)
        }
        #expect(picks.filter { $0 == 1 }.count == 3, "\(picks)")
        // Gone and back: forgotten, then level again.
        share.keep(["alice"])
        #expect(share.keys["bob"] == nil)
    }
}
