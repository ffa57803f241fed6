import TesseraCore

/// Namespace for the payloads of `WireMessage` (kept apart from the engine's own
/// types of similar names: converting is the coordinator's and worker's job).
package enum Wire {
    /// The reason a coordinator's client endpoint gives a worker's hello (`disconnect`): the worker then stops
    /// with it instead of retrying forever (user review: pointed at the client endpoint, a worker logged
    /// "unexpected message" every second and never said why).
    package static let clientEndpointRefusal =
        "this is the coordinator's client endpoint: a worker connects to its worker endpoint (serve --worker-endpoint)"

    /// How a coordinator's refusal of an upload part begins when it holds no upload of that job (it restarted,
    /// or the upload expired): `submit` then uploads the image again (chaos audit: it exited 1).
    package static let noUploadInProgress = "no upload in progress for job"

    /// A model's content digest: SHA-256 of the prototxt followed by the caffemodel
    /// (computed by the model code; here just 32 opaque bytes).
    package struct ModelDigest: Hashable, Sendable, CustomStringConvertible {
        package let bytes: [UInt8]
        /// nil unless exactly 32 bytes.
        package init?(bytes: [UInt8]) {
            guard bytes.count == 32 else { return nil }
            self.bytes = bytes
        }
        /// Lower-case hex.
        package var hex: String {
            bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        }
        package var description: String { hex }
    }

    /// The four engine modes (docs/ARCHITECTURE.md §3).
    package enum Mode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case naive = 0, fast = 1, shift = 2, dense = 3
        package var description: String { name }
        /// "naive", "fast", "shift", "dense".
        package var name: String {
            switch self {
            case .naive: "naive"
            case .fast: "fast"
            case .shift: "shift"
            case .dense: "dense"
            }
        }
        package init?(name: String) {
            guard let mode = Self.allCases.first(where: { $0.name == name }) else { return nil }
            self = mode
        }
    }

    /// Pixel preprocessing: `value = (raw · rawScale − mean[c]) · scale`, or with a std
    /// `value = (raw · rawScale − mean[c]) / std[c] · scale`, channels in `channelOrder`.
    package struct Preprocessing: Equatable, Sendable {
        package enum ChannelOrder: UInt8, Sendable, CaseIterable { case rgb = 0, bgr = 1 }
        package var channelOrder: ChannelOrder
        package var rawScale: Float
        package var scale: Float
        /// Empty, one value for all channels, or one per channel (finite values).
        package var mean: [Float]
        /// Empty, one value for all channels, or one per channel (positive values).
        package var std: [Float]

        package init(
            channelOrder: ChannelOrder = .bgr, rawScale: Float = 1, scale: Float = 1, mean: [Float] = [],
            std: [Float] = []
        ) {
            self.channelOrder = channelOrder
            self.rawScale = rawScale
            self.scale = scale
            self.mean = mean
            self.std = std
        }
    }

    /// A rectangle in output pixels.
    package struct Rect: Equatable, Hashable, Sendable {
        package var y0: UInt32, x0: UInt32, height: UInt32, width: UInt32
        package init(y0: UInt32, x0: UInt32, height: UInt32, width: UInt32) {
            self.y0 = y0; self.x0 = x0; self.height = height; self.width = width
        }
    }

    /// Identifies one task of one job.
    package struct TaskRef: Hashable, Sendable {
        package var jobID: UInt64
        package var taskID: UInt64
        package init(jobID: UInt64, taskID: UInt64) { self.jobID = jobID; self.taskID = taskID }
    }

    /// A block of input pixels: `height × width × channels` samples, interleaved
    /// (HWC), each `bytesPerSample` bytes (1 = UInt8, 2 = UInt16 little-endian).
    package struct PixelRegion: Equatable, Sendable {
        package var height: UInt32, width: UInt32, channels: UInt32, bytesPerSample: UInt8
        package var pixels: [UInt8]
        package init(height: UInt32, width: UInt32, channels: UInt32, bytesPerSample: UInt8, pixels: [UInt8]) {
            self.height = height; self.width = width; self.channels = channels
            self.bytesPerSample = bytesPerSample; self.pixels = pixels
        }
    }

    // MARK: Worker → coordinator

    /// A worker's first message: who it is and what it can do.
    package struct Hello: Equatable, Sendable {
        /// The protocol version the worker speaks (`WireMessage.version`).
        package var protocolVersion: UInt8
        package var workerName: String
        package var threads: UInt32
        package var memoryBytes: UInt64
        /// "cpu", "cuda:0"…
        package var device: String
        package init(
            protocolVersion: UInt8 = WireMessage.version, workerName: String, threads: UInt32,
            memoryBytes: UInt64, device: String
        ) {
            self.protocolVersion = protocolVersion; self.workerName = workerName; self.threads = threads
            self.memoryBytes = memoryBytes; self.device = device
        }
    }

    /// A task's output: `classes × height × width` float32 values, row-major per class.
    package struct TaskResult: Equatable, Sendable {
        package var jobID: UInt64, taskID: UInt64, attempt: UInt32
        package var classes: UInt32, height: UInt32, width: UInt32
        package var values: [Float]
        package init(
            jobID: UInt64, taskID: UInt64, attempt: UInt32, classes: UInt32, height: UInt32, width: UInt32,
            values: [Float]
        ) {
            self.jobID = jobID; self.taskID = taskID; self.attempt = attempt
            self.classes = classes; self.height = height; self.width = width; self.values = values
        }
    }

    /// A task the worker could not run.
    package struct TaskFailure: Equatable, Sendable {
        /// How `message` begins when the input image's data for the task is damaged
        /// (`SlideError.isCorruptData`): any worker would fail the same way.
        package static let corruptInput = "corrupt input: "
        /// The prefix of the message of a task its worker could not decode (the `WireError` follows).
        package static let unreadable = "the worker could not read the task: "
        /// The message of a task dropped before it started because its job ended (`revoke`).
        package static let revoked = "revoked: its job ended before the task started"
        package var jobID: UInt64, taskID: UInt64, attempt: UInt32
        package var message: String
        package init(jobID: UInt64, taskID: UInt64, attempt: UInt32, message: String) {
            self.jobID = jobID; self.taskID = taskID; self.attempt = attempt; self.message = message
        }
    }

    // MARK: Coordinator → worker

    /// The coordinator's answer to `hello`: the heartbeat contract and the credit.
    package struct Welcome: Equatable, Sendable {
        package var heartbeatIntervalMilliseconds: UInt32
        /// Missed intervals before a peer is declared dead.
        package var heartbeatLiveness: UInt32
        /// Tasks the worker may hold at once.
        package var maxTasksInFlight: UInt32
        package init(
            heartbeatIntervalMilliseconds: UInt32 = 1000, heartbeatLiveness: UInt32 = 3,
            maxTasksInFlight: UInt32 = 2
        ) {
            self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
            self.heartbeatLiveness = heartbeatLiveness
            self.maxTasksInFlight = maxTasksInFlight
        }
    }

    /// One self-contained unit of work (docs/ARCHITECTURE.md §4).
    package struct TaskSpec: Equatable, Sendable {
        package var jobID: UInt64, taskID: UInt64, attempt: UInt32
        package var modelDigest: ModelDigest
        package var mode: Mode
        /// The output pixels this task produces.
        package var outputRect: Rect
        /// `shift` only: the pass's displacement (each below the net's stride); (0, 0) otherwise.
        package var displacementY: UInt32, displacementX: UInt32
        /// The whole image's size (nets that pad need it to pad where the whole-image pass does).
        package var imageHeight: UInt32, imageWidth: UInt32
        /// The padded input pixels the output rect needs.
        package var input: PixelRegion
        package var preprocessing: Preprocessing
        /// Opaque engine settings (small).
        package var options: [UInt8]
        /// The net classes the result keeps, in order (`--keep-classes`); empty: every class.
        /// The worker drops the others before the values travel.
        package var keptClasses: [UInt32]

        package init(
            jobID: UInt64, taskID: UInt64, attempt: UInt32, modelDigest: ModelDigest, mode: Mode,
            outputRect: Rect, displacementY: UInt32 = 0, displacementX: UInt32 = 0,
            imageHeight: UInt32 = 0, imageWidth: UInt32 = 0, input: PixelRegion,
            preprocessing: Preprocessing, options: [UInt8] = [], keptClasses: [UInt32] = []
        ) {
            self.jobID = jobID; self.taskID = taskID; self.attempt = attempt; self.modelDigest = modelDigest
            self.mode = mode; self.outputRect = outputRect; self.displacementY = displacementY
            self.displacementX = displacementX; self.imageHeight = imageHeight; self.imageWidth = imageWidth
            self.input = input; self.preprocessing = preprocessing
            self.options = options; self.keptClasses = keptClasses
        }

        package var ref: TaskRef { TaskRef(jobID: jobID, taskID: taskID) }
    }

    /// A shared-storage task (docs/ARCHITECTURE.md §7): one map tile of an image that
    /// the worker reads itself, written by the worker into the job's map store.
    package struct TileTaskSpec: Equatable, Sendable {
        package var jobID: UInt64, taskID: UInt64, attempt: UInt32
        package var modelDigest: ModelDigest
        package var mode: Mode
        /// The map tile (map pixels at the mapped level): one chunk of the store.
        package var tile: Rect
        package var preprocessing: Preprocessing
        /// The image file, its image (from 1: `--image`, 1 for a file of one image) and the
        /// image's pyramid level, on storage the worker shares.
        package var imagePath: String
        package var image: UInt32
        package var level: UInt32
        /// The job's map store folder (its layout says the tile size, classes and dtype).
        package var storePath: String
        /// Opaque engine settings (small).
        package var options: [UInt8]

        package init(
            jobID: UInt64, taskID: UInt64, attempt: UInt32, modelDigest: ModelDigest, mode: Mode, tile: Rect,
            preprocessing: Preprocessing, imagePath: String, image: UInt32 = 1, level: UInt32, storePath: String,
            options: [UInt8]
        ) {
            self.jobID = jobID; self.taskID = taskID; self.attempt = attempt; self.modelDigest = modelDigest
            self.mode = mode; self.tile = tile; self.preprocessing = preprocessing; self.imagePath = imagePath
            self.image = image; self.level = level; self.storePath = storePath; self.options = options
        }

        /// The u32 after the image path: the level in bits 0–15 and `image − 1` in bits 16–31. Image 1's
        /// field is the level alone, as before images could be chosen; any other image's exceeds 64, the
        /// level a build before images accepts at most, so such a build refuses the task (naming it, so
        /// the worker reports it failed) instead of mapping image 1 (docs/ARCHITECTURE.md §8).
        package var levelField: UInt32 { level | (image &- 1) << 16 }

        /// The largest image a task names (16 bits of `levelField`).
        package static let maxImage: UInt32 = 1 << 16

        package var ref: TaskRef { TaskRef(jobID: jobID, taskID: taskID) }
    }

    /// What a shared-storage task wrote: one record per pyramid level of its tile.
    package struct TileReceipt: Equatable, Sendable {
        package struct Chunk: Equatable, Sendable {
            /// Path relative to the store.
            package var key: String
            package var size: UInt64
            package var crc32: UInt32
            package init(key: String, size: UInt64, crc32: UInt32) {
                self.key = key; self.size = size; self.crc32 = crc32
            }
        }
        package var jobID: UInt64, taskID: UInt64, attempt: UInt32
        package var chunks: [Chunk]
        package init(jobID: UInt64, taskID: UInt64, attempt: UInt32, chunks: [Chunk]) {
            self.jobID = jobID; self.taskID = taskID; self.attempt = attempt; self.chunks = chunks
        }
    }

    /// A model's files, sent to a worker that asked with `modelRequest`.
    package struct ModelData: Equatable, Sendable {
        package var digest: ModelDigest
        package var prototxt: [UInt8]
        package var weights: [UInt8]
        package init(digest: ModelDigest, prototxt: [UInt8], weights: [UInt8]) {
            self.digest = digest; self.prototxt = prototxt; self.weights = weights
        }
    }

    // MARK: Client ↔ coordinator

    /// A file either uploaded with the message or named by a path the coordinator can read.
    package enum FileSource: Equatable, Sendable {
        /// The bytes travel in a frame; `name` is the original file name (for outputs).
        case inline(name: String, bytes: [UInt8])
        /// A path on the coordinator's machine.
        case path(String)
    }

    /// A job as a client submits it.
    package struct JobSpec: Equatable, Sendable {
        package var mode: Mode
        package var tileSize: UInt32
        package var preprocessing: Preprocessing
        /// Output options, in the CLI's syntax (opaque here).
        package var outputOptions: String
        package var prototxt: FileSource
        package var weights: FileSource
        package var image: FileSource
        package init(
            mode: Mode, tileSize: UInt32, preprocessing: Preprocessing, outputOptions: String,
            prototxt: FileSource, weights: FileSource, image: FileSource
        ) {
            self.mode = mode; self.tileSize = tileSize; self.preprocessing = preprocessing
            self.outputOptions = outputOptions; self.prototxt = prototxt; self.weights = weights; self.image = image
        }
    }

    /// A job's life cycle.
    package enum JobState: UInt8, Sendable, CaseIterable {
        case queued = 0, running = 1, done = 2, failed = 3, cancelled = 4, unknown = 5
    }

    /// The coordinator's answer to `statusRequest` (for a job, or the cluster when `jobID` is nil).
    package struct JobStatus: Equatable, Sendable {
        /// How the message of a `cancel`'s reply begins when the job had already ended
        /// (done, failed or cancelled before): nothing was cancelled.
        package static let endedBeforeCancel = "had ended before this cancel: "
        /// What a done job's message says when map tiles were left empty for damaged input (`--corrupt-tiles skip`).
        package static let emptyTilesNote = "left empty (fill value)"
        /// How an active job's message begins while the coordinator's store cannot write its map tiles.
        package static let storeWaitNote = "waiting for the coordinator's store"
        package var jobID: UInt64?
        package var state: JobState
        package var tasksQueued: UInt64, tasksRunning: UInt64, tasksDone: UInt64, tasksFailed: UInt64
        package var workers: UInt32
        package var tasksPerSecond: Double
        package var pixelsPerSecond: Double
        /// A failure reason or note ("" if none).
        package var message: String
        /// Output files ready for `fetchRequest`.
        package var outputFiles: [String]
        /// The answer to a request with a `StatusQuery` (nil: a plain request's).
        package var details: StatusDetails?
        package init(
            jobID: UInt64?, state: JobState, tasksQueued: UInt64 = 0, tasksRunning: UInt64 = 0,
            tasksDone: UInt64 = 0, tasksFailed: UInt64 = 0, workers: UInt32 = 0, tasksPerSecond: Double = 0,
            pixelsPerSecond: Double = 0, message: String = "", outputFiles: [String] = [],
            details: StatusDetails? = nil
        ) {
            self.jobID = jobID; self.state = state; self.tasksQueued = tasksQueued; self.tasksRunning = tasksRunning
            self.tasksDone = tasksDone; self.tasksFailed = tasksFailed; self.workers = workers
            self.tasksPerSecond = tasksPerSecond; self.pixelsPerSecond = pixelsPerSecond
            self.message = message; self.outputFiles = outputFiles; self.details = details
        }
    }

    /// Asks for up to `maxBytes` of an output file from `offset`.
    package struct FetchRequest: Equatable, Sendable {
        package var jobID: UInt64
        package var fileName: String
        package var offset: UInt64
        package var maxBytes: UInt32
        package init(jobID: UInt64, fileName: String, offset: UInt64 = 0, maxBytes: UInt32 = 1 << 20) {
            self.jobID = jobID; self.fileName = fileName; self.offset = offset; self.maxBytes = maxBytes
        }
    }

    /// A part of an upload job's raw image (`JobOptions.rawImage`): `bytes` belong at
    /// `offset`; parts come in order, and the `last` one completes the image.
    package struct UploadPart: Equatable, Sendable {
        package var jobID: UInt64
        package var offset: UInt64
        /// CRC-32 of `bytes`: a part damaged on the way is refused, not stored.
        package var crc32: UInt32
        package var last: Bool
        package var bytes: [UInt8]
        package init(jobID: UInt64, offset: UInt64, crc32: UInt32, last: Bool, bytes: [UInt8]) {
            self.jobID = jobID; self.offset = offset; self.crc32 = crc32; self.last = last; self.bytes = bytes
        }
    }

    /// One chunk of an output file: `bytes` start at `offset` of a `totalSize`-byte file.
    package struct FetchChunk: Equatable, Sendable {
        package var jobID: UInt64
        package var fileName: String
        package var offset: UInt64
        package var totalSize: UInt64
        package var bytes: [UInt8]
        package init(jobID: UInt64, fileName: String, offset: UInt64, totalSize: UInt64, bytes: [UInt8]) {
            self.jobID = jobID; self.fileName = fileName; self.offset = offset; self.totalSize = totalSize
            self.bytes = bytes
        }
        /// True when this chunk reaches the end of the file.
        package var isLast: Bool { offset + UInt64(bytes.count) == totalSize }
    }
}
