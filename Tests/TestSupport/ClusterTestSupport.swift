import Foundation
import TesseraCluster
import TesseraEngine
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire
import Testing

/// Starts the built executables (`tessera-coordinator`, `tessera-worker`, found next
/// to the test binary: `swift test` builds them into the same folder) and kills every
/// one of them when the test ends, passed or failed (`defer { group.stop() }`).
final class ProcessGroup: @unchecked Sendable {
    static let binDirectory: String = {
        let me =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = (me as NSString).deletingLastPathComponent
        // macOS: …/TesseraPackageTests.xctest/Contents/MacOS/…
        while !FileManager.default.fileExists(atPath: dir + "/tessera-coordinator") && dir.count > 1 {
            dir = (dir as NSString).deletingLastPathComponent
        }
        return dir
    }()

    static func binary(_ name: String) -> String { binDirectory + "/" + name }

    let directory: String
    private var processes: [Process] = []
    /// The process `startCoordinator` started.
    private(set) var coordinatorPID: Int32?
    private let lock = NSLock()

    init(_ label: String) throws {
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("tessera-\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Starts `name` (one of the package's executables, or an absolute path) with
    /// `arguments` (and `environment` added to this process's);
    /// stdout and stderr go to `<directory>/<log>.log`.
    @discardableResult
    func start(
        _ name: String, _ arguments: [String], log: String, environment: [String: String] = [:]
    ) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: name.hasPrefix("/") ? name : Self.binary(name))
        p.arguments = arguments
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let logPath = "\(directory)/\(log).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        lock.lock()
        processes.append(p)
        lock.unlock()
        return p
    }

    func log(_ name: String) -> String {
        (try? String(contentsOfFile: "\(directory)/\(name).log", encoding: .utf8)) ?? ""
    }

    /// Starts `tessera-coordinator serve` on ephemeral loopback ports; returns (worker, client)
    /// endpoints. `name` names its log, store and ready file (tests that run two).
    func startCoordinator(
        extra: [String] = [], name: String = "coordinator"
    ) throws -> (workers: String, clients: String) {
        let suffix = name == "coordinator" ? "" : "-" + name
        let ready = "\(directory)/ready\(suffix)"
        let p = try start(
            "tessera-coordinator",
            [
                "serve", "--worker-endpoint", "tcp://127.0.0.1:*",
                "--client-endpoint", "tcp://127.0.0.1:*", "--store", "\(directory)/store\(suffix)",
                "--ready-file", ready,
            ] + extra, log: name)
        if name == "coordinator" { coordinatorPID = p.processIdentifier }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: ready, encoding: .utf8) {
                let lines = text.split(separator: "\n").map(String.init)
                if lines.count == 2 { return (lines[0], lines[1]) }
            }
            usleep(20_000)
        }
        throw ClusterError("the coordinator did not start: \(log(name))")
    }

    func startWorker(_ endpoint: String, name: String, threads: Int = 1) throws {
        try start("tessera-worker", ["--coordinator", endpoint, "--threads", "\(threads)", "--name", name], log: name)
    }

    /// Waits for `p` to exit (up to `timeout` s); returns its status, or nil on timeout.
    func wait(_ p: Process, timeout: Double = 60) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        return p.isRunning ? nil : p.terminationStatus
    }

    func stop() {
        lock.lock()
        let all = processes
        processes.removeAll()
        lock.unlock()
        for p in all where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in all { p.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// The small net, image and settings every distributed test maps.
enum ClusterFixture {
    static let fixtures = TestPaths.fixtures
    static let prototxt = fixtures.appendingPathComponent("conv_pool_ip/deploy.prototxt").path
    static let weights = fixtures.appendingPathComponent("conv_pool_ip/weights.caffemodel").path
    static let preprocessing = Preprocessing(mean: [104, 117, 123], rawScale: 1, scale: 0.015625, channelOrder: .bgr)
    static let modelFlags = [
        "--model", prototxt, "--weights", weights, "--mean", "104,117,123", "--scale", "0.015625",
        "--allow-padding",
    ]
    static let tile = 24

    /// A reproducible random RGB PNG.
    static func writeImage(
        to path: String, height: Int = 150, width: Int = 190, seed: UInt64 = 11, channels: Int = 3
    ) throws {
        var state = seed
        let samples = (0..<(height * width * channels)).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        try writePNG(PixelImage(width: width, height: height, channels: channels, samples: .uint8(samples)), to: path)
    }

    /// The in-process map's `.npy` bytes (the reference the distributed maps must equal).
    static func localNPY(
        image path: String, mode: MapMode, scratch: String,
        model: (prototxt: String, weights: String) = (prototxt, weights)
    ) throws -> [UInt8] {
        let engine = try MapEngine(
            plan: EngineSettings(allowPadding: true).plan(
                prototxtPath: model.prototxt,
                weightsPath: model.weights
            ).plan)
        let mapper = LocalMapper(engine: engine, preprocessing: preprocessing, threads: 2)
        let map = try mapper.map(try PNGReader.read(path: path), mode: mode, tile: tile)
        let out = "\(scratch)/local-\(mode.rawValue).npy"
        try NPY.write(map, to: out)
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    static func bytes(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }
}

/// A bare client of the coordinator's client endpoint, for tests.
struct TestClient: ~Copyable {
    let socket: ZMQSocket

    /// `curve`: the client's key pair file (`NAME.key`) and the coordinator's public key file.
    init(_ context: ZMQContext, _ endpoint: String, curve: (key: String, server: String)? = nil) throws {
        let s = try ZMQSocket(context, type: .dealer)
        try s.applyTesseraDefaults()
        if let curve {
            try ZMQCurve.configureClient(
                s, pair: try ZMQCurve.readKeyPair(path: curve.key),
                serverKey: try ZMQCurve.readPublicKey(path: curve.server))
        }
        try s.connect(endpoint)
        socket = s
    }

    func request(_ m: WireMessage) throws -> WireMessage {
        try socket.send(m)
        guard try socket.waitForMessage(timeoutMilliseconds: 10_000), let e = try socket.receiveWire() else {
            throw ClusterError("no reply")
        }
        return try e.message.get()
    }

    /// `query`: the detailed status (`Wire.StatusQuery`), else the plain one.
    func status(_ job: UInt64?, query: Wire.StatusQuery? = nil) throws -> Wire.JobStatus {
        guard case .status(let s) = try request(.statusRequest(jobID: job, query: query)) else {
            throw ClusterError("not a status")
        }
        return s
    }
}

extension ProcessGroup {
    /// `tessera-coordinator submit --wait` (without `--wait` when `wait` is false) of the fixture net (`ClusterFixture.modelFlags`):
    /// a `mode` map of `image` in `tile`-pixel tiles, `outputs` into `out`, `extra` flags
    /// before the image; its output is logged as `log`.
    func submitFixture(
        _ clients: String, image: String, out: String, mode: MapMode = .dense, tile: Int = ClusterFixture.tile,
        outputs: String = "npy", wait: Bool = true, extra: [String] = [], log: String
    ) throws -> Process {
        try start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients] + ClusterFixture.modelFlags
                + ["--mode", mode.rawValue, "--tile", "\(tile)", "--outputs", outputs] + (wait ? ["--wait"] : [])
                + ["--out", out] + extra + [image], log: log)
    }
}
