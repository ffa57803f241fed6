import Foundation
import TesseraCluster
import TesseraCore
import TesseraEngine
import TesseraImage
import TesseraModel
import TesseraWire

/// The compute thread: takes tasks from the queue, runs them on an engine cached per
/// (model, settings), and posts each outcome to the outbox, waking the socket thread.
/// An outcome of an earlier session (a generation ago) is dropped: that coordinator
/// has requeued the task already.
extension WorkerAgent {
    /// The compute thread's body: reports through `started` whether it could connect its
    /// wake-up pipe (`run()` waits for that and stops the worker if not), then serves.
    func computeLoop(started: Locked<Result<Void, any Error>?>) {
        do {
            let wake = try connectWake()
            started.withLockWakingWaiters { $0 = .success(()) }
            computeLoop(wake)
        } catch {
            logger.critical("cannot connect the compute thread's wake-up pipe", metadata: ["error": "\(error)"])
            started.withLockWakingWaiters { $0 = .failure(error) }
        }
    }

    private func connectWake() throws -> ZMQSocket {
        if let fault = computeStartFault.withLock({ $0 }) { throw fault }
        let wake = try ZMQSocket(context, type: .push)
        try wake.set(.maxMessageSize, 1024)
        try wake.connect(wakeEndpoint)
        return wake
    }

    private func computeLoop(_ wake: borrowing ZMQSocket) {
        var engines = LRUCache<String, MapEngine>(capacity: 2)
        var files = SharedFiles(roots: configuration.sharedRoots)
        let prefetcher = RegionPrefetcher()
        while true {
            // No task for 30 s: the decoded PNGs go, so an idle worker holds none (memory audit 50 F3: four
            // 8000² PNGs, 1 GB, stayed after their jobs).
            // The freed heap goes back to the system then too (soak audit 56 F3: 469 MB stayed after one 1024² tile;
            // the heap is kept while tiles come, `MemoryTuning.keepLargeBuffers`).
            if !shared.wait(until: { !$0.queue.isEmpty || $0.stopRequested }, seconds: 30) {
                files.dropDecoded()
                MemoryTuning.releaseFreeMemory()
            }
            let next = shared.wait(until: { !$0.queue.isEmpty || $0.stopRequested }, then: Self.takeTask)
            guard let (item, bundle, gen) = next else { return }

            // Stopped during the delay: the task stays `computing`, returned by the goodbye.
            guard delayTask() else { return }
            let outcome: Outcome
            let started = monotonicSeconds()
            do {
                let engine = try self.engine(for: item, bundle, engines: &engines)
                switch item {
                case .pixels(let spec): outcome = .result(try compute(spec, engine))
                case .tile(let spec):
                    // Written by the writer thread while this one computes the next task.
                    let write = try compute(
                        spec, engine, files: &files, prefetcher: prefetcher, generation: gen, started: started)
                    guard handOver(write) else { return }
                    continue
                }
            } catch let error as SlideError where error.isCorruptData {
                outcome = .failure(item.failure(Wire.TaskFailure.corruptInput + "\(error)"))
            } catch {
                outcome = .failure(item.failure("\(error)"))
            }
            if case .failure = outcome {
                metrics.computed(ok: false, seconds: monotonicSeconds() - started)
            } else {
                metrics.computed(ok: true, seconds: monotonicSeconds() - started)
            }
            shared.withLock { s in
                s.computing = nil
                if gen == s.generation {
                    s.outbox.append(outcome)
                    if case .failure = outcome {} else { s.tasksDone += 1 }
                }
            }
            try? wake.send([[1]], flags: .dontWait)
        }
    }

    /// The test hook's delay before a task (`taskDelayMilliseconds`, at most a day), in
    /// slices so that a stopping worker does not sleep on; false if it is stopping.
    private func delayTask() -> Bool {
        let total = min(max(0, configuration.taskDelayMilliseconds), Self.maxTaskDelayMilliseconds)
        let until = monotonicSeconds() + Double(total) / 1000
        while !shouldStop {
            let left = until - monotonicSeconds()
            if left <= 0 { return true }
            Thread.sleep(forTimeInterval: min(left, 0.1))
        }
        return false
    }

    /// The oldest queued task, now the one being computed, and the session it is for;
    /// nil once stopping.
    private static func takeTask(_ s: inout Shared) -> (WorkItem, ModelBundle, Int)? {
        if s.stopRequested { return nil }
        let (spec, bundle) = s.queue.removeFirst()
        s.computing = spec.ref
        return (spec, bundle, s.generation)
    }

    /// The engine for a task's model and settings, built once and cached (the two used last).
    private func engine(
        for item: WorkItem, _ bundle: ModelBundle, engines: inout LRUCache<String, MapEngine>
    ) throws -> MapEngine {
        guard let settings = EngineSettings(encoded: item.options) else {
            throw ClusterError(EngineSettings.notUnderstood)
        }
        let key = item.modelDigest.hex + item.options.map { String($0) }.joined(separator: ".")
        if let e = engines.get(key) { return e }
        let engine = try MapEngine(plan: settings.plan(bundle).plan, device: configuration.device)
        engines.insert(engine, for: key)
        return engine
    }

