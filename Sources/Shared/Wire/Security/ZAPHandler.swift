import Foundation

/// One ZAP authentication request (RFC 27), as libzmq sends it to the handler.
package struct ZAPRequest: Sendable, Equatable {
    /// The server socket's `ZMQ_ZAP_DOMAIN`.
    package var domain: String
    /// The client's IP address.
    package var address: String
    /// The routing id the client asked for (may be empty; not authenticated).
    package var identity: [UInt8]
    /// "NULL", "PLAIN" or "CURVE".
    package var mechanism: String
    /// Mechanism credentials (CURVE: one frame, the client's 32-byte public key).
    package var credentials: [[UInt8]]

    /// The client's CURVE public key, when the mechanism is CURVE.
    package var curvePublicKey: ZMQCurveKey? {
        guard mechanism == "CURVE", credentials.count == 1 else { return nil }
        return ZMQCurveKey(bytes: credentials[0])
    }
}

/// What the handler answers.
package enum ZAPDecision: Sendable, Equatable {
    /// Status 200; `userID` becomes the message metadata `User-Id` (`ZMQMessage.userID`).
    case allow(userID: String)
    /// Status 400: the handshake fails and the peer gets nothing.
    case deny(reason: String)
}

/// The rule a `ZAPHandler` applies.
package struct ZAPPolicy: Sendable {
    package let decide: @Sendable (ZAPRequest) -> ZAPDecision

    package init(_ decide: @escaping @Sendable (ZAPRequest) -> ZAPDecision) { self.decide = decide }

    /// Lets everyone in (User-Id "anonymous"). Use it on NULL sockets with a ZAP domain
    /// set: that alone makes libzmq refuse ZMTP 1.0 garbage (docs/ARCHITECTURE.md §9).
    package static let allowAll = ZAPPolicy { _ in .allow(userID: "anonymous") }

    /// CURVE only, and only the listed public keys; the User-Id is the key's name.
    package static func allowList(_ keys: [ZMQCurveKey: String]) -> ZAPPolicy {
        ZAPPolicy { request in
            guard request.mechanism == "CURVE" else {
                return .deny(reason: "mechanism \(request.mechanism) not allowed")
            }
            guard let key = request.curvePublicKey else { return .deny(reason: "malformed CURVE credentials") }
            guard let name = keys[key] else { return .deny(reason: "unlisted public key \(key.z85)") }
            return .allow(userID: name)
        }
    }
}

