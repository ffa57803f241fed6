import TesseraCore
import TesseraModel
import TesseraWire

/// One or more sample messages of every type, small enough to fuzz quickly.
enum WireSamples {
    static let digest = Wire.ModelDigest(bytes: (0..<32).map { UInt8($0 * 7 & 0xFF) })!
    static let preprocessing = Wire.Preprocessing(
        channelOrder: .bgr, rawScale: 255, scale: 0.017,
        mean: [104, 117, 123])

    static func task(mode: Wire.Mode = .shift, bytesPerSample: UInt8 = 1) -> Wire.TaskSpec {
        let (h, w, c) = (UInt32(6), UInt32(5), UInt32(3))
        let count = Int(h * w * c) * Int(bytesPerSample)
        return Wire.TaskSpec(
            jobID: 7, taskID: 42, attempt: 2, modelDigest: digest, mode: mode,
            outputRect: Wire.Rect(y0: 8, x0: 16, height: 2, width: 3),
            displacementY: mode == .shift ? 1 : 0, displacementX: mode == .shift ? 3 : 0, imageHeight: 40,
            imageWidth: 37,
            input: Wire.PixelRegion(
                height: h, width: w, channels: c, bytesPerSample: bytesPerSample,
                pixels: (0..<count).map { UInt8($0 & 0xFF) }),
            preprocessing: preprocessing, options: [1, 2, 3, 4], keptClasses: [0, 2])
    }

    static let result = Wire.TaskResult(
        jobID: 7, taskID: 42, attempt: 2, classes: 2, height: 2, width: 3,
        values: [0, 1, 0.25, -0.5, 1e-7, 3.5, 2, 4, 8, 16, 32, .pi])

