import Foundation
import Testing

@testable import TesseraCluster
@testable import TesseraModel
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

    /// Operator audit: a submission over `--max-client-message-mib` (here a 41 MB model, limit 32 MiB) made
    /// libzmq close the connection unanswered; the client waited 2 minutes, then asked "is it running?".
    /// It now fails at once, naming the limit.
    @Test("A submission over the client endpoint's message limit fails at once, naming the limit")
    func oversizedSubmission() throws {
        let group = try ProcessGroup("client-limit")
        defer { group.stop() }
        // A patch classifier with a 14 400 → 700 inner product: 40 MB of weights (38.5 MiB).
        let prototxt = group.directory + "/big.prototxt"
        try """
        input: "data"
        input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 16 kernel_size: 3 } }
        layer { name: "fc1" type: "InnerProduct" bottom: "conv" top: "fc1" inner_product_param { num_output: 700 } }
        layer { name: "relu" type: "ReLU" bottom: "fc1" top: "fc1" }
        layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 2 } }
        layer { name: "prob" type: "Softmax" bottom: "fc2" top: "prob" }
        """.write(toFile: prototxt, atomically: true, encoding: .utf8)
        let loaded = try ModelLoader.load(ModelSource(model: prototxt, requireWeights: false))
        let written = try CaffeWriter.write(loaded.classifier.withRandomWeights(seed: 3), input: loaded.patchSize)
        try written.prototxt.write(toFile: group.directory + "/fcn.prototxt", atomically: true, encoding: .utf8)
        try written.caffemodel.write(to: URL(fileURLWithPath: group.directory + "/big.caffemodel"))
        #expect(written.caffemodel.count > 32 << 20)
        let (_, clients) = try group.startCoordinator(extra: ["--max-client-message-mib", "32"])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 64, width: 64)
        let started = Date()
        let submit = try group.start(
            "tessera-coordinator",
            [
                "submit", "--coordinator", clients, "--model", prototxt, "--weights",
                group.directory + "/big.caffemodel",
                "--allow-padding", "--outputs", "npy", "--out", group.directory + "/out", image,
            ], log: "client")
        #expect(group.wait(submit, timeout: 60) == 1, "\(group.log("client"))")
        let log = group.log("client")
        #expect(log.contains("closed the connection") && log.contains("--max-client-message-mib"), "\(log)")
        #expect(Date().timeIntervalSince(started) < 30, "it took \(Date().timeIntervalSince(started)) s")
    }

    /// A submission whose image is `size` bytes: a real PNG header (admitted) and junk, so
    /// the coordinator stores it and its decoder then refuses it.
    static func junkSubmission(header png: [UInt8], size: Int) -> WireMessage {
        var options = JobOptions()
        options.engine.allowPadding = true
        var image = Array(png.prefix(33))  // signature + IHDR
        image += [UInt8](repeating: 0x5A, count: size - image.count)
        return .submit(
            Wire.JobSpec(
                mode: .dense, tileSize: UInt32(ClusterFixture.tile),
                preprocessing: Wire.Preprocessing(
                    channelOrder: .bgr, rawScale: 1, scale: 0.015625, mean: [104, 117, 123]),
                outputOptions: options.encoded,
                prototxt: .inline(name: "deploy.prototxt", bytes: ClusterFixture.bytes(ClusterFixture.prototxt)!),
                weights: .inline(name: "weights.caffemodel", bytes: ClusterFixture.bytes(ClusterFixture.weights)!),
                image: .inline(name: "flood.png", bytes: image)))
    }

    @Test("A client flooding large uploads: coordinator peak RSS stays bounded, a legitimate job still completes")
    func uploadFlood() throws {
        let group = try ProcessGroup("upload-flood")
        defer { group.stop() }
        let (workers, clients) = try group.startCoordinator(extra: ["--max-preparing-mib", "1"])
        let pid = try #require(group.coordinatorPID)
        try group.start("tessera-worker", ["--coordinator", workers, "--threads", "1"], log: "w")
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 70)
        let (size, count) = (32 << 20, 24)
        let message = Self.junkSubmission(header: ClusterFixture.bytes(image)!, size: size)
        let context = try ZMQContext()
        let flood = try ZMQSocket(context, type: .dealer)
        try flood.applyTesseraDefaults(maxMessageSize: 1 << 30)
        try flood.connect(clients)
        usleep(300_000)
        let before = try #require(peakResidentBytes(of: pid))
        // The legitimate client submits while the flood is under way.
        let legit = try group.submitFixture(
            clients, image: image, out: group.directory + "/out", tile: 24, log: "legit")
        let started = Date()
        for _ in 0..<count { try flood.send(message) }
        var replies = 0
        let deadline = Date().addingTimeInterval(180)
        while replies < count && Date() < deadline {
            if try flood.waitForMessage(timeoutMilliseconds: 200), try flood.receiveWire(dontWait: true) != nil {
                replies += 1
            }
        }
        let seconds = Date().timeIntervalSince(started)
        #expect(replies == count, "the flood got \(replies) of \(count) replies")
        #expect(group.wait(legit, timeout: 120) == 0, "\(group.log("legit"))\n\(group.log("coordinator"))")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/out/tissue.npy"))
        let growth = try #require(peakResidentBytes(of: pid)) - before
        // Bound: one upload in preparation, the peer's queue (2 messages), one being
        // decoded by libzmq and its copy being read: 5 × 32 MiB, plus slack.
        #expect(growth < 7 * size, "coordinator peak RSS grew by \(growth >> 20) MiB for \(count) × \(size >> 20) MiB")
        let log = group.log("coordinator")
        #expect(log.contains("client endpoint paused"), "\(log)")
        print(
            "upload flood: \(count) × \(size >> 20) MiB in \(String(format: "%.1f", seconds)) s, "
                + "coordinator peak RSS \(before >> 20) → \((before + growth) >> 20) MiB")
    }
}
