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
