import Foundation
import Testing

@testable import TesseraWire
@testable import TestSupport

/// A unique inproc endpoint per test (tests run in parallel).
func uniqueInproc(_ name: String) -> String { "inproc://\(name)-\(UUID().uuidString)" }

@Suite("ZeroMQ wrapper")
struct WireZMQSocketTests {
    /// A worker DEALER says hello to a coordinator ROUTER, which answers with welcome.
    @Test("ROUTER/DEALER round trip", arguments: ["inproc", "tcp"])
    func routerDealer(_ transport: String) throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context, type: .router)
        try router.applyTesseraDefaults()
        try router.bind(transport == "tcp" ? "tcp://127.0.0.1:*" : uniqueInproc("rd"))
        let endpoint = try router.lastEndpoint
        if transport == "tcp" { #expect(endpoint.hasPrefix("tcp://127.0.0.1:") && !endpoint.hasSuffix(":0")) }

        let dealer = try ZMQSocket(context, type: .dealer)
        try dealer.set(.routingID, Array("worker-1".utf8))
        try dealer.applyTesseraDefaults()
        try dealer.connect(endpoint)

        let hello = WireMessage.hello(Wire.Hello(workerName: "w1", threads: 2, memoryBytes: 1 << 30, device: "cpu"))
        try dealer.send(hello)
        #expect(try router.waitForMessage(timeoutMilliseconds: 5000))
        let envelope = try #require(try router.receiveWire())
        #expect(envelope.peer == RoutingID(Array("worker-1".utf8)))
        #expect(try envelope.message.get() == hello)

        // A result goes out through the no-copy path and comes back equal.
        try dealer.send(.result(WireSamples.result))
        let back = try #require(try router.receiveWire())
        #expect(try back.message.get() == .result(WireSamples.result))

        try router.send(.welcome(Wire.Welcome()), to: envelope.peer)
        let reply = try #require(try dealer.receiveWire())
        #expect(reply.peer == nil)
        #expect(try reply.message.get() == .welcome(Wire.Welcome()))
    }

    @Test("ROUTER_MANDATORY: sending to an unknown peer throws .hostUnreachable")
    func mandatory() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context, type: .router)
        try router.applyTesseraDefaults()
        try router.bind(uniqueInproc("mandatory"))
        #expect(throws: ZMQError.hostUnreachable) {
            try router.send(.heartbeat, to: RoutingID([1, 2, 3]))
        }
        do {
            try router.send(.heartbeat, to: RoutingID([9]))
            Issue.record("send to an unknown peer succeeded")
        } catch ZMQError.hostUnreachable {
            // catch-by-static works
        }
    }

    @Test("Non-blocking receive returns nil, a receive timeout throws .again")
    func nonBlocking() throws {
        let context = try ZMQContext()
        let pull = try ZMQSocket(context, type: .pull)
        try pull.bind(uniqueInproc("nb"))
        #expect(try pull.receiveIfAvailable() == nil)
        #expect(try pull.receiveWire(dontWait: true) == nil)
        try pull.set(.receiveTimeout, 20)
        #expect(throws: ZMQError.again) { try pull.receive() }
    }

    @Test("Poller times out on idle sockets and reports the ready one")
    func poller() throws {
        let context = try ZMQContext()
        let endpoint = uniqueInproc("poll")
        let a = try ZMQSocket(context, type: .pull)
        let b = try ZMQSocket(context, type: .pull)
        try a.bind(endpoint)
        try b.bind(uniqueInproc("poll-b"))
        var poller = ZMQPoller()
        let ia = poller.add(a)
        let ib = poller.add(b)
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try poller.poll(timeoutMilliseconds: 60) == 0)
        let elapsed = clock.now - start
        #expect(elapsed >= .milliseconds(50) && elapsed < .seconds(2), "poll took \(elapsed)")

        let push = try ZMQSocket(context, type: .push)
        try push.connect(endpoint)
        try push.send([[1, 2, 3]])
        #expect(try poller.poll(timeoutMilliseconds: 2000) == 1)
        #expect(poller.isReadable(ia) && !poller.isReadable(ib))
        #expect(try a.receive().frames == [[1, 2, 3]])
    }

    @Test("Receive limits drain an over-long multipart message and keep the socket usable")
    func receiveLimits() throws {
        let context = try ZMQContext()
        let endpoint = uniqueInproc("limits")
        let pull = try ZMQSocket(context, type: .pull)
        try pull.bind(endpoint)
        let push = try ZMQSocket(context, type: .push)
        try push.connect(endpoint)
        try push.send(Array(repeating: [0], count: 20))
        try push.send([[7]])
        #expect(throws: ZMQError.messageTooLarge) { try pull.receive(maxFrames: 8) }
        #expect(try pull.receive(maxFrames: 8).frames == [[7]])
    }

    /// Hostile-input audit: a request of 9 frames came back without its peer, so it got no reply and no log.
    @Test("An over-long message to a ROUTER still names its peer, as a limitExceeded failure")
    func overLongMessageKeepsPeer() throws {
        let context = try ZMQContext()
        let endpoint = uniqueInproc("overlong")
        let router = try ZMQSocket(context, type: .router)
        try router.bind(endpoint)
        let dealer = try ZMQSocket(context, type: .dealer)
        try dealer.set(.routingID, Array("peer-1".utf8))
        try dealer.connect(endpoint)
        try dealer.send(Array(repeating: [0], count: 20))
        let envelope = try #require(try router.receiveWire())
        #expect(envelope.peer == RoutingID(Array("peer-1".utf8)))
        guard case .failure(let error) = envelope.message else {
            Issue.record("an over-long message decoded")
            return
        }
        #expect(error.kind == .limitExceeded && error.description.contains("over 8 frames"), "\(error)")
    }

    @Test("MAXMSGSIZE drops an oversized message; a normal peer still works")
    func maxMessageSize() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context, type: .router)
        try router.applyTesseraDefaults(maxMessageSize: 1024)
        #expect(try router.get(.maxMessageSize) == 1024)
        #expect(try router.get(.linger) == ZMQSocket.defaultLinger)
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint

        let big = try ZMQSocket(context, type: .dealer)
        try big.connect(endpoint)
        try big.send([[UInt8](repeating: 1, count: 64 * 1024)])
        #expect(try !router.waitForMessage(timeoutMilliseconds: 300), "the oversized message was delivered")

        let small = try ZMQSocket(context, type: .dealer)
        try small.connect(endpoint)
        try small.send(.heartbeat)
        #expect(try router.waitForMessage(timeoutMilliseconds: 5000))
        let envelope = try #require(try router.receiveWire())
        #expect(try envelope.message.get() == .heartbeat)
        #expect(try router.receiveIfAvailable() == nil, "something else arrived")
    }

    @Test("A monitor reports a peer's disconnect")
    func monitor() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context, type: .router)
        try router.bind("tcp://127.0.0.1:*")
        let monitor = try router.monitor(events: [.accepted, .disconnected], context: context)
        do {
            let dealer = try ZMQSocket(context, type: .dealer)
            try dealer.set(.linger, 0)
            try dealer.connect(try router.lastEndpoint)
            try dealer.send(.heartbeat)
            _ = try router.waitForMessage(timeoutMilliseconds: 5000)
            dealer.close()
        }
        var seen: [ZMQSocketEvent] = []
        while let event = try monitor.next(timeoutMilliseconds: 3000) {
            seen.append(event.event)
            if event.event == .disconnected {
                #expect(event.endpoint.hasPrefix("tcp://"))
                break
            }
        }
        #expect(seen.contains(.accepted) && seen.contains(.disconnected), "events: \(seen)")
    }

    @Test("Errors keep errno and describe themselves with zmq_strerror")
    func errors() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context, type: .dealer)
        do {
            try socket.connect("nonsense://x")
            Issue.record("connect to a bad endpoint succeeded")
        } catch let error as ZMQError {
            #expect(error == .protocolNotSupported || error == .invalidArgument, "\(error)")
            #expect(!error.description.isEmpty)
        }
        #expect(ZMQError.terminated.description.contains("terminated") || ZMQError.terminated.rawValue != 0)
        #expect(ZMQContext.version.major == 4)
    }

    @Test("Context shutdown wakes a blocked receive with .terminated")
    func shutdown() throws {
        let context = try ZMQContext()
        let endpoint = uniqueInproc("term")
        let done = DispatchSemaphore(value: 0)
        let outcome = Locked<String>("none")
        let ready = DispatchSemaphore(value: 0)
        Thread {
            do {
                let pull = try ZMQSocket(context, type: .pull)
                try pull.bind(endpoint)
                ready.signal()
                _ = try pull.receive()
                outcome.withLock { $0 = "received" }
            } catch ZMQError.terminated {
                outcome.withLock { $0 = "terminated" }
            } catch {
                outcome.withLock { $0 = "\(error)" }
            }
            done.signal()
        }.start()
        ready.wait()
        context.shutdown()
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(outcome.withLock { $0 } == "terminated")
    }
}
