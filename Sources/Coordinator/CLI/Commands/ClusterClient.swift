import ArgumentParser
import CoordinatorService
import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraPlan
import TesseraWire

/// A client of a coordinator's client endpoint: one request, one reply, in order.
///
/// Survives a coordinator restart (the zguide's Lazy Pirate): a request that gets no
/// answer is sent again on a fresh socket (so no stale reply can be mistaken for the
/// new one, and libzmq's reconnect backoff starts over) until `reconnectTimeout`
/// seconds have passed without an answer. Only idempotent requests are resent after
/// they left; a submission is resent only if it never left (no connection).
///
/// A refused security handshake is not an outage: a socket monitor reports it, and the
/// request fails at once with the reason (key not authorized, CURVE required, wrong
/// coordinator key) instead of retrying for `reconnectTimeout`.
final class ClusterClient {
    let endpoint: String
    let reconnectTimeout: Double
    private let context: ZMQContext
    private let curve: CurveClientSecurity?
    private var socket: ZMQSocket
    private var monitor: ZMQMonitor
    private let logger = Logger(label: "tessera.client")

    init(endpoint: String, curve: CurveClientSecurity? = nil, context: ZMQContext, reconnectTimeout: Double = 60) throws
    {
        self.endpoint = endpoint
        self.context = context
        self.curve = curve
        self.reconnectTimeout = reconnectTimeout
        let fresh = try Self.makeSocket(context, curve)
        monitor = try fresh.monitor(events: Self.monitored, context: context)
        try fresh.connect(endpoint)
        socket = fresh
        live = false
    }

    /// The handshake's outcome, and the connection closing (a request over the coordinator's
    /// message limit closes it before any reply).
    private static let monitored: ZMQSocketEvent = HandshakeFailure.events.union(.disconnected)
    /// The last refused handshake since the last good one: why, and whether retrying cannot help (a key
    /// refused, a cryptographic error) rather than maybe (a connection reset by a coordinator that was
    /// killed while it hung, then restarted: operator audit, a submit was lost to it).
    private var refusal: (reason: String, definitive: Bool)?
    /// Refused handshakes in a row that might pass on retry.
    private var doubtfulRefusals = 0
    /// The connection closed since the last request was sent.
    private var dropped = false
    /// A handshake succeeded on the connection now open. Only such a connection's close is a drop: a forwarder
    /// (as `kubectl port-forward`) accepts and closes connections while the coordinator behind it is down, and
    /// those closes, reported after the request left on a later connection, were taken for the coordinator
    /// refusing the request's size (audit 46 F5: an upload part was "larger than the coordinator accepts").
    private var live = false

    /// The request's connection is up: a handshake succeeded and it did not close since, or the coordinator is this
    /// process's own (`run`'s `inproc://` endpoint, which has no handshake to report).
    private var connected: Bool { endpoint.hasPrefix("inproc://") || (live && !dropped) }

    /// Reads the monitor's events into `refusal` and `dropped`.
    private func drainMonitor() {
        while let event = try? monitor.next(timeoutMilliseconds: 0) {
            if event.event == .disconnected {
                if live { dropped = true }
                live = false
            } else if event.event == .handshakeSucceeded {
                live = true
                refusal = nil
                doubtfulRefusals = 0
            } else if let reason = HandshakeFailure.explain(event, curve: curve != nil) {
                let definitive = event.event != .handshakeFailedNoDetail
                if !definitive { doubtfulRefusals += 1 }
                refusal = (reason, definitive)
            }
        }
    }

    /// A DEALER with Tessera's options and the CURVE keys, not connected yet.
    private static func makeSocket(_ context: ZMQContext, _ curve: CurveClientSecurity?) throws -> ZMQSocket {
        let socket = try ZMQSocket(context, type: .dealer)
        try socket.applyTesseraDefaults(maxMessageSize: 1 << 30)
        // IMMEDIATE: a send with no live connection waits this long, then fails (never left).
        try socket.set(.sendTimeout, 1_000)
        if let curve { try ZMQCurve.configureClient(socket, pair: curve.keyPair, serverKey: curve.serverKey) }
        return socket
    }

    /// Replaces the socket (and its monitor) with a fresh, connected one.
    private func reconnect() throws {
        let fresh = try Self.makeSocket(context, curve)
        monitor = try fresh.monitor(events: Self.monitored, context: context)
        try fresh.connect(endpoint)
        socket = fresh
        live = false
    }

    /// Why the coordinator refused this connection's handshake, when retrying cannot help: a
    /// definitive refusal, or one that might pass that came three times in a row.
    private func handshakeFailure() -> String? {
        drainMonitor()
        guard let refusal, refusal.definitive || doubtfulRefusals >= 3 else { return nil }
        return refusal.reason
    }

