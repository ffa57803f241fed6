import Foundation
import Testing

@testable import TesseraWire
@testable import TestSupport

/// Found by an operator audit: neither binary said which release it was, and a worker
/// facing a coordinator of another release retried forever with "malformed message".
@Suite("Releases: --version, info, and a coordinator of another release")
struct VersionTests {
    @Test("Both binaries report the same release and wire protocol; info lists it")
    func versionReported() throws {
        let coordinator = try runCommand([ProcessGroup.binary("tessera-coordinator"), "--version"])
        let worker = try runCommand([ProcessGroup.binary("tessera-worker"), "--version"])
        #expect(coordinator.status == 0 && worker.status == 0)
        // One line: the release, not a help screen.
        #expect(coordinator.output.split(separator: "\n").count == 1, "\(coordinator.output)")
        #expect(worker.output.split(separator: "\n").count == 1, "\(worker.output)")
        #expect(coordinator.output.contains(TesseraVersion.description), "\(coordinator.output)")
        #expect(worker.output.contains(TesseraVersion.description), "\(worker.output)")
        #expect(TesseraVersion.description.contains("wire protocol \(WireMessage.version)"))
        let info = try runCommand([ProcessGroup.binary("tessera-coordinator"), "info"])
        #expect(info.output.contains("Tessera     \(TesseraVersion.release)"), "\(info.output)")
    }

    @Test("A worker whose coordinator speaks another protocol stops with an error naming both releases")
    func workerStopsOnAnotherRelease() throws {
        let group = try ProcessGroup("other-release")
        defer { group.stop() }
        let context = try ZMQContext()
        let router = try ZMQSocket(context, type: .router)
        try router.applyTesseraDefaults()
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint
        let worker = try group.start(
            "tessera-worker", ["--coordinator", endpoint, "--threads", "1", "--name", "old"], log: "worker")
        #expect(try router.waitForMessage(timeoutMilliseconds: 20_000), "the worker said nothing")
        let hello = try #require(try router.receiveWire())
        guard case .hello = try hello.message.get() else {
            Issue.record("expected a hello")
            return
        }
        // A welcome from the next release: the header's version byte is one higher.
        var frames = WireMessage.welcome(Wire.Welcome()).encode()
        frames[0][3] = WireMessage.version + 1
        try router.send([try #require(hello.peer).bytes] + frames)
        let status = group.wait(worker, timeout: 30)
        let log = group.log("worker")
        #expect(status != nil && status != 0, "the worker went on: \(log)")
        #expect(
            log.contains("runs another Tessera release") && log.contains("protocol version \(WireMessage.version + 1)")
                && log.contains(TesseraVersion.description), "\(log)")
    }
}
