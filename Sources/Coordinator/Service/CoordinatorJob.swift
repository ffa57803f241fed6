import Foundation
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraModel
import TesseraPlan
import TesseraWire

/// One job as the coordinator tracks it: one image, one model, its planned tasks,
/// which of them are queued, running (on which worker) or done, and the assembler
/// that collects the results.
///
/// Made by the `JobFactory` on the preparation queue and handed to the loop thread
/// once (through `CoordinatorLoop.prepared`); from then on only the loop thread
/// touches it, hence `@unchecked Sendable`.
final class CoordinatorJob: @unchecked Sendable {
    /// One dispatch of a task to a worker.
    struct Attempt: Equatable {
        let worker: RoutingID
        let number: UInt32
        let since: Double
        /// The seconds of work it was charged when sent (`FairShare`).
        var estimate: Double = 0
    }

    enum TaskState: Equatable {
        case pending
        /// On one worker, or two once a straggler got a copy elsewhere (first result wins).
        case running([Attempt])
        case done
    }

    let id: UInt64
    let options: JobOptions
    let mode: MapMode
    let tile: Int
    /// The model's files while the job is active (workers ask for them by digest);
    /// an ended job keeps only the digest (`releaseModel`).
    private(set) var model: ModelBundle
    let settingsBytes: [UInt8]
    let plan: ModelPlan
    let preprocessing: Wire.Preprocessing
    /// Upload jobs: the image (raw samples on disk, read a task's region at a time)
    /// and the map assembled tile by tile into a raw store (`UploadMap`); released
    /// once the outputs are written.
    var image: RawPixelFile?
    var map: UploadMap?
    /// Every tile is in and its outputs are being written (`finish`): too late to cancel.
    var finishing = false
    /// An upload job whose outputs did not fit the store waits for room (`CoordinatorLoop.waitForRoom`); such a job
    /// can be cancelled.
    var outputsWait: OutputsWait?
    /// Shared-storage jobs: where workers read and write (docs/ARCHITECTURE.md §7).
    var shared: SharedJobFiles?
    /// The CURVE key name that submitted it (see `JobRecord.owner`).
    var owner: String?
    /// Receipt journal lines (`ReceiptJournal`) not yet committed to the store.
    var journalUnsynced: [String] = []
    /// Shared jobs: the chunks each done tile's receipt named (received or verified at resume), which
    /// `finishShared` checks are still there as written before it calls the map done.
    var receipts: [Int: [TileReceipt.Chunk]] = [:]
    /// Upload jobs: finished map tiles handed to the store queue and not yet known
    /// written, tiles whose write failed (a full disk), kept to be written again, and
    /// how many of those are being written again.
    var unwritten = 0
    var heldTiles: [UploadMap.FinishedTile] = []
    var retrying = 0
    let imageSize: Size2
    let stem: String
    let directory: String
    let outputDirectory: String
    let tasks: [TileTask]
    var states: [TaskState]
    /// Queued task indices; the last one is dispatched next (requeued tasks go last, so first).
    var pending: [Int]
    var running = 0
    var done = 0
    var attempts: [Int: UInt32] = [:]
    var failures: [Int: [String]] = [:]
    /// Per task, the workers it failed on (retries go to others while others are connected).
    var failedOn: [Int: Set<RoutingID>] = [:]
    /// Per failed task, the monotonic time before which it is not sent again
    /// (`CoordinatorLoop.retryDelay`): a passing fault gets time to pass.
    var retryAt: [Int: Double] = [:]
    /// Tasks left undone because their input is damaged (`JobOptions.skipCorruptTiles`),
    /// with the reason, in the order they were given up; and the note before the first.
    var corruptSkipped: [(index: Int, reason: String)] = []
    var noteBeforeSkips: String?
    /// Per task, the lost workers it was in flight on: see `maxTaskLosses`; and how many losses were
    /// withdrawn because their worker came back (`CoordinatorLoop.returned`).
    var losses: [Int: [Loss]] = [:]
    var withdrawnLosses: [Int: Int] = [:]