    /// Sends `message` and waits for the reply; an `.error` reply throws. A request
    /// that `isIdempotent` (status, fetch, cancel) is resent on a fresh socket when
    /// no reply comes within `attemptTimeout` s; one that is not (submit) waits
    /// `timeout` s for its reply. Either way the client keeps trying for
    /// `reconnectTimeout` s while the coordinator is unreachable.
    /// `answers` tells this request's reply from a late one to an earlier attempt (a
    /// resent request is answered twice): replies it refuses are dropped.
    /// Each resend waits twice as long as the attempt before (up to `longestAttempt`,
    /// or `attemptTimeout` when that is longer), so a reply that takes longer than one
    /// attempt to arrive (a large piece over a slow link) still gets through;
    /// `resend` may change the request first (a fetch asks for a smaller piece).
    ///
    /// `slowReply` (a submission, answered once the job is prepared): while the connection that carried the
    /// request stays up, no answer is a slow preparation, not an outage: the client waits for it, up to `timeout`
    /// s, saying so once with `slowReply`'s text. A `--tissue` view of a large single-level TIFF takes minutes;
    /// the client took 60 s of silence for a coordinator gone and gave up (memory audit 50 F2).
    func request(
        _ message: WireMessage, timeout: Double = 60, isIdempotent: Bool = true,
        attemptTimeout: Double = 3, resend: ((WireMessage) -> WireMessage)? = nil, slowReply: String? = nil,
        answers: (WireMessage) -> Bool = { _ in true }
    ) throws -> WireMessage {
        var message = message
        var attempt = attemptTimeout
        var limits = WireLimits()
        limits.maxTotalBytes = 1 << 30
        var outageSince: Date?
        // Times this large request's connection closed before an answer: once may be a coordinator restarting,
        // twice is its message limit.
        var largeDrops = 0
        while true {
            var sent = false
            var bytes = 0
            var lost = false
            do {
                drainMonitor()
                dropped = false
                bytes = try socket.send(message)
                sent = true
            } catch ZMQError.again {
                // Not connected: the message never left, so it can be sent again, unless
                // the coordinator refused the handshake (retrying cannot change that).
                if let reason = handshakeFailure() { throw ClusterError(.unreachable, reason) }
            }
            if sent {
                let wait = isIdempotent ? min(timeout, attempt) : timeout
                let sentAt = Date()
                var deadline = sentAt.addingTimeInterval(wait)
                // Waiting past the attempt for a slow answer; when the coordinator last proved alive (the request's
                // connection, then its answers to a status request every 10 s: a stopped or hung coordinator keeps
                // the connection up); when one was asked last.
                var slow = false
                var lastProof = sentAt, lastProbe = sentAt
                while Date() < deadline {
                    guard try socket.waitForMessage(timeoutMilliseconds: 200) else {
                        drainMonitor()
                        if let slowReply, connected {
                            let now = Date()
                            if !slow, now.addingTimeInterval(1) >= deadline {
                                slow = true
                                outageSince = nil  // it is reachable (review: an earlier outage's clock ran on)
                                lastProof = now
                                deadline = sentAt.addingTimeInterval(timeout)
                                // (`run`'s own coordinator is waited for as long as it runs: no limit to state.)
                                logger.notice(
                                    "\(slowReply)",
                                    metadata: endpoint.hasPrefix("inproc://")
                                        ? [:] : ["coordinator": "\(endpoint)", "for-up-to": "\(Int(timeout))s"])
                            }
                            if slow, now.timeIntervalSince(lastProof) > max(reconnectTimeout, 30) {
                                throw ClusterError(
                                    .unreachable,
                                    "the coordinator at \(endpoint) stopped answering while it prepared the job: no "
                                        + "answer to a status request in \(Int(now.timeIntervalSince(lastProof))) s "
                                        + "(stopped, hung, or the network lost?); `tessera-coordinator status` lists "
                                        + "the job if it was submitted")
                            }
                            if slow, now.timeIntervalSince(lastProbe) >= 10 {
                                lastProbe = now
                                _ = try? socket.send(.statusRequest(jobID: nil))
                            }
                        } else if slow {
                            deadline = Date()  // the connection closed: resent below, as after any drop
                        }
                        // A large request that closes the connection unanswered twice was over the coordinator's
                        // limit (operator audit: a 40 MiB model waited 2 minutes, then "is it running?"); once, it
                        // may have met a coordinator restarting (chaos audit: an upload part was called too large).
                        // A drop after a wait of seconds was no size refusal, which closes at once (reviews: a
                        // coordinator that died twice preparing a job was said to refuse the request's size).
                        let quick = Date().timeIntervalSince(sentAt) < 10
                        if dropped, quick, bytes >= Self.largeRequest, largeDrops >= 1 || !isIdempotent {
                            throw ClusterError(
                                .refused,
                                "the coordinator at \(endpoint) closed the connection on receiving this "
                                    + "\(SystemMemory.text(bytes)) request without answering"
                                    + (isIdempotent ? ", twice" : "") + ": it is larger than the coordinator accepts "
                                    + "(serve --max-client-message-mib)"
                                    + (isIdempotent
                                        ? ""
                                        : ". Nothing was done, unless the coordinator restarted at that moment (status shows)")
                            )
                        }
                        // The connection closed: no answer comes on it (the coordinator stopped, or restarted).
                        // An idempotent request is asked again at once (chaos audit: an upload part waited out
                        // its 60 s attempt, a last part 300 s, silently).
                        if dropped, isIdempotent {
                            if bytes >= Self.largeRequest && quick { largeDrops += 1 }
                            lost = true
                            break
                        }
                        continue
                    }
                    guard let envelope = try socket.receiveWire(limits: limits, dontWait: true) else { continue }
                    // The answer to a liveness status request (a submission's answer is never a status).
                    if slow, case .success(.status) = envelope.message {
                        lastProof = Date()
                        continue
                    }
                    if outageSince != nil {
                        logger.notice("the coordinator answers again", metadata: ["coordinator": "\(endpoint)"])
                    }
                    switch envelope.message {
                    case .success(.error(let text)): throw ClusterError(.refused, text)
                    case .success(.disconnect(let reason)) where reason.hasPrefix("unknown worker"):
                        // The worker endpoint answers a stranger so: the wrong port (operator audit).
                        throw ClusterError(
                            .refused,
                            "\(endpoint) is a coordinator's worker endpoint (it asked this client to register as a "
                                + "worker): clients use its client endpoint (serve --client-endpoint, port 5556 "
                                + "by default)")
                    case .success(let reply):
                        guard answers(reply) else { continue }
                        // Answers to liveness status requests may still come: not on the next request's socket.
                        if lastProbe > sentAt { try? reconnect() }
                        return reply
                    case .failure(let e) where e.kind == .unsupportedVersion:
                        throw ClusterError(
                            .protocolViolation,
                            "the coordinator at \(endpoint) runs another Tessera release (\(e.reason)): use a client "
                                + "of its release (this one: \(TesseraVersion.description))")
                    case .failure(let e):
                        throw ClusterError(.protocolViolation, "malformed reply from the coordinator: \(e)")
                    }
                }
                if slow, connected, Date().timeIntervalSince(sentAt) >= timeout {
                    throw ClusterError(
                        .unreachable,
                        "the coordinator at \(endpoint) did not answer within \(Int(timeout)) s, though it answers: "
                            + "it may still be preparing the job (`tessera-coordinator status` lists the job once it "
                            + "is prepared)")
                }
                if !isIdempotent {
                    throw ClusterError(
                        .unreachable,
                        "the coordinator at \(endpoint) did not answer within \(Int(timeout)) s "
                            + "(the request may or may not have been carried out)")
                }
            }
            let since = outageSince ?? Date()
            if outageSince == nil {
                outageSince = since
                let text =
                    lost
                    ? "the connection to the coordinator closed before it answered: asking again (it may be restarting)"
                    : sent
                        ? "no answer from the coordinator in \(Int(min(timeout, attempt))) s: asking again, waiting "
                            + "longer (it may be restarting, or its reply is slow)"
                        : "the coordinator cannot be reached: retrying (it may be restarting)"
                logger.warning(
                    "\(text)", metadata: ["coordinator": "\(endpoint)", "for-up-to": "\(Int(reconnectTimeout))s"])
            }
            guard Date().timeIntervalSince(since) < reconnectTimeout else {
                throw ClusterError(
                    .unreachable,
                    "no coordinator answered at \(endpoint) for \(Int(reconnectTimeout)) s "
                        + "(is it running? --reconnect-timeout sets how long to wait)")
            }
            if sent && !lost {
                attempt = min(max(attemptTimeout, Self.longestAttempt), attempt * 2)
                if let resend { message = resend(message) }
            }
            // A fresh socket: no late reply to the lost request can arrive on it.
            try reconnect()
            usleep(250_000)
        }
    }

