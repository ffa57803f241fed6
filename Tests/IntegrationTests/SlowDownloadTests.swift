import Foundation
import Testing

@testable import TestSupport

/// A download whose pieces take longer than the client's first attempt (a slow link, a
/// slow disk on the coordinator) must finish, not retry the same piece until the client
/// gives up.
@Suite("Slow downloads")
struct SlowDownloadTests {
    /// The coordinator serves 2 MiB a second (8 MiB pieces take 4 s, past the client's
    /// 3 s first attempt); the 9.7 MB map must arrive whole, in smaller pieces.
    @Test("A download slower than a piece per attempt finishes, in smaller pieces, byte for byte")
    func slowPieces() throws {
        let group = try ProcessGroup("slow-download")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: ["--debug-fetch-ms-per-mib", "500"])
        try group.startWorker(workers, name: "w", threads: 2)
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 1100, width: 1100)
        // What a killed download left, and what a live one is writing (soak audit 31 F4: the first stayed).
        let out = group.directory + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let (dead, live) = (out + "/.tissue.npy.partial-999999999", out + "/.tissue.npy.partial-\(getpid())")
        for path in [dead, live] { try Data(count: 1000).write(to: URL(fileURLWithPath: path)) }
        let client = try group.submitFixture(
            clients, image: image, out: group.directory + "/out", tile: 256,
            extra: ["--reconnect-timeout", "40"], log: "client")
        let expected = try ClusterFixture.localNPY(image: image, mode: .dense, scratch: group.directory)
        #expect(expected.count > 9 << 20, "the map is larger than one 8 MiB piece")
        #expect(group.wait(client, timeout: 120) == 0, "\(group.log("client"))\n\(group.log("coordinator"))")
        let got = ClusterFixture.bytes(group.directory + "/out/tissue.npy")
        #expect(got?.count == expected.count && got == expected, "the downloaded map equals the in-process one")
        #expect(!FileManager.default.fileExists(atPath: dead), "a killed download's partial file stays")
        #expect(FileManager.default.fileExists(atPath: live), "a live download's partial file was removed")
    }
}
