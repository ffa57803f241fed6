import ArgumentParser
import Foundation
import Logging
import Shared

/// A client of a coordinator's client endpoint: one request, one reply, in order.
final class ClusterClient {
    let endpoint: String
    private var socket: ZMQSocket

    init(endpoint: String, context: ZMQContext) throws {
        self.endpoint = endpoint
        socket = try ZMQSocket(context, type: .dealer)
        try socket.applyTesseraDefaults(maxMessageSize: 1 << 30)
        try socket.set(.sendTimeout, 10_000)
        try socket.connect(endpoint)
    }

    /// Sends `message` and waits up to `timeout` seconds for the reply; an `.error` reply throws.
    func request(_ message: WireMessage, timeout: Double = 60) throws -> WireMessage {
        do {
            try socket.send(message)
        } catch ZMQError.again {
            throw ClusterError("no coordinator answers at \(endpoint)")
        }
        var limits = WireLimits()
        limits.maxTotalBytes = 1 << 30
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard try socket.waitForMessage(timeoutMilliseconds: 200) else { continue }
            guard let envelope = try socket.receiveWire(limits: limits, dontWait: true) else { continue }
            switch envelope.message {
            case .success(.error(let text)): throw ClusterError(text)
            case .success(let reply): return reply
            case .failure(let e): throw ClusterError("malformed reply from the coordinator: \(e)")
            }
        }
        throw ClusterError("the coordinator at \(endpoint) did not answer within \(Int(timeout)) s")
    }

    func status(_ job: UInt64?) throws -> Wire.JobStatus {
        guard case .status(let s) = try request(.statusRequest(jobID: job)) else {
            throw ClusterError("unexpected reply to a status request")
        }
        return s
    }

    /// Polls the job until it ends, drawing progress; throws unless it is done.
    /// `alive` is asked between polls (the embedded run checks its workers).
    func wait(job: UInt64, label: String, pixels: Int, progress: Progress?,
              alive: () throws -> Void = {}) throws -> Wire.JobStatus {
        let start = Date()
        while true {
            let s = try status(job)
            let total = Int(s.tasksQueued + s.tasksRunning + s.tasksDone)
            progress?.update(label: label, done: Int(s.tasksDone), total: total, pixels: pixels, since: start)
            switch s.state {
            case .done:
                progress?.finish()
                return s
            case .failed, .cancelled, .unknown:
                progress?.finish()
                throw ClusterError("job \(job) \(s.state): \(s.message)")
            case .queued, .running:
                try alive()
                usleep(100_000)
            }
        }
    }

    /// Downloads the job's output files into `directory` (chunks of 8 MiB, written atomically).
    func fetchOutputs(job: UInt64, files: [String], into directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var written: [String] = []
        for name in files {
            let path = "\(directory)/\(name)"
            let temp = "\(directory)/.\(name).partial-\(getpid())"
            _ = FileManager.default.createFile(atPath: temp, contents: nil)
            guard let handle = FileHandle(forWritingAtPath: temp) else { throw ClusterError("cannot write \(temp)") }
            var offset: UInt64 = 0
            while true {
                guard case .fetchData(let chunk) = try request(.fetchRequest(
                    Wire.FetchRequest(jobID: job, fileName: name, offset: offset, maxBytes: 8 << 20))) else {
                    throw ClusterError("unexpected reply to a fetch request")
                }
                guard chunk.offset == offset else { throw ClusterError("fetch: chunk at \(chunk.offset), asked \(offset)") }
                try handle.write(contentsOf: chunk.bytes)
                offset += UInt64(chunk.bytes.count)
                if chunk.isLast || chunk.bytes.isEmpty { break }
            }
            try handle.synchronize()
            try handle.close()
            guard rename(temp, path) == 0 else { throw ClusterError("cannot rename \(temp) to \(path)") }
            written.append(path)
        }
        return written
    }
}

/// What `run` and `submit` share to describe one image's job.
struct JobFlags: ParsableArguments {
    @Option(help: "naive, fast, shift or dense.") var mode: MapMode = .dense
    @Option(help: "Tile size in map pixels (default: the largest that fits --memory-budget).") var tile: Int?
    @Option(help: "Memory budget for one tile's activations, in MiB.") var memoryBudget = 768
    @Flag(help: "Accept a net that cannot be exact (padding, partial pooling windows): the map is approximate.")
    var allowPadding = false
    @Option(help: .hidden) var randomWeights: UInt64?

    func validate() throws {
        if let tile, tile <= 0 || tile > 1 << 15 { throw ValidationError("--tile must be between 1 and 32768") }
        guard memoryBudget >= 16 else { throw ValidationError("--memory-budget must be at least 16 MiB") }
    }

    func engineSettings(_ model: ModelOptions) -> EngineSettings {
        EngineSettings(patchSize: model.patchSize, allowPadding: allowPadding, randomWeightsSeed: randomWeights)
    }

    func jobOptions(_ model: ModelOptions, _ output: OutputFlags, outputDirectory: String?) -> JobOptions {
        var o = JobOptions()
        o.outputs = output.outputs
        o.bitDepth = output.bitDepth
        o.classes = output.classes
        o.overlayClass = output.overlayClass
        o.engine = engineSettings(model)
        o.outputDirectory = outputDirectory
        return o
    }
}

/// The worker binary: `--worker-binary`, `$TESSERA_WORKER_BINARY`, or next to this executable.
func locateWorkerBinary(_ explicit: String?) -> String {
    if let explicit { return explicit }
    if let env = ProcessInfo.processInfo.environment["TESSERA_WORKER_BINARY"], !env.isEmpty { return env }
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return ((me as NSString).deletingLastPathComponent as NSString).appendingPathComponent("tessera-worker")
}

/// Whether binding `endpoint` keeps it on this machine.
func isLoopback(_ endpoint: String) -> Bool {
    if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
    guard endpoint.hasPrefix("tcp://") else { return false }
    let host = endpoint.dropFirst(6).split(separator: ":").dropLast().joined(separator: ":")
    return host.hasPrefix("127.") || host == "localhost" || host == "[::1]" || host == "::1"
}