    func status(_ job: UInt64?) throws -> Wire.JobStatus {
        guard case .status(let s) = try request(.statusRequest(jobID: job)) else {
            throw ClusterError(.protocolViolation, "unexpected reply to a status request")
        }
        return s
    }

    /// Set once the coordinator refused a detailed status request: it is of an earlier build.
    private(set) var plainStatusOnly = false

    /// The detailed status (`details` set), or from a coordinator of an earlier build,
    /// which refuses the query's flag as undefined, the plain one (`details` nil).
    func status(_ job: UInt64?, query: Wire.StatusQuery) throws -> Wire.JobStatus {
        if !plainStatusOnly {
            do {
                guard case .status(let s) = try request(.statusRequest(jobID: job, query: query)) else {
                    throw ClusterError(.protocolViolation, "unexpected reply to a status request")
                }
                return s
            } catch let error as ClusterError where Self.refusesDetailedStatus(error) {
                plainStatusOnly = true
            }
        }
        return try status(job)
    }

    /// How a coordinator of an earlier build refuses a status request with a query:
    /// "malformed message: statusRequest: flags 0x2 not defined" (0x3 with a job id).
    static func refusesDetailedStatus(_ error: ClusterError) -> Bool {
        error.kind == .refused && error.description.contains("statusRequest: flags 0x")
            && error.description.hasSuffix("not defined")
    }