    /// A worker lost while it held a task: "name (reason)", and its process (`WorkerIdentity`), whose return
    /// withdraws the loss.
    struct Loss {
        var text: String
        var process: UInt64?
        var key: String?
    }
    /// `queued` until a task of it is first handed to a worker (or its last task is
    /// restored from the store), then `running`: a listing tells the jobs waiting their
    /// turn, or for a worker, from those computing.
    var state: Wire.JobState = .queued
    var message = ""
    /// A worker's refusal of this shared-storage job's files as outside its `--shared-root`, kept for the
    /// job's status while no connected worker can reach them.
    var outOfReach: String?
    var outputFiles: [String] = []
    let started = monotonicSeconds()
    /// Monotonic seconds when it ended; setting it stamps `ended`.
    var finished: Double? {
        didSet { ended = finished.map { _ in Date().timeIntervalSince1970 } }
    }
    /// Unix seconds it was submitted (a resumed job: when its record was written) and ended.
    var submitted = Date().timeIntervalSince1970
    private(set) var ended: Double?
    /// Its completions over the coordinator's rate window (`CoordinatorLoop.register` sets the window).
    var rate = RateWindow(seconds: 30)
    var workersUsed: Set<String> = []
    /// Tiles read back from the store at a restart (not recomputed).
    var restored = 0
    /// Restored from the store by a restarted coordinator (begun by an earlier one).
    var resumed = false
    /// Tiles computed by workers in this coordinator's life.
    var computed = 0
    /// Copies sent for overdue tasks, and results dropped because another copy won.
    var copiesSent = 0
    var duplicatesDropped = 0
    /// Seconds of worker time given to it (`FairShare`), and what its tasks measured per map pixel (an
    /// average of the recent ones; nil before the first is done).
    var given = 0.0
    var secondsPerPixel: Double?
    /// Dispatch → result seconds of recent tasks, and the straggler deadline they give.
    private(set) var taskTimes: [Double] = []
    /// Nil until `minSamples` tasks are measured: `StragglerPolicy.unmeasuredSeconds` then, once none waits.
    private(set) var taskDeadline: Double?

    private var taskTimesNext = 0
    private var samplesSinceDeadline = 0

    /// Keeps the last `StragglerPolicy.window` task times (a ring) and refreshes the
    /// deadline: at every sample while there are few, then every 16th (a sort of the
    /// window per completion would cost more than the rest of handling it).
    func recordTaskTime(_ seconds: Double, policy: StragglerPolicy) {
        if taskTimes.count < StragglerPolicy.window {
            taskTimes.append(seconds)
        } else {
            taskTimes[taskTimesNext] = seconds
            taskTimesNext = (taskTimesNext + 1) % StragglerPolicy.window
        }
        samplesSinceDeadline += 1
        if taskTimes.count < 64 || samplesSinceDeadline >= 16 || taskDeadline == nil {
            samplesSinceDeadline = 0
            taskDeadline = policy.deadline(samples: taskTimes)
        }
    }

    init(
        id: UInt64, options: JobOptions, mode: MapMode, tile: Int, model: ModelBundle, plan: ModelPlan,
        preprocessing: Wire.Preprocessing, image: RawPixelFile?, imageSize: Size2, shared: SharedJobFiles? = nil,
        stem: String, directory: String, outputDirectory: String, tasks: [TileTask]
    ) {
        self.id = id
        self.options = options
        self.mode = mode
        self.tile = tile
        self.model = model
        settingsBytes = options.engine.forWorkers(of: plan).encoded
        self.plan = plan
        self.preprocessing = preprocessing
        self.image = image
        self.imageSize = imageSize
        self.shared = shared
        self.stem = stem
        self.directory = directory
        self.outputDirectory = outputDirectory
        self.tasks = tasks
        mappedPixels =
            shared != nil ? tasks.reduce(0) { $0 + $1.rect.height * $1.rect.width } : imageSize.h * imageSize.w
        states = Array(repeating: .pending, count: tasks.count)
        pending = Array((0..<tasks.count).reversed())
    }

    var isActive: Bool { state == .running || state == .queued }

    /// The map pixels the job computes: a shared job's tiles (the tissue tiles with
    /// `--tissue`), else the whole image.
    let mappedPixels: Int

    /// Drops the model's bytes once the job has ended: only active jobs' models are
    /// sent to workers, and a restart reads them from the store, so an ended job
    /// costs no model memory (about 1.5 MB each for a typical net otherwise).
    func releaseModel() {
        if model.byteCount > 0 { model = model.withoutFiles }
    }

    func status(workers: Int) -> Wire.JobStatus {
        let (tasksPerSecond, pixelsPerSecond) = rates()
        return Wire.JobStatus(
            jobID: id, state: state, tasksQueued: UInt64(pending.count), tasksRunning: UInt64(running),
            tasksDone: UInt64(done), tasksFailed: UInt64(failures.count), workers: UInt32(workers),
            tasksPerSecond: tasksPerSecond, pixelsPerSecond: pixelsPerSecond,
            message: message, outputFiles: outputFiles.map { ($0 as NSString).lastPathComponent })
    }

