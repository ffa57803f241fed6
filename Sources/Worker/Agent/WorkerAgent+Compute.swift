import Foundation
import TesseraCluster
import TesseraCore
import TesseraEngine
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
        let wake = try ZMQSocket(context, type: .pair)
        try wake.set(.maxMessageSize, 1024)
        try wake.connect(wakeEndpoint)
        return wake
    }

    private func computeLoop(_ wake: borrowing ZMQSocket) {
        var engines: [String: MapEngine] = [:]
        while true {
            let next = shared.wait(until: { !$0.queue.isEmpty || $0.stopRequested }, then: Self.takeTask)
            guard let (spec, bundle, gen) = next else { return }

            // Stopped during the delay: the task stays `computing`, returned by the goodbye.
            guard delayTask() else { return }
            let outcome: Outcome
            let started = monotonicSeconds()
            do {
                outcome = .result(try compute(spec, bundle, engines: &engines))
            } catch {
                outcome = .failure(
                    Wire.TaskFailure(
                        jobID: spec.jobID, taskID: spec.taskID, attempt: spec.attempt,
                        message: "\(error)"))
            }
            if case .result = outcome {
                metrics.computed(ok: true, seconds: monotonicSeconds() - started)
            } else {
                metrics.computed(ok: false, seconds: monotonicSeconds() - started)
            }
            shared.withLock { s in
                s.computing = nil
                if gen == s.generation {
                    s.outbox.append(outcome)
                    if case .result = outcome { s.tasksDone += 1 }
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
    private static func takeTask(_ s: inout Shared) -> (Wire.TaskSpec, ModelBundle, Int)? {
        if s.stopRequested { return nil }
        let (spec, bundle) = s.queue.removeFirst()
        s.computing = spec.ref
        return (spec, bundle, s.generation)
    }

    private func compute(
        _ spec: Wire.TaskSpec, _ bundle: ModelBundle,
        engines: inout [String: MapEngine]
    ) throws -> Wire.TaskResult {
        guard let settings = EngineSettings(encoded: spec.options) else {
            throw ClusterError("task options are not engine settings this worker understands")
        }
        let key = spec.modelDigest.hex + spec.options.map { String($0) }.joined(separator: ".")
        let engine: MapEngine
        if let e = engines[key] {
            engine = e
        } else {
            engine = try MapEngine(plan: settings.plan(bundle).plan, device: configuration.device)
            if engines.count >= 2 { engines.removeAll() }
            engines[key] = engine
        }
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
        let input = TaskCodec.region(spec.input).tensor(mapping: mapping, preprocessing: pre)
        let out = try engine.run(task, input: input, threads: configuration.threads)
        return Wire.TaskResult(
            jobID: spec.jobID, taskID: spec.taskID, attempt: spec.attempt, classes: UInt32(out.c),
            height: UInt32(out.h), width: UInt32(out.w), values: out.values)
    }
}
