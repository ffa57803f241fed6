import Foundation
import Testing

@testable import TesseraCluster
@testable import TesseraWire
@testable import TestSupport

/// The worker endpoint's message limit (`serve --max-worker-message-mib`): a peer that
/// sends more is disconnected by libzmq before the message is buffered, so strangers
/// cannot grow the coordinator's memory; a job whose results would not fit is refused
/// at submission with the reason, not after its tiles are computed.
@Suite("Worker endpoint message limit", .serialized)
struct EndpointLimitTests {
    static func rss(_ pid: Int32) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) << 10
    }

    @Test("Oversized messages on the worker endpoint cost nothing; a job with results over the limit is refused")
    func oversized() throws {
        let group = try ProcessGroup("endpoint-limit")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: ["--max-worker-message-mib", "1"])
        let pid = try #require(group.coordinatorPID)
        let before = Self.rss(pid)
        let context = try ZMQContext()
        // Four strangers each send a 64 MiB frame (no hello, no CURVE needed to try).
        func stranger() throws {
            let s = try ZMQSocket(context, type: .dealer)
            try s.applyTesseraDefaults()
            try s.connect(workers)
            try s.send([[UInt8](repeating: 0x41, count: 64 << 20)], flags: .dontWait)
            usleep(400_000)  // sent before the socket closes (linger is bounded)
        }
        for _ in 0..<4 { try stranger() }
        usleep(500_000)
        let after = Self.rss(pid)
        #expect(after - before < 64 << 20, "coordinator RSS grew by \((after - before) >> 20) MiB")
        // It serves on; a job whose results (2 classes × 512² floats = 2 MiB) exceed 1 MiB is refused.
        let client = try TestClient(context, clients)
        #expect(try client.status(nil).state != .unknown)
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 600, width: 600)
        let submit = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients] + ClusterFixture.modelFlags
                + ["--mode", "dense", "--tile", "512", "--outputs", "npy", "--out", group.directory + "/out", image],
            log: "client")
        #expect(group.wait(submit, timeout: 60) != 0)
        #expect(group.log("client").contains("exceeds the worker endpoint's limit of 1 MiB"), "\(group.log("client"))")
        print("worker endpoint limit: RSS \(before >> 20) → \(after >> 20) MiB after 4 × 64 MiB frames")
    }
}