/// A ZAP handler: a thread with a REP socket bound to `inproc://zeromq.zap.01` in the
/// given context, answering libzmq's authentication requests with a `ZAPPolicy`.
///
/// Start it before binding the sockets it protects (which need `ZMQ_ZAP_DOMAIN` set,
/// e.g. through `ZMQCurve.configureServer`). One handler per context. Call `stop()`
/// (or drop the handler) before the context goes away: its socket holds a reference to
/// the context, and `stop()` closes it so `zmq_ctx_term` does not hang.
///
/// It fails closed: libzmq 4.3 lets every CURVE client in when no handler is bound, so
/// a handler thread that hits an error does not close its socket. It reports the error
/// (`onFailure`, `failure`) and leaves the socket bound and unanswered until `stop()`,
/// so new handshakes wait instead of succeeding; the owner must then close the sockets
/// it protects (the coordinator stops).
///
///     let keys = try ZMQCurve.loadAuthorizedKeys(directory: authorizedDir)
///     let zap = try ZAPHandler(context: context, policy: .allowList(keys)) { request, reason in
///         logger.warning("refused \(request.address): \(reason)")
///     }
package final class ZAPHandler: Sendable {
    /// The endpoint libzmq sends ZAP requests to.
    package static let endpoint = "inproc://zeromq.zap.01"

    /// What the handler thread shares with its owner. The thread holds this, not the
    /// handler, so dropping the handler still stops the thread (`deinit`).
    private final class State: Sendable {
        struct Shared: Sendable {
            var stopping = false
            var policy: ZAPPolicy
            var startError: (any Error)?
            /// Why the thread stopped answering (nil while it answers).
            var failure: (any Error)?
            /// Test hook: the thread fails with this at its next turn.
            var injectedFailure: (any Error)?
        }
        let shared: Locked<Shared>
        let onRefusal: @Sendable (ZAPRequest, String) -> Void
        let onFailure: @Sendable (any Error) -> Void
        let started = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        init(
            policy: ZAPPolicy, onRefusal: @escaping @Sendable (ZAPRequest, String) -> Void,
            onFailure: @escaping @Sendable (any Error) -> Void
        ) {
            shared = Locked(Shared(policy: policy))
            self.onRefusal = onRefusal
            self.onFailure = onFailure
        }
    }

    private let state: State
    /// Whether `stop()` has run; held while it waits, so a second caller waits too.
    private let stopped = Locked(false)

    /// Binds the handler in `context` and starts its thread. Throws if the endpoint is
    /// taken (another handler in this context). `onRefusal` runs on the handler thread;
    /// so does `onFailure`, once, if the thread stops answering on an error (it then
    /// answers no more requests: see the type's documentation).
    package init(
        context: ZMQContext, policy: ZAPPolicy,
        onRefusal: @escaping @Sendable (ZAPRequest, String) -> Void = { _, _ in },
        onFailure: @escaping @Sendable (any Error) -> Void = { _ in }
    ) throws {
        let state = State(policy: policy, onRefusal: onRefusal, onFailure: onFailure)
        self.state = state
        let thread = Thread { Self.run(context: context, state: state) }
        thread.name = "tessera-zap"
        thread.start()
        state.started.wait()
        if let error = state.shared.withLock({ $0.startError }) {
            state.finished.wait()
            stopped.withLock { $0 = true }
            throw error
        }
    }

    /// Replaces the policy (e.g. after the authorized-keys folder changed). New
    /// handshakes use it; established connections are not affected.
    package func update(policy: ZAPPolicy) {
        state.shared.withLock { $0.policy = policy }
    }

    /// Why the handler stopped answering; nil while it answers.
    package var failure: (any Error)? {
        state.shared.withLock { $0.failure }
    }

    /// Test hook: makes the handler thread fail with `error` as a real fault would.
    func injectFailure(_ error: any Error) {
        state.shared.withLock { $0.injectedFailure = error }
    }

    /// Stops the thread and closes its socket; waits (≤ ~100 ms) for it. Idempotent.
    package func stop() {
        stopped.withLock { stopped in
            guard !stopped else { return }
            stopped = true
            state.shared.withLockWakingWaiters { $0.stopping = true }
            state.finished.wait()
        }
    }

    deinit { stop() }

    private static func run(context: ZMQContext, state: State) {
        defer { state.finished.signal() }
        let socket: ZMQSocket
        do {
            socket = try bindSocket(context)
        } catch {
            state.shared.withLock { $0.startError = error }
            state.started.signal()
            return
        }
        state.started.signal()
        answer(socket, state: state)
        // Free the name before stop() returns, so a handler started next in this context
        // (a service restarted in-process) can bind it: zmq_close alone releases an
        // inproc endpoint later, on libzmq's reaper thread.
        try? socket.unbind(endpoint)
        socket.close()
    }

    /// Answers requests until `stop()`.
    private static func answer(_ socket: borrowing ZMQSocket, state: State) {
        while !state.shared.withLock({ $0.stopping }) {
            do {
                if let injected = state.shared.withLock({ $0.injectedFailure }) { throw injected }
                guard try socket.waitForMessage(timeoutMilliseconds: 100) else { continue }
                let message = try socket.receive(maxFrames: 16, maxBytes: 64 * 1024)
                try socket.send(reply(to: message.frames, state: state))
            } catch {
                // ETERM (context shut down) or a broken REP state: nothing sane to retry.
                // Fail closed: report, and keep the socket bound but unanswered until
                // stop(), so handshakes wait on it instead of finding no handler (which
                // libzmq 4.3 takes as "allow").
                state.shared.withLock { $0.failure = error }
                state.onFailure(error)
                state.shared.wait(until: { $0.stopping }, then: { _ in })
                return
            }
        }
    }

    private static func bindSocket(_ context: ZMQContext) throws -> ZMQSocket {
        let socket = try ZMQSocket(context, type: .rep)
        try socket.set(.linger, 0)
        // inproc ignores it, but every Tessera socket carries a size limit.
        try socket.set(.maxMessageSize, Int64(64 * 1024))
        // A handler that stopped an instant ago may still hold the name (its close is
        // asynchronous): wait for it up to a second; a live handler still fails.
        var tries = 0
        while true {
            do {
                try socket.bind(endpoint)
                return socket
            } catch let error as ZMQError where error.rawValue == EADDRINUSE && tries < 100 {
                tries += 1
                usleep(10_000)
            }
        }
    }

    /// The message property holding the connection's CURVE public key (Z85), from the ZAP reply's metadata.
    package static let curveKeyProperty = "X-Curve-Key"

    /// ZMTP metadata (RFC 23/37): per property a 1-byte name length, the name, a 4-byte big-endian value
    /// length and the value.
    static func metadataFrame(_ properties: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (name, value) in properties {
            let n = Array(name.utf8), v = Array(value.utf8)
            out.append(UInt8(n.count))
            out += n
            out += withUnsafeBytes(of: UInt32(v.count).bigEndian) { Array($0) }
            out += v
        }
        return out
    }

    /// Builds the six-frame ZAP reply for a request (`version, id, status, text, user, metadata`).
    private static func reply(to frames: [[UInt8]], state: State) -> [[UInt8]] {
        func text(_ i: Int) -> String { i < frames.count ? String(decoding: frames[i], as: UTF8.self) : "" }
        let requestID = frames.count > 1 ? frames[1] : []
        guard frames.count >= 6, text(0) == "1.0" else {
            return [Array("1.0".utf8), requestID, Array("500".utf8), Array("malformed ZAP request".utf8), [], []]
        }
        let request = ZAPRequest(
            domain: text(2), address: text(3), identity: frames[4], mechanism: text(5),
            credentials: Array(frames.dropFirst(6)))
        let policy = state.shared.withLock { $0.policy }
        switch policy.decide(request) {
        case .allow(let userID):
            // The CURVE key goes with the connection's messages as metadata (`ZMQMessage.curveKey`): a key
            // replaced under the same name is then told from the new one (ops audit: an old key's open
            // connection kept working after the rotation).
            let metadata = request.curvePublicKey.map { metadataFrame([(curveKeyProperty, $0.z85)]) } ?? []
            return [Array("1.0".utf8), requestID, Array("200".utf8), Array("OK".utf8), Array(userID.utf8), metadata]
        case .deny(let reason):
            state.onRefusal(request, reason)
            return [Array("1.0".utf8), requestID, Array("400".utf8), Array(reason.utf8.prefix(200)), [], []]
        }
    }
}
