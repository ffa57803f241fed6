import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraEngine
import TesseraModel
import TesseraWire

/// A stateless worker: registers with a coordinator, heartbeats, fetches models it
/// lacks by digest (checking the digest), runs tasks on the engine and returns their
/// results. It keeps no job state: killed and restarted, it is a new worker.
///
/// Two threads: the socket thread (the caller of `run()`) owns the DEALER and never
/// computes, so heartbeats flow while a task runs; the compute thread takes tasks
/// from a lock-protected queue and posts outcomes to an outbox, waking the socket
/// thread through an inproc PAIR.
public final class WorkerAgent: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var coordinator: String
        public var name: String
        /// Engine threads per task.
        public var threads: Int
        public var heartbeat = Heartbeat()
        /// Test hook: sleep this long before each task (a slow worker, a job that lasts).
        public var taskDelayMilliseconds = 0
        /// CURVE keys (`WorkerAgent+Security`); nil: plain connection.
        public var curve: CurveClientSecurity?
        /// Where this worker computes its tiles.
        public var device: ComputeDevice = .cpu
        public init(coordinator: String, name: String, threads: Int) {
            self.coordinator = coordinator
            self.name = name
            self.threads = threads
        }
    }

    private enum Outcome {
        case result(Wire.TaskResult)
        case failure(Wire.TaskFailure)
    }

    public let configuration: Configuration
    private let logger: Logger
    private let context: ZMQContext
    private let wakeEndpoint = "inproc://tessera-worker-wake-\(UUID().uuidString)"

    // Shared between the two threads, under `lock`.
    private let lock = NSCondition()
    private var queue: [(Wire.TaskSpec, ModelBundle)] = []
    private var outbox: [Outcome] = []
    private var computing: Wire.TaskRef?
    private var stopRequested = false
    private var generation = 0

    public private(set) var tasksDone = 0

    public init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        context = try ZMQContext()
    }

    /// Asks `run()` to return (after saying goodbye with the unfinished tasks). Thread-safe.
    public func stop() {
        lock.lock()
        stopRequested = true
        lock.broadcast()
        lock.unlock()
    }

    private var shouldStop: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopRequested
    }

    /// Serves until `stop()`.
    public func run() throws {
        let wake = try ZMQSocket(context, type: .pair)
        try wake.set(.maxMessageSize, 1024)
        try wake.bind(wakeEndpoint)
        let compute = Thread { [self] in computeLoop() }
        compute.name = "tessera-compute"
        compute.start()
        defer {
            stop()
        }
        var backoff = 1.0
        while !shouldStop {
            let heardBack = try session(wake)
            if shouldStop { break }
            backoff = heardBack ? 1 : min(32, backoff * 2)
            logger.warning("coordinator lost: reconnecting", metadata: ["in": "\(backoff)s"])
            let until = monotonicSeconds() + backoff
            while !shouldStop && monotonicSeconds() < until { usleep(50_000) }
        }
    }

    /// One registration: connect, hello, serve until the coordinator goes silent or
    /// disconnects us. Returns whether the coordinator ever answered.
    private func session(_ wake: borrowing ZMQSocket) throws -> Bool {
        let socket = try ZMQSocket(context, type: .dealer)
        try socket.applyTesseraDefaults(maxMessageSize: 1 << 30)
        try secure(socket)
        var handshakes = try HandshakeWatch(socket, context: context, curve: configuration.curve != nil)
        try socket.connect(configuration.coordinator)
        lock.lock()
        generation += 1
        queue.removeAll()
        outbox.removeAll()
        lock.unlock()

        var hb = configuration.heartbeat
        var helloSent = false
        var welcomed = false
        var lastHeard = monotonicSeconds()
        var lastSent = 0.0
        var models: [Wire.ModelDigest: ModelBundle] = [:]
        var parked: [Wire.ModelDigest: [Wire.TaskSpec]] = [:]
        var pendingOut: [Outcome] = []
        var rejects = RateLimitedLog(logger: logger)
        let hello = WireMessage.hello(Wire.Hello(
            workerName: configuration.name, threads: UInt32(configuration.threads),
            memoryBytes: ProcessInfo.processInfo.physicalMemory, device: "cpu"))

        func trySend(_ m: WireMessage) -> Bool {
            do {
                try socket.send(m, flags: .dontWait)
                lastSent = monotonicSeconds()
                return true
            } catch {
                return false
            }
        }

        var poller = ZMQPoller()
        let si = poller.add(socket)
        let wi = poller.add(wake)
        while !shouldStop {
            if !helloSent {
                helloSent = trySend(hello)
                if !helloSent {
                    // Not connected yet: nothing else may go out before the hello.
                    handshakes.check(logger)
                    usleep(10_000)
                    if monotonicSeconds() - lastHeard > hb.deadline { return false }
                    continue
                }
            }
            try poller.poll(timeoutMilliseconds: min(100, hb.intervalMilliseconds))
            if poller.isReadable(wi) { while try wake.receiveIfAvailable() != nil {} }
            lock.lock()
            pendingOut += outbox
            outbox.removeAll()
            lock.unlock()
            while let first = pendingOut.first {
                let m: WireMessage = switch first {
                case .result(let r): .result(r)
                case .failure(let f): .taskFailed(f)
                }
                guard trySend(m) else { break }
                pendingOut.removeFirst()
            }
            if poller.isReadable(si) {
                while let envelope = try socket.receiveWire(dontWait: true) {
                    let message: WireMessage
                    switch envelope.message {
                    case .success(let m): message = m
                    case .failure(let e):
                        rejects.warning("malformed", "rejected a malformed message from the coordinator",
                                        metadata: ["reason": "\(e)"])
                        continue
                    }
                    lastHeard = monotonicSeconds()
                    switch message {
                    case .welcome(let w):
                        hb = Heartbeat(intervalMilliseconds: Int(w.heartbeatIntervalMilliseconds),
                                       liveness: Int(w.heartbeatLiveness))
                        if !welcomed {
                            logger.info("registered with the coordinator",
                                        metadata: ["coordinator": "\(configuration.coordinator)",
                                                   "credit": "\(w.maxTasksInFlight)"])
                        }
                        welcomed = true
                    case .heartbeat:
                        break
                    case .task(let spec):
                        if let bundle = models[spec.modelDigest] {
                            enqueue(spec, bundle)
                        } else {
                            if parked[spec.modelDigest] == nil { _ = trySend(.modelRequest(spec.modelDigest)) }
                            parked[spec.modelDigest, default: []].append(spec)
                        }
                    case .modelData(let data):
                        let bundle = ModelBundle(prototxt: data.prototxt, weights: data.weights)
                        guard bundle.digest == data.digest else {
                            rejects.warning("digest", "model data does not match its digest: ignored",
                                            metadata: ["digest": "\(data.digest)"])
                            continue
                        }
                        if models.count >= 4 { models.removeAll() }
                        models[data.digest] = bundle
                        logger.info("model received", metadata: ["digest": "\(data.digest.hex.prefix(12))",
                                                                 "bytes": "\(data.prototxt.count + data.weights.count)"])
                        for spec in parked.removeValue(forKey: data.digest) ?? [] { enqueue(spec, bundle) }
                    case .disconnect(let reason):
                        logger.warning("coordinator disconnected us", metadata: ["reason": "\(reason)"])
                        return true
                    case .error(let text):
                        logger.warning("coordinator error", metadata: ["message": "\(text)"])
                        // A model nobody serves: fail the parked tasks so they are not lost silently.
                        for (_, specs) in parked {
                            for s in specs {
                                _ = trySend(.taskFailed(Wire.TaskFailure(jobID: s.jobID, taskID: s.taskID,
                                                                         attempt: s.attempt, message: text)))
                            }
                        }
                        parked.removeAll()
                    default:
                        rejects.warning("unexpected", "unexpected message from the coordinator",
                                        metadata: ["type": "\(message.type)"])
                    }
                }
            }
            let now = monotonicSeconds()
            if now - lastSent >= hb.interval { _ = trySend(.heartbeat) }
            if now - lastHeard > hb.deadline {
                logger.warning("coordinator silent", metadata: ["seconds": "\(String(format: "%.1f", now - lastHeard))"])
                return welcomed
            }
        }
        // Leaving: return what is queued or running so the coordinator requeues it now.
        lock.lock()
        var refs = queue.map { $0.0.ref }
        if let c = computing { refs.append(c) }
        queue.removeAll()
        lock.unlock()
        refs += parked.values.flatMap { $0.map(\.ref) }
        _ = trySend(.goodbye(refs))
        logger.info("worker stopping", metadata: ["tasks": "\(tasksDone)", "returned": "\(refs.count)"])
        return true
    }

    private func enqueue(_ spec: Wire.TaskSpec, _ bundle: ModelBundle) {
        lock.lock()
        queue.append((spec, bundle))
        lock.signal()
        lock.unlock()
    }

    // MARK: Compute thread

    private func computeLoop() {
        do {
            let wake = try ZMQSocket(context, type: .pair)
            try wake.set(.maxMessageSize, 1024)
            try wake.connect(wakeEndpoint)
            computeLoop(wake)
        } catch {
            logger.critical("cannot connect the compute thread's wake-up pipe: \(error)")
        }
    }

    private func computeLoop(_ wake: borrowing ZMQSocket) {
        var engines: [String: MapEngine] = [:]
        while true {
            lock.lock()
            while queue.isEmpty && !stopRequested { lock.wait() }
            if stopRequested {
                lock.unlock()
                return
            }
            let (spec, bundle) = queue.removeFirst()
            let gen = generation
            computing = spec.ref
            lock.unlock()

            if configuration.taskDelayMilliseconds > 0 { usleep(UInt32(configuration.taskDelayMilliseconds) * 1000) }
            let outcome: Outcome
            do {
                outcome = .result(try compute(spec, bundle, engines: &engines))
            } catch {
                outcome = .failure(Wire.TaskFailure(jobID: spec.jobID, taskID: spec.taskID, attempt: spec.attempt,
                                                    message: "\(error)"))
            }
            lock.lock()
            computing = nil
            if gen == generation {
                outbox.append(outcome)
                if case .result = outcome { tasksDone += 1 }
            }
            lock.unlock()
            try? wake.send([[1]], flags: .dontWait)
        }
    }

    private func compute(_ spec: Wire.TaskSpec, _ bundle: ModelBundle,
                         engines: inout [String: MapEngine]) throws -> Wire.TaskResult {
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
            throw ClusterError("task input is \(spec.input.height)×\(spec.input.width), the engine needs "
                               + "\(expected.height)×\(expected.width)")
        }
        let pre = try TaskCodec.preprocessing(spec.preprocessing).validated(channels: engine.fcn.inputChannels)
        let mapping = try ChannelMapping.resolve(imageChannels: Int(spec.input.channels),
                                                 netChannels: engine.fcn.inputChannels, order: pre.channelOrder)
        let input = TaskCodec.region(spec.input).tensor(mapping: mapping, preprocessing: pre)
        let out = try engine.run(task, input: input, threads: configuration.threads)
        return Wire.TaskResult(jobID: spec.jobID, taskID: spec.taskID, attempt: spec.attempt, classes: UInt32(out.c),
                               height: UInt32(out.h), width: UInt32(out.w), values: out.values)
    }
}
