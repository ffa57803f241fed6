import Foundation
import Logging
import TesseraCluster
import TesseraImage
import Testing

@testable import CoordinatorService
@testable import TesseraCore
@testable import TesseraWire
@testable import TestSupport

/// Upload jobs whose client sends the image decoded, in parts (`CoordinatorLoop+Uploads`):
/// what the coordinator accepts, refuses and forgets, checked message by message.
@Suite("Raw uploads: parts in order, checked, answered one by one")
struct RawUploadTests {
    /// Runs `body` against a fresh in-process coordinator on a fresh store (`configure`: more settings).
    func withService(
        idle: Double = 120, configure: (inout CoordinatorService.Configuration) -> Void = { _ in },
        _ body: (borrowing TestClient, String) throws -> Void
    ) throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-raw-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let context = try ZMQContext()
        let id = UUID().uuidString
        var configuration = CoordinatorService.Configuration(
            workerEndpoint: "inproc://w-\(id)", clientEndpoint: "inproc://c-\(id)", storeDirectory: root)
        configuration.uploadIdleSeconds = idle
        configuration.maxPixels = 1_000_000
        configure(&configuration)
        let service = CoordinatorService(context: context, configuration: configuration, logger: Logger(label: "test"))
        _ = try service.start()
        defer { service.stop() }
        let client = try TestClient(context, "inproc://c-\(id)")
        try body(client, root)
    }

    func announce(height: Int, width: Int) -> Wire.JobSpec {
        var spec = DamagedStoreTests.spec("cells.png", image: [])
        var options = (try? JobOptions(encoded: spec.outputOptions)) ?? JobOptions()
        options.rawImage = RawImageShape(height: height, width: width, channels: 3, bitDepth: 8)
        spec.outputOptions = options.encoded
        return spec
    }

    func part(
        _ job: UInt64, _ bytes: ArraySlice<UInt8>, at offset: Int, last: Bool, crc: UInt32? = nil
    )
        -> WireMessage
    {
        .uploadPart(
            Wire.UploadPart(
                jobID: job, offset: UInt64(offset), crc32: crc ?? bytes.withUnsafeBytes { CRC32.update(0, $0) },
                last: last, bytes: Array(bytes)))
    }

    @Test(
        "Out-of-order, damaged and oversized parts are refused; a repeated part is acknowledged; the last part starts the job"
    )
    func protocolChecks() throws {
        try withService { client, root in try protocolChecks(client, root) }
    }

    private func protocolChecks(_ client: borrowing TestClient, _ root: String) throws {
        let (h, w) = (40, 50)
        var rng = SplitMix64(seed: 3)
        let image = (0..<(h * w * 3)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        guard case .submitted(let id) = try client.request(.submit(announce(height: h, width: w))) else {
            Issue.record("the announcement was not accepted")
            return
        }
        let status = try client.status(id)
        #expect(status.state == .queued && status.message.contains("receiving the image: 0%"), "\(status)")
        func refused(_ m: WireMessage, _ text: String) throws {
            let reply = try client.request(m)
            guard case .error(let message) = reply, message.contains(text) else {
                Issue.record("expected a refusal containing \"\(text)\", got \(reply)")
                return
            }
        }
        let first = image[0..<2000]
        try refused(part(id, image[100..<200], at: 100, last: false), "expected 0")
        try refused(part(id, first, at: 0, last: false, crc: 1), "arrived damaged")
        try refused(part(id, first, at: 0, last: true), "does not fit")
        #expect(try client.request(part(id, first, at: 0, last: false)) == .uploadAck(jobID: id, received: 2000))
        // The same part again (a lost answer): acknowledged, nothing changes.
        #expect(
            try client.request(part(id, image[1000..<2000], at: 1000, last: false))
                == .uploadAck(jobID: id, received: 2000))
        try refused(part(id, image[2000...] + [0], at: 2000, last: true), "does not fit")
        try refused(part(id + 1, first, at: 0, last: false), "no upload in progress")
        #expect(try client.request(part(id, image[2000...], at: 2000, last: true)) == .submitted(jobID: id))
        let raw = try #require(FileManager.default.contents(atPath: "\(root)/jobs/\(id)/image.raw"))
        #expect([UInt8](raw) == image, "the stored image differs from the parts sent")
        #expect(try client.status(id).state == .queued, "no worker has taken a task of it")
        let record = try #require(try JobStore(root: root).readRecord(id))
        #expect(record.imageBytes == image.count && record.imageCRC32 == CRC32.checksum(image))
    }

    @Test(
        "An announced image over --max-pixels is refused before any part; an abandoned upload is dropped; a cancel stops one"
    )
    func admissionAndAbandon() throws {
        try withService(idle: 0.5) { client, root in try admissionAndAbandon(client, root) }
    }

    private func admissionAndAbandon(_ client: borrowing TestClient, _ root: String) throws {
        let big = try client.request(.submit(announce(height: 2000, width: 2000)))
        guard case .error(let message) = big, message.contains("over this coordinator's limit") else {
            Issue.record("a 4 Mpx announcement was not refused: \(big)")
            return
        }
        guard case .submitted(let quiet) = try client.request(.submit(announce(height: 10, width: 10))),
            case .submitted(let cancelled) = try client.request(.submit(announce(height: 10, width: 10)))
        else {
            Issue.record("small announcements were refused")
            return
        }
        // Cancelled while uploading: it stays listed as cancelled (operator audit: it vanished, "unknown"),
        // and a part sent after the cancel is told so.
        guard case .status(let answer) = try client.request(.cancel(jobID: cancelled)) else {
            Issue.record("cancel was not answered with a status")
            return
        }
        #expect(answer.state == .cancelled)
        let after = try client.status(cancelled)
        #expect(after.state == .cancelled && after.message.contains("while its image was uploading"), "\(after)")
        let late = try client.request(part(cancelled, [1, 2, 3][...], at: 0, last: false))
        guard case .error(let lateMessage) = late, lateMessage.contains("was cancelled while its image was uploading")
        else {
            Issue.record("a part after the cancel: \(late)")
            return
        }
        // Abandoned: dropped, and listed as failed with why (chaos audit 28: "queued", then "unknown").
        let deadline = Date().addingTimeInterval(10)
        while try client.status(quiet).state != .failed && Date() < deadline { usleep(100_000) }
        let dropped = try client.status(quiet)
        #expect(dropped.state == .failed && dropped.message.contains("stopped arriving"), "\(dropped)")
        #expect(!FileManager.default.fileExists(atPath: "\(root)/jobs/\(quiet)"))
        #expect(!FileManager.default.fileExists(atPath: "\(root)/jobs/\(cancelled)"))
        // Their ids are recorded as removed: a restart on this store gives neither to another job (ops audit).
        let mark = try String(contentsOfFile: root + "/removed-up-to", encoding: .utf8)
        #expect(UInt64(mark.trimmingCharacters(in: .whitespacesAndNewlines)) == max(quiet, cancelled), "\(mark)")
    }
}