    /// How long a job may wait with no worker connected before the client says so.
    static let noWorkerNotice = 10.0

    /// Polls the job until it ends, drawing progress; throws unless it is done.
    /// `alive` is asked between polls (the embedded run checks its workers).
    func wait(
        job: UInt64, label: String, pixels: Int, progress: Progress?,
        noWorker: String = "start tessera-worker --coordinator <its worker endpoint>",
        alive: () throws -> Void = {}
    ) throws -> Wire.JobStatus {
        let start = Date()
        var noWorkerSince: Date?
        var told = false
        var toldStore = false
        var already: Int?
        while true {
            // Detailed: the job's own task total, and its rate over the coordinator's last seconds.
            let s = try status(job, query: Wire.StatusQuery())
            let summary = s.details?.jobs.first
            if already == nil {
                already = Int(s.tasksDone)
                // A resumed job says what it took from the store; --tissue what it skips.
                if !s.message.isEmpty, s.state == .queued || s.state == .running {
                    FileHandle.standardError.write(Data("job \(job): \(s.message)\n".utf8))
                }
            }
            // A job with no worker to run it (none connected, or none that can reach a shared job's files) waits
            // forever: say so once, after 10 s.
            let waiting = summary?.waitingForWorkers ?? (s.workers == 0)
            noWorkerSince = waiting ? (noWorkerSince ?? Date()) : nil
            if !told, let since = noWorkerSince, Date().timeIntervalSince(since) >= Self.noWorkerNotice {
                told = true
                let why =
                    s.workers == 0 || s.message.isEmpty
                    ? "no worker is connected to the coordinator (\(noWorker))" : s.message
                FileHandle.standardError.write(Data("\njob \(job) is waiting: \(why)\n".utf8))
            }
            // Its map tiles cannot be stored (a full disk on the coordinator): said once, the first time (audit 55
            // F1: `submit --wait` showed "4/4 tasks" and nothing more, for good).
            if !toldStore, s.message.hasPrefix(Wire.JobStatus.storeWaitNote) {
                toldStore = true
                FileHandle.standardError.write(Data("\njob \(job) is waiting: \(s.message)\n".utf8))
            }
            let total = summary.map { Int($0.tasks) } ?? Int(s.tasksQueued + s.tasksRunning + s.tasksDone)
            switch s.state {
            case .done:
                progress?.update(
                    label: label, done: total, total: total, pixels: pixels, since: start, already: already ?? 0)
                progress?.finish()
                return s
            case .failed, .cancelled, .unknown:
                // Not a progress line of "0/0 tasks": how it ended, and why.
                let reason = s.message.isEmpty ? "" : ": \(s.message)"
                progress?.ended(
                    label: label,
                    "\(s.state)" + (summary.map { " after \($0.done)/\($0.tasks) tasks" } ?? "") + reason)
                throw ClusterError(.jobFailed, "job \(job) \(s.state)\(reason)")
            case .queued, .running:
                // No worker: nothing progresses, and the fading rate would give a growing ETA.
                progress?.update(
                    label: label, done: Int(s.tasksDone), total: total, pixels: pixels, since: start,
                    already: already ?? 0, rate: waiting ? (0, 0) : (s.tasksPerSecond, s.pixelsPerSecond),
                    waiting: waiting)
                try alive()
                // Every 0.1 s at first, easing to every 0.5 s over the first 8 s: a short job
                // ends promptly, and a long one is not asked about ten times a second (each
                // poll costs the coordinator's scheduling loop a reply).
                let elapsed = Date().timeIntervalSince(start)
                usleep(UInt32(min(500_000, 100_000 + Int(elapsed * 50_000))))
            }
        }
    }

    /// A request at least this large that closes the connection unanswered was over the coordinator's limit.
    static let largeRequest = 1 << 20

    /// The longest wait for the reply to one attempt of an idempotent request (it doubles from `attemptTimeout`).
    static let longestAttempt = 24.0
}