    /// Tasks and map pixels per second: an active job's over the rate window (0 once
    /// nothing completes), an ended job's average over its run in this coordinator's life.
    /// Both count the tiles computed, not those restored from the store, and the map
    /// pixels of the job's tiles (with --tissue, not the skipped ones).
    func rates() -> (tasks: Double, pixels: Double) {
        if isActive { return rate.rates(at: monotonicSeconds(), since: started) }
        let elapsed = max(1e-6, (finished ?? monotonicSeconds()) - started)
        let computed = max(0, done - restored - corruptSkipped.count)
        let fraction = Double(computed) / Double(max(1, tasks.count))
        return (Double(computed) / elapsed, fraction * Double(mappedPixels) / elapsed)
    }

    /// The job in a detailed status; `holders`: the workers holding its tasks,
    /// `connected`: the connected workers that may take its tasks.
    func summary(holders: Int, connected: Int) -> Wire.JobSummary {
        let (tasksPerSecond, pixelsPerSecond) = rates()
        return Wire.JobSummary(
            id: id, state: state, image: stem, owner: owner ?? "", tasks: UInt64(tasks.count),
            queued: UInt64(pending.count), running: UInt64(running), done: UInt64(done),
            failed: UInt64(failures.count), workers: UInt32(holders), tasksPerSecond: tasksPerSecond,
            pixelsPerSecond: pixelsPerSecond, submitted: submitted, ended: ended ?? 0,
            waitingForWorkers: isActive && !finishing && connected == 0, message: message)
    }

    /// The message that hands task `index` to a worker: for a shared-storage job the
    /// tile's coordinates and paths, else its input pixels cut from the image.
    /// The net classes an upload job's results keep, ascending (`--keep-classes`); nil: every class.
    var keptClasses: [Int]? {
        options.keptClasses.flatMap { $0 == Array(0..<plan.classes) ? nil : $0 }
    }

    /// The planes of an upload job's results (and of its map).
    var resultClasses: Int { keptClasses?.count ?? plan.classes }

    func message(_ index: Int, attempt: UInt32) -> WireMessage? {
        guard let shared else { return spec(index, attempt: attempt).map { .task($0) } }
        guard let rect = TaskCodec.rect(tasks[index].rect) else { return nil }
        return .tileTask(
            Wire.TileTaskSpec(
                jobID: id, taskID: UInt64(index), attempt: attempt, modelDigest: model.digest,
                mode: TaskCodec.mode(mode), tile: rect, preprocessing: preprocessing, imagePath: shared.imagePath,
                image: UInt32(shared.image), level: UInt32(shared.level), storePath: shared.store.path,
                options: settingsBytes))
    }

    /// The wire task for task `index`, with its input pixels cut from the image
    /// (nil if the image cannot be read: the caller fails the job).
    func spec(_ index: Int, attempt: UInt32) -> Wire.TaskSpec? {
        guard let image, let rect = TaskCodec.rect(tasks[index]) else { return nil }
        let task = tasks[index]
        guard
            let input = try? TaskCodec.cut(
                image, paddedRect: plan.tasks.inputRect(task), halfPatch: plan.tasks.halfPatch)
        else { return nil }
        return Wire.TaskSpec(
            jobID: id, taskID: UInt64(index), attempt: attempt, modelDigest: model.digest,
            mode: TaskCodec.mode(mode), outputRect: rect,
            displacementY: UInt32(task.displacement.h), displacementX: UInt32(task.displacement.w),
            imageHeight: UInt32(clamping: task.image.h), imageWidth: UInt32(clamping: task.image.w),
            input: input, preprocessing: preprocessing, options: settingsBytes,
            keptClasses: (keptClasses ?? []).map { UInt32($0) })
    }
}

/// What a shared-storage job reads and writes: the image (at one pyramid level) and
/// the map store the workers write their tiles into, under a temporary name until
/// the job is done, then renamed to `finalPath`.
struct SharedJobFiles {
    let imagePath: String
    /// The image file when the job was planned (or resumed): one replaced or rewritten while its tiles were mapped
    /// gives a map mixed from two images, so the job then fails (audit 53 F1: it ended "done").
    let imageIdentity: FileIdentity?
    /// The image of the file (from 1: `--image`) and its pyramid level.
    let image: Int
    let level: Int
    let store: MapStore
    let finalPath: String
    /// With `--tissue`: the share of the image's mask cells that hold tissue, and the
    /// map tiles left out for holding none.
    var tissue: (fraction: Double, skippedTiles: Int)?
    /// Held while the job is active, so that no other job takes the partial map for an orphan.
    var lock: PartialLock?
}
