import Foundation
import Testing

@testable import TesseraCluster
@testable import TesseraImage
@testable import TesseraWire
@testable import TestSupport

/// `serve --max-pixels`: an image is refused by its header at submit, never decoded.
@Suite("Admission: pixel limit", .serialized)
struct AdmissionTests {
    @Test("a 20 000² decompression bomb is refused at once, naming size and limit; RSS stays low")
    func bombRefused() throws {
        let group = try ProcessGroup("admission")
        defer { group.stop() }
        let port = try freeLoopbackPort()
        let (_, clients) = try group.startCoordinator(extra: [
            "--max-pixels", "100000000", "--metrics-address", "\(port)",
        ])
        // The refusal series are there at 0 before any refusal (operator audit 38 F7: "no data" until the first).
        let before = try PrometheusText(try httpGet(port: port, path: "/metrics").body)
        for reason in ["too-many-pixels", "auth-unlisted-key", "handshake-key"] {
            #expect(before.value("tessera_refusals_total", ["reason": reason]) == 0, "\(reason)")
        }
        let bomb = group.directory + "/bomb.png"
        let size = try writeBombPNG(to: bomb, width: 20_000, height: 20_000)
        #expect(size < 3_000_000, "the bomb is \(size) bytes")
        let start = Date()
        let output = try Self.refusedSubmission(group, clients, bomb)
        let seconds = Date().timeIntervalSince(start)
        #expect(output.contains("20000×20000") && output.contains("100000000"), "\(output)")
        #expect(seconds < 10, "refusal took \(seconds) s")
        // Decoding would have taken 1.2 GB.
        let coordinator = try #require(group.coordinatorPID)
        let peak = try #require(peakResidentBytes(of: coordinator))
        #expect(peak < 300 << 20, "coordinator peak RSS \(peak >> 20) MiB")
        #expect(!FileManager.default.fileExists(atPath: group.directory + "/store/jobs/1"))
        let metrics = try PrometheusText(try httpGet(port: port, path: "/metrics").body)
        #expect(metrics.value("tessera_refusals_total", ["reason": "too-many-pixels"]) == 1)
        let context = try ZMQContext()
        #expect(try TestClient(context, clients).status(1).state == .unknown)
    }
}

extension AdmissionTests {
    /// `submit` of `image` to `clients`, which must fail (within 30 s); returns its output.
    static func refusedSubmission(_ group: ProcessGroup, _ clients: String, _ image: String) throws -> String {
        let submit = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients] + ClusterFixture.modelFlags + [
                "--mode", "dense", "--out", group.directory + "/out", image,
            ], log: "submit")
        let status = group.wait(submit, timeout: 30)
        let output = group.log("submit")
        #expect(status != nil && status != 0, "\(output)")
        return output
    }

    /// Found by an operator audit: `submit` refused a PNG over 1.5·10⁹ pixels itself, so a
    /// coordinator started with a larger --max-pixels never saw it. The coordinator decides.
    @Test("submit leaves the pixel limit to the coordinator: its refusal names serve --max-pixels")
    func clientDefersToCoordinatorLimit() throws {
        let group = try ProcessGroup("admission-client")
        defer { group.stop() }
        let (_, clients) = try group.startCoordinator(extra: ["--max-pixels", "1000000000"])
        // A PNG that is all header (its 4.7 MB of data, the least deflate could hold, is never
        // read): 40 000 × 40 000 = 1.6·10⁹ pixels, over the old client-side limit of 1.5·10⁹.
        let header = group.directory + "/huge.png"
        _ = try SlideMapTests.python(
            """
            import struct, sys, zlib
            def chunk(kind, data):
                return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
            ihdr = struct.pack('>IIBBBBB', 40000, 40000, 8, 2, 0, 0, 0)
            open(sys.argv[1], 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', bytes(4_700_000)) + chunk(b'IEND', b''))
            """, [header])
        let output = try Self.refusedSubmission(group, clients, header)
        #expect(
            output.contains("40000×40000") && output.contains("1000000000") && output.contains("serve --max-pixels")
                && !output.contains("1500000000"), "\(output)")
    }
}

@Suite("PNG dimensions from the header bytes")
struct PNGDimensionsTests {
    @Test("a PNG whose data is corrupt half-way fails on the client, naming it; the coordinator drops the upload")
    func corruptUploadDropped() throws {
        let group = try ProcessGroup("corrupt-upload")
        defer { group.stop() }
        let (_, clients) = try group.startCoordinator()
        let image = group.directory + "/cells.png"
        try ClusterFixture.writeImage(to: image, height: 600, width: 700)
        var bytes = try #require(ClusterFixture.bytes(image))
        for i in (bytes.count / 2)..<(bytes.count / 2 + 64) { bytes[i] ^= 0x55 }
        try Data(bytes).write(to: URL(fileURLWithPath: image))
        let submit = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients] + ClusterFixture.modelFlags + [
                "--out", group.directory + "/out", image,
            ],
            log: "submit")
        let status = group.wait(submit, timeout: 60)
        #expect(status != nil && status != 0, "\(group.log("submit"))")
        #expect(group.log("submit").contains("cells.png"), "\(group.log("submit"))")
        let deadline = Date().addingTimeInterval(10)
        while !group.log("coordinator").contains("upload dropped") && Date() < deadline { usleep(100_000) }
        let log = group.log("coordinator")
        #expect(log.contains("receiving an upload") && log.contains("cancelled by a client"), "\(log)")
        #expect(!FileManager.default.fileExists(atPath: group.directory + "/store/jobs/1"))
    }

    @Test("reads IHDR's width and height; nil for anything that does not start like a PNG")
    func dimensions() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.path + "/small.png"
        try ClusterFixture.writeImage(to: path, height: 37, width: 91)
        let bytes = try #require(ClusterFixture.bytes(path))
        let size = try #require(PNGReader.dimensions(of: bytes))
        #expect(size.width == 91 && size.height == 37)
        #expect(PNGReader.dimensions(of: Array(bytes.prefix(20))) == nil)
        #expect(PNGReader.dimensions(of: Array("GIF89a, not a PNG at all....".utf8)) == nil)
    }
}
