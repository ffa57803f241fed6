import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraWire
@testable import TestSupport

@Suite("CURVE keys and the ZAP handler")
struct WireCurveZAPTests {
    static func tempDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "tessera-wire-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("Key pairs are Z85 and round-trip")
    func keypair() throws {
        #expect(ZMQCurve.isAvailable)
        let pair = try ZMQCurve.keypair()
        #expect(pair.publicKey.z85.count == 40 && pair.secretKey.z85.count == 40)
        #expect(ZMQCurveKey(z85: pair.publicKey.z85) == pair.publicKey)
        #expect(pair.publicKey != pair.secretKey)
        #expect(ZMQCurveKey(z85: "too short") == nil)
        #expect(ZMQCurveKey(z85: String(repeating: "~", count: 40)) == nil)
    }

    @Test("Key files: secret 0600, public readable, no overwrite, folder loads by name")
    func keyFiles() throws {
        let dir = try Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pair = try ZMQCurve.keypair()
        let paths = try ZMQCurve.writeKeyFiles(pair, name: "worker-a", directory: dir)
        var info = stat()
        #expect(stat(paths.secretPath, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(stat(paths.publicPath, &info) == 0 && info.st_mode & 0o777 == 0o644)
        #expect(try ZMQCurve.readKeyPair(path: paths.secretPath) == pair)
        #expect(try ZMQCurve.readPublicKey(path: paths.publicPath) == pair.publicKey)
        #expect(throws: ZMQKeyFileError.self) { try ZMQCurve.writeKeyFiles(pair, name: "worker-a", directory: dir) }
        #expect(throws: ZMQKeyFileError.self) { try ZMQCurve.writeKeyFiles(pair, name: "../x", directory: dir) }

        let authorized = try Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: authorized) }
        try FileManager.default.copyItem(atPath: paths.publicPath, toPath: authorized + "/worker-a.pub")
        let other = try ZMQCurve.keypair()
        try (other.publicKey.z85 + "\n").write(toFile: authorized + "/bare.key", atomically: true, encoding: .utf8)
        try "garbage".write(toFile: authorized + "/broken.pub", atomically: true, encoding: .utf8)
        try "ignored".write(toFile: authorized + "/README", atomically: true, encoding: .utf8)
        var skipped: [String] = []
        let keys = try ZMQCurve.loadAuthorizedKeys(directory: authorized) { skipped.append($0.path) }
        #expect(keys == [pair.publicKey: "worker-a", other.publicKey: "bare"])
        #expect(skipped.count == 1 && skipped[0].hasSuffix("broken.pub"))
    }

    /// CURVE audit 30: a key under two names took the name sorting last (and with it another key's jobs), a secret
    /// key in the folder let its key in silently (F01, F08); a damaged pair was accepted and every handshake then
    /// blamed the server's key (F02); a folder, a dangling link and a missing file all read "unreadable" (F11).
    @Test("Key folder: a key under two names, secret keys and broken pairs are refused with the reason")
    func keyFolderHygiene() throws {
        let dir = try Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (alice, bob, carol) = (try ZMQCurve.keypair(), try ZMQCurve.keypair(), try ZMQCurve.keypair())
        let secrets = dir + "/secrets"
        try FileManager.default.createDirectory(atPath: secrets, withIntermediateDirectories: true)
        for (pair, name) in [(alice, "alice"), (bob, "bob"), (carol, "carol")] {
            try ZMQCurve.writeKeyFiles(pair, name: name, directory: secrets)
        }
        let folder = dir + "/authorized"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: secrets + "/alice.pub", toPath: folder + "/alice.pub")
        try FileManager.default.copyItem(atPath: secrets + "/alice.pub", toPath: folder + "/zz-alice.pub")
        try FileManager.default.copyItem(atPath: secrets + "/bob.pub", toPath: folder + "/bob.pub")
        try FileManager.default.copyItem(atPath: secrets + "/carol.key", toPath: folder + "/carol.key")
        try FileManager.default.createDirectory(atPath: folder + "/dir.pub", withIntermediateDirectories: true)
        // Names that are not identities (paths audit 41 F11: a newline split `status` lines); `alice@lab` is fine.
        let (dave, erin, frank) = (try ZMQCurve.keypair(), try ZMQCurve.keypair(), try ZMQCurve.keypair())
        try ZMQCurve.writeKeyFiles(dave, name: "dave", directory: secrets)
        try ZMQCurve.writeKeyFiles(erin, name: "erin", directory: secrets)
        try ZMQCurve.writeKeyFiles(frank, name: "frank", directory: secrets)
        try FileManager.default.copyItem(atPath: secrets + "/dave.pub", toPath: folder + "/da\nve.pub")
        try FileManager.default.copyItem(atPath: secrets + "/erin.pub", toPath: folder + "/.pub")
        try FileManager.default.copyItem(atPath: secrets + "/frank.pub", toPath: folder + "/frank@lab.pub")
        try FileManager.default.createSymbolicLink(atPath: folder + "/dangling.pub", withDestinationPath: dir + "/none")
        var skipped: [String: String] = [:]
        let keys = try ZMQCurve.loadAuthorizedKeys(directory: folder) {
            skipped[($0.path as NSString).lastPathComponent] = $0.reason
        }
        #expect(keys == [bob.publicKey: "bob", frank.publicKey: "frank@lab"], "\(keys)")
        #expect(skipped["da\nve.pub"]?.contains("a space or a control character") == true, "\(skipped)")
        #expect(skipped[".pub"]?.contains("no name before") == true, "\(skipped)")
        #expect(skipped["alice.pub"]?.contains("the same public key as zz-alice.pub") == true, "\(skipped)")
        #expect(skipped["zz-alice.pub"]?.contains("the same public key as alice.pub") == true, "\(skipped)")
        #expect(skipped["carol.key"]?.contains("it holds a secret key") == true, "\(skipped)")
        #expect(skipped["dir.pub"] == "a folder, not a key file", "\(skipped)")
        #expect(skipped["dangling.pub"] == "a symbolic link to nothing", "\(skipped)")
        #expect(throws: ZMQKeyFileError.self) { try ZMQCurve.readPublicKey(path: dir + "/missing.pub") }

        // Another key named "coordinator" shared the identity of the coordinator's own key (F09).
        try FileManager.default.copyItem(atPath: secrets + "/carol.pub", toPath: folder + "/coordinator.pub")
        let own = try ZMQCurve.keypair()
        let reported = Locked<[String]>([])
        let policy = AuthorizedKeysPolicy(
            CurveServerSecurity(keyPair: own, authorizedKeysDirectory: folder),
            onSkip: { error in reported.withLock { $0.append(error.reason) } })
        #expect(policy.current() == [bob.publicKey: "bob", frank.publicKey: "frank@lab", own.publicKey: "coordinator"])
        #expect(
            reported.withLock { $0 }.contains { $0.contains("the name coordinator is this coordinator's own key's") })

        // A pair whose secret is not its public key's.
        var text = try String(contentsOfFile: secrets + "/bob.key", encoding: .utf8)
        text = text.replacingOccurrences(of: bob.publicKey.z85, with: carol.publicKey.z85)
        try text.write(toFile: dir + "/mixed.key", atomically: true, encoding: .utf8)
        let e = #expect(throws: ZMQKeyFileError.self) { try ZMQCurve.readKeyPair(path: dir + "/mixed.key") }
        #expect(e?.reason.contains("its secret-key does not match its public-key") == true, "\(String(describing: e))")
    }

    /// CURVE audit 30 F12: the folder was read whole, under the lock, by whichever handshake or message found the
    /// list stale (0.4–0.6 s per `status` at 20 000 keys). Now only changed files are read again, in the background.
    @Test("Key folder reloads: in the background, changed files only; a key rewritten in place and a new one are seen")
    func backgroundReload() throws {
        let folder = try Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (alice, bob, carol) = (try ZMQCurve.keypair(), try ZMQCurve.keypair(), try ZMQCurve.keypair())
        let secrets = try Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: secrets) }
        for (pair, name) in [(alice, "alice"), (bob, "bob"), (carol, "carol")] {
            _ = try ZMQCurve.writeKeyFiles(pair, name: name, directory: secrets)
        }
        try FileManager.default.copyItem(atPath: secrets + "/alice.pub", toPath: folder + "/alice.pub")
        let policy = AuthorizedKeysPolicy(
            CurveServerSecurity(keyPair: try ZMQCurve.keypair(), authorizedKeysDirectory: folder),
            includingOwnKey: false, reloadSeconds: 0.05, onSkip: { _ in })
        #expect(policy.current() == [alice.publicKey: "alice"], "the first call reads the folder itself")
        /// The list once a background reload has seen `expected` (nil: not within 10 s).
        func eventually(_ expected: [ZMQCurveKey: String]) -> [ZMQCurveKey: String]? {
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                let now = policy.current()
                if now == expected { return now }
                usleep(20_000)
            }
            return nil
        }
        // A new file, and a file rewritten in place (same name, same size: another key).
        try FileManager.default.copyItem(atPath: secrets + "/bob.pub", toPath: folder + "/bob.pub")
        #expect(eventually([alice.publicKey: "alice", bob.publicKey: "bob"]) != nil, "\(policy.current())")
        let text = try String(contentsOfFile: folder + "/alice.pub", encoding: .utf8)
        let handle = try #require(FileHandle(forWritingAtPath: folder + "/alice.pub"))
        try handle.write(
            contentsOf: Data(text.replacingOccurrences(of: alice.publicKey.z85, with: carol.publicKey.z85).utf8))
        try handle.close()
        #expect(eventually([carol.publicKey: "alice", bob.publicKey: "bob"]) != nil, "\(policy.current())")
        try FileManager.default.removeItem(atPath: folder + "/bob.pub")
        #expect(eventually([carol.publicKey: "alice"]) != nil, "a removed key stays: \(policy.current())")
        // The cache holds the files as read, with their stamps; a removed file leaves it.
        var cache = KeyFolderCache()
        _ = try ZMQCurve.loadAuthorizedKeys(directory: folder, cache: &cache)
        let stamp = try #require(cache.files["alice.pub"]?.stamp)
        #expect(Set(cache.files.keys) == ["alice.pub"] && stamp == KeyFolderCache.Stamp(path: folder + "/alice.pub"))
        try FileManager.default.removeItem(atPath: folder + "/alice.pub")
        #expect(try ZMQCurve.loadAuthorizedKeys(directory: folder, cache: &cache).isEmpty && cache.files.isEmpty)
    }

    @Test("Without a ZAP handler CURVE accepts any client key")
    func noHandlerAcceptsAnyone() throws {
        let setup = try CurveSetup(context: try ZMQContext())
        let stranger = try setup.client(try ZMQCurve.keypair())
        // No IMMEDIATE on this client: the message waits for the handshake.
        let envelope = try #require(try setup.exchange(stranger, timeout: 5000))
        #expect(try envelope.message.get() == .heartbeat)
    }

    @Test("With the ZAP handler an unlisted key gets nothing, a listed one gets in with its name")
    func allowList() throws {
        let context = try ZMQContext()
        let alice = try ZMQCurve.keypair()
        let refusals = Locked<[String]>([])
        let zap = try ZAPHandler(context: context, policy: .allowList([alice.publicKey: "alice"])) { _, reason in
            refusals.withLock { $0.append(reason) }
        }
        defer { zap.stop() }
        let setup = try CurveSetup(context: context)
        let monitor = try setup.server.monitor(events: .handshakeFailedAuth, context: context)

        let mallory = try setup.client(try ZMQCurve.keypair())
        #expect(try setup.exchange(mallory, timeout: 700) == nil, "an unlisted key was delivered")
        let event = try #require(try monitor.next(timeoutMilliseconds: 3000))
        #expect(event.event == .handshakeFailedAuth && event.value == 400)
        #expect(refusals.withLock { $0 }.first?.contains("unlisted") == true, "refusals: \(refusals.withLock { $0 })")

        let aliceSocket = try setup.client(alice)
        let envelope = try #require(try setup.exchange(aliceSocket, timeout: 5000))
        #expect(try envelope.message.get() == .heartbeat)
        #expect(envelope.userID == "alice")
        #expect(envelope.peerAddress == "127.0.0.1")

        // A second handler in the same context cannot bind.
        #expect(throws: ZMQError.self) { _ = try ZAPHandler(context: context, policy: .allowAll) }
    }

    /// A service restarted in-process stops its handler and starts a new one in the same
    /// context at once: the name must be free when stop() returns.
    @Test("A stopped ZAP handler frees its endpoint at once: 50 restarts in one context")
    func restartsInOneContext() throws {
        let context = try ZMQContext()
        for _ in 0..<50 {
            let zap = try ZAPHandler(context: context, policy: .allowAll)
            zap.stop()
        }
    }

    @Test("A ZAP handler that fails reports why and lets no CURVE client in, listed or not, until stopped")
    func failsClosed() throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "REP socket in a bad state" } }
        let context = try ZMQContext()
        let alice = try ZMQCurve.keypair()
        let failures = Locked<[String]>([])
        let zap = try ZAPHandler(
            context: context, policy: .allowList([alice.publicKey: "alice"]),
            onFailure: { error in failures.withLock { $0.append("\(error)") } })
        defer { zap.stop() }
        let setup = try CurveSetup(context: context)
        #expect(zap.failure == nil)
        zap.injectFailure(Broken())
        let deadline = Date().addingTimeInterval(5)
        while failures.withLock({ $0.isEmpty }) && Date() < deadline { usleep(10_000) }
        #expect(failures.withLock { $0 } == ["REP socket in a bad state"])
        #expect(zap.failure.map { "\($0)" } == "REP socket in a bad state")

        let mallory = try setup.client(try ZMQCurve.keypair())
        #expect(try setup.exchange(mallory, timeout: 700) == nil, "an unlisted key got in after the handler failed")
        let aliceSocket = try setup.client(alice)
        #expect(try setup.exchange(aliceSocket, timeout: 700) == nil, "no handshake may complete unchecked")
    }

    @Test("Random bytes over TCP to a ROUTER with a ZAP domain are not delivered")
    func garbageOverTCP() throws {
        let context = try ZMQContext()
        let zap = try ZAPHandler(context: context, policy: .allowAll)
        defer { zap.stop() }
        let router = try ZMQSocket(context, type: .router)
        try router.applyTesseraDefaults(maxMessageSize: 1 << 20)
        try router.set(.zapDomain, "tessera")
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint
        let port = UInt16(endpoint.split(separator: ":").last!)!

        var rng = SplitMix64(seed: 0x7E55_E8A)
        for _ in 0..<4 {
            let junk = (0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            try sendRawTCP(port: port, bytes: junk)
        }
        var delivered = 0
        while try router.waitForMessage(timeoutMilliseconds: 300) {
            // Should not happen; if it does, the decoder must refuse it.
            delivered += 1
            let envelope = try #require(try router.receiveWire())
            if case .success(let message) = envelope.message { Issue.record("garbage decoded as \(message)") }
        }
        #expect(delivered == 0, "\(delivered) garbage messages reached the application")

        // A legitimate NULL peer still gets in, with the allow-all User-Id.
        let dealer = try ZMQSocket(context, type: .dealer)
        try dealer.set(.linger, 0)
        try dealer.connect(endpoint)
        try dealer.send(.heartbeat)
        #expect(try router.waitForMessage(timeoutMilliseconds: 5000))
        let envelope = try #require(try router.receiveWire())
        #expect(try envelope.message.get() == .heartbeat)
        #expect(envelope.userID == "anonymous")
    }

    /// Connects to 127.0.0.1:`port`, writes `bytes`, waits briefly and closes.
    func sendRawTCP(port: UInt16, bytes: [UInt8]) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(connected == 0)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        usleep(50_000)
    }
}