    static let all: [WireMessage] = [
        .hello(Wire.Hello(workerName: "gpu-box-1 ⚡", threads: 8, memoryBytes: 64 << 30, device: "cuda:0")),
        .heartbeat,
        .result(result),
        .taskFailed(Wire.TaskFailure(jobID: 7, taskID: 43, attempt: 1, message: "engine: out of memory")),
        .modelRequest(digest),
        .goodbye([Wire.TaskRef(jobID: 7, taskID: 44), Wire.TaskRef(jobID: 9, taskID: 1)]),
        .goodbye([]),
        .piece(Wire.Piece(frameSizes: [60, 1_000_000], offset: 262_144, bytes: [1, 2, 3, 4])),
        .welcome(Wire.Welcome(heartbeatIntervalMilliseconds: 1000, heartbeatLiveness: 3, maxTasksInFlight: 2)),
        .task(task()),
        .task(task(mode: .dense, bytesPerSample: 2)),
        .modelData(Wire.ModelData(digest: digest, prototxt: Array("name: \"net\"\n".utf8), weights: [9, 8, 7, 6, 5])),
        .disconnect(reason: "coordinator restarting"),
        .revoke(jobID: 0x0102_0304_0506_0708),
        .tileTask(
            Wire.TileTaskSpec(
                jobID: 7, taskID: 45, attempt: 1, modelDigest: digest, mode: .fast,
                tile: Wire.Rect(y0: 512, x0: 1024, height: 512, width: 300), preprocessing: preprocessing,
                imagePath: "/shared/slides/case 12 ⏎.svs", level: 1, storePath: "/shared/out/.case.zarr.partial-x",
                options: [1, 2])),
        // Image 3 of a multi-image file (`--image 3`): in the level field's high bits.
        .tileTask(
            Wire.TileTaskSpec(
                jobID: 7, taskID: 46, attempt: 1, modelDigest: digest, mode: .dense,
                tile: Wire.Rect(y0: 0, x0: 0, height: 64, width: 64), preprocessing: preprocessing,
                imagePath: "/shared/slides/scenes.ome.tif", image: 3, level: 0, storePath: "/shared/out/.s.zarr",
                options: [1, 2])),
        .receipt(
            Wire.TileReceipt(
                jobID: 7, taskID: 45, attempt: 1,
                chunks: [
                    .init(key: "0/0/1/2", size: 123_456, crc32: 0xDEAD_BEEF), .init(key: "1/0/1/2", size: 77, crc32: 1),
                ])),
        .submit(
            Wire.JobSpec(
                mode: .dense, tileSize: 512, preprocessing: preprocessing, outputOptions: "png,npy",
                prototxt: .inline(name: "deploy.prototxt", bytes: Array("layer {}".utf8)),
                weights: .path("/models/net.caffemodel"),
                image: .inline(name: "slide.png", bytes: [0x89, 0x50, 0x4E, 0x47]))),
        .submit(
            Wire.JobSpec(
                mode: .fast, tileSize: 1024, preprocessing: Wire.Preprocessing(), outputOptions: "",
                prototxt: .path("a.prototxt"), weights: .path("a.caffemodel"), image: .path("a.png"))),
        // torchvision's preprocessing: a per-channel std (bit 7 of the channel-order byte).
        .submit(
            Wire.JobSpec(
                mode: .dense, tileSize: 256,
                preprocessing: Wire.Preprocessing(
                    channelOrder: .rgb, rawScale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]),
                outputOptions: "", prototxt: .inline(name: "net.onnx", bytes: [0x08, 0x07]),
                weights: .inline(name: "weights.caffemodel", bytes: []), image: .path("a.png"))),
        .submitted(jobID: 12),
        .statusRequest(jobID: 12),
        .statusRequest(jobID: nil),
        .status(
            Wire.JobStatus(
                jobID: 12, state: .running, tasksQueued: 10, tasksRunning: 3, tasksDone: 87,
                tasksFailed: 1, workers: 3, tasksPerSecond: 12.5, pixelsPerSecond: 3.2e6,
                message: "", outputFiles: ["slide.npy", "slide-labels.png"])),
        .status(Wire.JobStatus(jobID: nil, state: .unknown, workers: 4)),
        // The detailed status (flags bit 1): a query, and a reply with its details.
        .statusRequest(jobID: nil, query: Wire.StatusQuery(states: 0b11000, allEnded: true, owner: "alice")),
        .statusRequest(jobID: 12, query: Wire.StatusQuery()),
        .status(WireSamples.detailedStatus),
        .cancel(jobID: 12),
        .fetchRequest(Wire.FetchRequest(jobID: 12, fileName: "slide.npy", offset: 1 << 20, maxBytes: 1 << 20)),
        .fetchData(
            Wire.FetchChunk(jobID: 12, fileName: "slide.npy", offset: 4, totalSize: 10, bytes: [1, 2, 3, 4, 5, 6])),
        .error(message: "unknown job 99"),
        .uploadPart(Wire.UploadPart(jobID: 7, offset: 1 << 33, crc32: 0xCAFE_F00D, last: true, bytes: [1, 2, 3])),
        .uploadAck(jobID: 7, received: 123_456_789_012),
    ]

    /// A cluster's detailed status: two listed jobs (one active, waiting for workers), a worker, the counts.
    static let detailedStatus = Wire.JobStatus(
        jobID: nil, state: .running, tasksQueued: 40, tasksRunning: 0, tasksDone: 24, workers: 1,
        tasksPerSecond: 0, message: "",
        details: Wire.StatusDetails(
            jobs: [
                Wire.JobSummary(
                    id: 11, state: .running, image: "ihc", owner: "alice", tasks: 64, queued: 40, done: 24,
                    tasksPerSecond: 0, submitted: 1_796_000_000.5, waitingForWorkers: true),
                Wire.JobSummary(
                    id: 12, state: .failed, image: "b\u{1F600}", owner: "", tasks: 8, done: 7, failed: 1,
                    tasksPerSecond: 1.5, pixelsPerSecond: 2e6, submitted: 1_796_000_100, ended: 1_796_000_160,
                    message: "task 3 failed 3 times"),
            ],
            workers: [Wire.WorkerSummary(name: "gpu-1", threads: 16, inFlight: 2, tasksDone: 1234)],
            jobCounts: [0, 1, 5, 1, 2], matched: 9, activeJobs: 3, rateWindowSeconds: 30))
}

extension WireSamples {
    /// The pieces a sender (`WireOutbox`) cuts the message `frames` into: `Wire.pieceBytes` each, laid end to end.
    static func pieces(_ frames: [[UInt8]]) -> [Wire.Piece] {
        let sizes = frames.map { UInt64($0.count) }
        let bytes = frames.flatMap { $0 }
        return stride(from: 0, to: bytes.count, by: Wire.pieceBytes).map {
            Wire.Piece(
                frameSizes: sizes, offset: UInt64($0), bytes: Array(bytes[$0..<min($0 + Wire.pieceBytes, bytes.count)]))
        }
    }
}
