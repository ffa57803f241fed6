import TesseraCore

/// Namespace for the payloads of `WireMessage` (kept apart from the engine's own
/// types of similar names: converting is the coordinator's and worker's job).
public enum Wire {
    /// A model's content digest: SHA-256 of the prototxt followed by the caffemodel
    /// (computed by the model code; here just 32 opaque bytes).
    public struct ModelDigest: Hashable, Sendable, CustomStringConvertible {
        public let bytes: [UInt8]
        /// nil unless exactly 32 bytes.
        public init?(bytes: [UInt8]) {
            guard bytes.count == 32 else { return nil }
            self.bytes = bytes
        }
        /// Lower-case hex.
        public var hex: String {
            bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        }
        public var description: String { hex }
    }

    /// The four engine modes (docs/ARCHITECTURE.md §3).
    public enum Mode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case naive = 0, fast = 1, shift = 2, dense = 3
        public var description: String { name }
        /// "naive", "fast", "shift", "dense".
        public var name: String {
            switch self {
            case .naive: "naive"
            case .fast: "fast"
            case .shift: "shift"
            case .dense: "dense"
            }
        }
        public init?(name: String) {
            guard let mode = Self.allCases.first(where: { $0.name == name }) else { return nil }
            self = mode
        }
    }

    /// Pixel preprocessing: `value = (raw · rawScale − mean[c]) · scale`, channels in `channelOrder`.
    public struct Preprocessing: Equatable, Sendable {
        public enum ChannelOrder: UInt8, Sendable, CaseIterable { case rgb = 0, bgr = 1 }
        public var channelOrder: ChannelOrder
        public var rawScale: Float
        public var scale: Float
        /// Empty, one value for all channels, or one per channel (finite values).
        public var mean: [Float]

        public init(channelOrder: ChannelOrder = .bgr, rawScale: Float = 1, scale: Float = 1, mean: [Float] = []) {
            self.channelOrder = channelOrder
            self.rawScale = rawScale
            self.scale = scale
            self.mean = mean
        }
    }

    /// A rectangle in output pixels.
    public struct Rect: Equatable, Hashable, Sendable {
        public var y0: UInt32, x0: UInt32, height: UInt32, width: UInt32
        public init(y0: UInt32, x0: UInt32, height: UInt32, width: UInt32) {
            self.y0 = y0; self.x0 = x0; self.height = height; self.width = width
        }
    }

    /// Identifies one task of one job.
    public struct TaskRef: Hashable, Sendable {
        public var jobID: UInt64
        public var taskID: UInt64
        public init(jobID: UInt64, taskID: UInt64) { self.jobID = jobID; self.taskID = taskID }
    }

    /// A block of input pixels: `height × width × channels` samples, interleaved
    /// (HWC), each `bytesPerSample` bytes (1 = UInt8, 2 = UInt16 little-endian).
    public struct PixelRegion: Equatable, Sendable {
        public var height: UInt32, width: UInt32, channels: UInt32, bytesPerSample: UInt8
        public var pixels: [UInt8]
        public init(height: UInt32, width: UInt32, channels: UInt32, bytesPerSample: UInt8, pixels: [UInt8]) {
            self.height = height; self.width = width; self.channels = channels
            self.bytesPerSample = bytesPerSample; self.pixels = pixels
        }
    }

    // MARK: Worker → coordinator

    /// A worker's first message: who it is and what it can do.
    public struct Hello: Equatable, Sendable {
        /// The protocol version the worker speaks (`WireMessage.version`).
        public var protocolVersion: UInt8
        public var workerName: String
        public var threads: UInt32
        public var memoryBytes: UInt64
        /// "cpu", "cuda:0"…
        public var device: String
        public init(
            protocolVersion: UInt8 = WireMessage.version, workerName: String, threads: UInt32,
            memoryBytes: UInt64, device: String
        ) {
            self.protocolVersion = protocolVersion; self.workerName = workerName; self.threads = threads
            self.memoryBytes = memoryBytes; self.device = device
        }
    }

    /// A task's output: `classes × height × width` float32 values, row-major per class.
    public struct TaskResult: Equatable, Sendable {
        public var jobID: UInt64, taskID: UInt64, attempt: UInt32
        public var classes: UInt32, height: UInt32, width: UInt32
        public var values: [Float]
        public init(
            jobID: UInt64, taskID: UInt64, attempt: UInt32, classes: UInt32, height: UInt32, width: UInt32,
            values: [Float]
        ) {
            self.jobID = jobID; self.taskID = taskID; self.attempt = attempt
            self.classes = classes; self.height = height; self.width = width; self.values = values
        }
    }

    /// A task the worker could not run.
    public struct TaskFailure: Equatable, Sendable {
        public var jobID: UInt64, taskID: UInt64, attempt: UInt32
        public var message: String
        public init(jobID: UInt64, taskID: UInt64, attempt: UInt32, message: String) {
            self.jobID = jobID; self.taskID = taskID; self.attempt = attempt; self.message = message
        }
    }

    // MARK: Coordinator → worker

    /// The coordinator's answer to `hello`: the heartbeat contract and the credit.
    public struct Welcome: Equatable, Sendable {
        public var heartbeatIntervalMilliseconds: UInt32
        /// Missed intervals before a peer is declared dead.
        public var heartbeatLiveness: UInt32
        /// Tasks the worker may hold at once.
        public var maxTasksInFlight: UInt32
        public init(
            heartbeatIntervalMilliseconds: UInt32 = 1000, heartbeatLiveness: UInt32 = 3,
            maxTasksInFlight: UInt32 = 2
        ) {
            self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
            self.heartbeatLiveness = heartbeatLiveness
            self.maxTasksInFlight = maxTasksInFlight
        }
    }

    /// One self-contained unit of work (docs/ARCHITECTURE.md §4).
    public struct TaskSpec: Equatable, Sendable {
        public var jobID: UInt64, taskID: UInt64, attempt: UInt32
        public var modelDigest: ModelDigest
        public var mode: Mode
        /// The output pixels this task produces.
        public var outputRect: Rect
        /// `shift` only: the pass's displacement (each below the net's stride); (0, 0) otherwise.
        public var displacementY: UInt32, displacementX: UInt32
        /// The whole image's size (nets that pad need it to pad where the whole-image pass does).
        public var imageHeight: UInt32, imageWidth: UInt32
        /// The padded input pixels the output rect needs.
        public var input: PixelRegion
        public var preprocessing: Preprocessing
        /// Opaque engine settings (small).
        public var options: [UInt8]

        public init(
            jobID: UInt64, taskID: UInt64, attempt: UInt32, modelDigest: ModelDigest, mode: Mode,
            outputRect: Rect, displacementY: UInt32 = 0, displacementX: UInt32 = 0,
            imageHeight: UInt32 = 0, imageWidth: UInt32 = 0, input: PixelRegion,
            preprocessing: Preprocessing, options: [UInt8] = []
        ) {
            self.jobID = jobID; self.taskID = taskID; self.attempt = attempt; self.modelDigest = modelDigest
            self.mode = mode; self.outputRect = outputRect; self.displacementY = displacementY
            self.displacementX = displacementX; self.imageHeight = imageHeight; self.imageWidth = imageWidth
            self.input = input; self.preprocessing = preprocessing
            self.options = options
        }

        public var ref: TaskRef { TaskRef(jobID: jobID, taskID: taskID) }
    }

    /// A model's files, sent to a worker that asked with `modelRequest`.
    public struct ModelData: Equatable, Sendable {
        public var digest: ModelDigest
        public var prototxt: [UInt8]
        public var weights: [UInt8]
        public init(digest: ModelDigest, prototxt: [UInt8], weights: [UInt8]) {
            self.digest = digest; self.prototxt = prototxt; self.weights = weights
        }
    }

    // MARK: Client ↔ coordinator

    /// A file either uploaded with the message or named by a path the coordinator can read.
    public enum FileSource: Equatable, Sendable {
        /// The bytes travel in a frame; `name` is the original file name (for outputs).
        case inline(name: String, bytes: [UInt8])
        /// A path on the coordinator's machine.
        case path(String)
    }

    /// A job as a client submits it.
    public struct JobSpec: Equatable, Sendable {
        public var mode: Mode
        public var tileSize: UInt32
        public var preprocessing: Preprocessing
        /// Output options, in the CLI's syntax (opaque here).
        public var outputOptions: String
        public var prototxt: FileSource
        public var weights: FileSource
        public var image: FileSource
        public init(
            mode: Mode, tileSize: UInt32, preprocessing: Preprocessing, outputOptions: String,
            prototxt: FileSource, weights: FileSource, image: FileSource
        ) {
            self.mode = mode; self.tileSize = tileSize; self.preprocessing = preprocessing
            self.outputOptions = outputOptions; self.prototxt = prototxt; self.weights = weights; self.image = image
        }
    }

    /// A job's life cycle.
    public enum JobState: UInt8, Sendable, CaseIterable {
        case queued = 0, running = 1, done = 2, failed = 3, cancelled = 4, unknown = 5
    }

    /// The coordinator's answer to `statusRequest` (for a job, or the cluster when `jobID` is nil).
    public struct JobStatus: Equatable, Sendable {
        public var jobID: UInt64?
        public var state: JobState
        public var tasksQueued: UInt64, tasksRunning: UInt64, tasksDone: UInt64, tasksFailed: UInt64
        public var workers: UInt32
        public var tasksPerSecond: Double
        public var pixelsPerSecond: Double
        /// A failure reason or note ("" if none).
        public var message: String
        /// Output files ready for `fetchRequest`.
        public var outputFiles: [String]
        public init(
            jobID: UInt64?, state: JobState, tasksQueued: UInt64 = 0, tasksRunning: UInt64 = 0,
            tasksDone: UInt64 = 0, tasksFailed: UInt64 = 0, workers: UInt32 = 0, tasksPerSecond: Double = 0,
            pixelsPerSecond: Double = 0, message: String = "", outputFiles: [String] = []
        ) {
            self.jobID = jobID; self.state = state; self.tasksQueued = tasksQueued; self.tasksRunning = tasksRunning
            self.tasksDone = tasksDone; self.tasksFailed = tasksFailed; self.workers = workers
            self.tasksPerSecond = tasksPerSecond; self.pixelsPerSecond = pixelsPerSecond
            self.message = message; self.outputFiles = outputFiles
        }
    }

    /// Asks for up to `maxBytes` of an output file from `offset`.
    public struct FetchRequest: Equatable, Sendable {
        public var jobID: UInt64
        public var fileName: String
        public var offset: UInt64
        public var maxBytes: UInt32
        public init(jobID: UInt64, fileName: String, offset: UInt64 = 0, maxBytes: UInt32 = 1 << 20) {
            self.jobID = jobID; self.fileName = fileName; self.offset = offset; self.maxBytes = maxBytes
        }
    }

    /// One chunk of an output file: `bytes` start at `offset` of a `totalSize`-byte file.
    public struct FetchChunk: Equatable, Sendable {
        public var jobID: UInt64
        public var fileName: String
        public var offset: UInt64
        public var totalSize: UInt64
        public var bytes: [UInt8]
        public init(jobID: UInt64, fileName: String, offset: UInt64, totalSize: UInt64, bytes: [UInt8]) {
            self.jobID = jobID; self.fileName = fileName; self.offset = offset; self.totalSize = totalSize
            self.bytes = bytes
        }
        /// True when this chunk reaches the end of the file.
        public var isLast: Bool { offset + UInt64(bytes.count) == totalSize }
    }
}