/// A CURVE server ROUTER on tcp loopback, and a function making clients with a key pair.
struct CurveSetup: ~Copyable {
    let context: ZMQContext
    let server: ZMQSocket
    let serverPair: ZMQCurveKeyPair
    let endpoint: String

    init(context: ZMQContext) throws {
        let pair = try ZMQCurve.keypair()
        let socket = try ZMQSocket(context, type: .router)
        try socket.applyTesseraDefaults()
        try ZMQCurve.configureServer(socket, pair: pair)
        try socket.bind("tcp://127.0.0.1:*")
        let endpoint = try socket.lastEndpoint
        self.context = context
        self.serverPair = pair
        self.endpoint = endpoint
        self.server = socket
    }

    func client(_ pair: ZMQCurveKeyPair) throws -> ZMQSocket {
        let client = try ZMQSocket(context, type: .dealer)
        try client.set(.linger, 0)
        try ZMQCurve.configureClient(client, pair: pair, serverKey: serverPair.publicKey)
        try client.connect(endpoint)
        return client
    }

    /// Sends a heartbeat from `client` and returns the envelope the server got, if any.
    func exchange(_ client: borrowing ZMQSocket, timeout: Int) throws -> WireEnvelope? {
        try client.send(.heartbeat, flags: .dontWait)
        guard try server.waitForMessage(timeoutMilliseconds: timeout) else { return nil }
        return try server.receiveWire()
    }
}