    private func compute(_ spec: Wire.TaskSpec, _ engine: MapEngine) throws -> Wire.TaskResult {
        let task = TaskCodec.tileTask(spec)
        let expected = engine.tasks.inputRect(task)
        guard Int(spec.input.height) == expected.height, Int(spec.input.width) == expected.width else {
            throw ClusterError(
                "task input is \(spec.input.height)×\(spec.input.width), the engine needs "
                    + "\(expected.height)×\(expected.width)")
        }
        let pre = try TaskCodec.preprocessing(spec.preprocessing).validated(channels: engine.fcn.inputChannels)
        let mapping = try ChannelMapping.resolve(
            imageChannels: Int(spec.input.channels),
            netChannels: engine.fcn.inputChannels, order: pre.channelOrder)
        let input = TaskCodec.region(spec.input).tensor(
            mapping: mapping, preprocessing: pre, threads: configuration.threads)
        if let bad = spec.keptClasses.first(where: { Int($0) >= engine.classes }) {
            throw ClusterError("the task keeps class \(bad), and the net has \(engine.classes) classes")
        }
        let out = try engine.run(task, input: input, threads: configuration.threads)
        return Wire.TaskResult(
            jobID: spec.jobID, taskID: spec.taskID, attempt: spec.attempt,
            classes: UInt32(spec.keptClasses.isEmpty ? out.c : spec.keptClasses.count),
            height: UInt32(out.h), width: UInt32(out.w), values: Self.kept(spec.keptClasses, of: out))
    }

    /// The planes of `out` the task keeps, in order (every plane when `kept` is empty):
    /// only they travel back.
    static func kept(_ kept: [UInt32], of out: Tensor) -> [Float] {
        guard !kept.isEmpty else { return out.values }
        let plane = out.h * out.w
        return [Float](unsafeUninitializedCapacity: kept.count * plane) { buffer, initialized in
            for (i, c) in kept.enumerated() {
                (buffer.baseAddress! + i * plane).update(from: out.plane(Int(c)), count: plane)
            }
            initialized = kept.count * plane
        }
    }

    /// A shared-storage task: reads the tile's regions from the image and computes
    /// the map tile in any mode; the writer thread writes its chunks (`PendingWrite`).
    /// Both paths must lie under this worker's `--shared-root`.
    private func compute(
        _ spec: Wire.TileTaskSpec, _ engine: MapEngine, files: inout SharedFiles, prefetcher: RegionPrefetcher,
        generation: Int, started: Double
    ) throws -> PendingWrite {
        let pre = try TaskCodec.preprocessing(spec.preprocessing).validated(channels: engine.fcn.inputChannels)
        let store = try files.store(spec.storePath)
        let image = try files.image(
            spec.imagePath, image: Int(spec.image), level: Int(spec.level),
            warn: { [logger] in logger.warning("\($0)", metadata: ["image": "\(spec.imagePath)"]) })
        let layout = store.layout
        guard layout.height == image.height, layout.width == image.width, layout.netClasses == engine.classes else {
            throw ClusterError(
                "the store \(spec.storePath) is for a \(layout.netClasses)-class net and \(layout.width)×\(layout.height) pixels, but "
                    + "\(spec.imagePath)\(spec.image == 1 ? "" : " image \(spec.image)") level \(spec.level) is "
                    + "\(image.width)×\(image.height) and the net has \(engine.classes) classes"
                    + (layout.netClasses == engine.classes
                        ? " (was the image replaced since the job was planned?)" : ""))
        }
        let rect = TaskCodec.pixelRect(spec.tile)
        guard let tile = layout.tile(for: rect) else {
            throw ClusterError("\(rect) is not a tile of the \(layout.tileSize)-pixel store \(spec.storePath)")
        }
        let mapper = LocalMapper(engine: engine, preprocessing: pre, threads: configuration.threads)
        var counts = TileCounts()
        let ahead = prefetcher.take(spec)
        if ahead != nil { metrics.usedPrefetchedRegion() }
        readAhead(after: spec, engine, files: &files, prefetcher)
        let values = try mapper.computeTile(
            rect, of: image, mode: TaskCodec.mode(spec.mode), counts: &counts, prefetched: ahead)
        return PendingWrite(
            spec: spec, store: store, tile: tile, values: values.data, generation: generation, started: started)
    }

    /// Starts reading the next queued task's input, if it is a shared-storage tile of the
    /// same model and settings (so `engine` plans it), while this one computes.
    private func readAhead(
        after spec: Wire.TileTaskSpec, _ engine: MapEngine, files: inout SharedFiles, _ prefetcher: RegionPrefetcher
    ) {
        guard case .tile(let next)? = shared.withLock({ $0.queue.first?.0 }),
            next.modelDigest == spec.modelDigest, next.options == spec.options,
            let image = try? files.image(
                next.imagePath, image: Int(next.image), level: Int(next.level),
                warn: { [logger] in logger.warning("\($0)", metadata: ["image": "\(next.imagePath)"]) })
        else { return }
        prefetcher.start(next, image: image, engine: engine)
    }

    /// Hands a computed tile to the writer once its previous write is done (so at most
    /// one tile waits in memory); the task is then no longer `computing`. False if stopping.
    private func handOver(_ write: PendingWrite) -> Bool {
        let free = shared.wait(until: { $0.write == nil || $0.stopRequested }, then: { !$0.stopRequested })
        guard free else { return false }
        shared.withLockWakingWaiters { s in
            s.write = write
            s.computing = nil
        }
        return true
    }
}
