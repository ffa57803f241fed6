import Foundation
import Logging
import TesseraCore
import TesseraWire

/// What the loop keeps for retention: when the store was last measured, and the
/// measurement being made off the loop thread.
struct RetentionState {
    var lastCheck = -Double.infinity
    var measuring = false
    let measured = Locked<[UInt64: JobStore.FolderUsage]?>(nil)
    /// The last measurement: ended jobs' counts are reused (`JobStore.usage(reusing:)`).
    var lastUsage: [UInt64: JobStore.FolderUsage] = [:]
    let queue = DispatchQueue(label: "tessera.coordinator.retention", qos: .utility)
    var warnedOverLimit = false
    /// The jobs kept at the last check because a client was downloading them (logged once each).
    var keptForDownload = Set<UInt64>()
    /// The highest id removed in this coordinator's life: the store records it a moment later.
    var removedUpTo: UInt64 = 0
}

/// Retention (`serve --keep-finished`, `--max-store`): every `checkSeconds` the store
/// is measured off the loop thread; then ended jobs older than the limit, and the
/// oldest ended ones while the store is over its size, are removed from memory at
/// once and from disk on the store queue (after the job's queued writes). Each
/// removal is logged; active jobs are never removed, nor, by either limit, a job within
/// `endGrace` of its end or an unfetched result within `unfetchedGrace`.
extension CoordinatorLoop {
    func enforceRetention(_ now: Double) {
        if let usage = retention.measured.withLock({ m in
            defer { m = nil }; return m
        }) {
            retention.measuring = false
            retention.lastUsage = usage
            applyRetention(usage)
        }
        guard !retention.measuring, now - retention.lastCheck >= configuration.retention.checkSeconds else { return }
        retention.lastCheck = now
        retention.measuring = true
        let (store, measured, previous) = (store, retention.measured, retention.lastUsage)
        retention.queue.async {
            let usage = store.usage(reusing: previous)
            measured.withLock { $0 = usage }
        }
    }

    private func applyRetention(_ usage: [UInt64: JobStore.FolderUsage]) {
        var total = usage.values.reduce(Int64(0)) { $0 + $1.bytes }
        metrics.store(bytes: total)
        let policy = configuration.retention
        guard policy.isOn else { return }
        let now = Date()
        let mono = monotonicSeconds()
        // Ended jobs, oldest end first.
        var ended: [(id: UInt64, at: Date)] = []
        for job in jobs.values where !job.isActive {
            guard let finished = job.finished else { continue }
            ended.append((job.id, now.addingTimeInterval(finished - mono)))
        }
        for (id, old) in archived where jobs[id] == nil {
            // A recorded end; else when it ended in this run or its folder was last written (a cancelled upload,
            // a job failed at resume: they aged from "now" at every check and were never removed).
            ended.append((id, usage[id]?.ended ?? (old.ended > 0 ? Date(timeIntervalSince1970: old.ended) : now)))
        }
        ended.sort { ($0.at, $0.id) < ($1.at, $1.id) }
        // Jobs a client is downloading are kept until it is done (their turn comes at a later check).
        let downloading = Set(
            ended.map(\.id).filter { lastFetched[$0].map { mono - $0 < RetentionPolicy.downloadGrace } ?? false })
        for id in downloading where !retention.keptForDownload.contains(id) {
            logger.info("retention keeps a job a client is downloading", metadata: ["job": "\(id)"])
        }
        retention.keptForDownload = downloading
        ended.removeAll { downloading.contains($0.id) }
        var removed = Set<UInt64>()
        if let keep = policy.keepFinishedSeconds {
            for (id, at) in ended where now.timeIntervalSince(at) > keep {
                // The graces hold here too (docs/CLI audit 36 F2: `--keep-finished 1s` removed a job a second
                // after its end, before a `submit --wait` saw it and before anyone fetched it).
                let age = now.timeIntervalSince(at), delivered = delivered(id)
                guard age >= policy.endGrace, delivered || age >= policy.unfetchedGrace else { continue }
                if !delivered {
                    rejects.warning(
                        "keep-finished-unfetched", "a result is removed by --keep-finished before anyone fetched it",
                        metadata: ["job": "\(id)", "ended": "\(Int(age))s ago"], counts: false)
                }
                removeEnded(id, reason: "ended more than --keep-finished ago", endedAt: at, bytes: usage[id]?.bytes)
                removed.insert(id)
                total -= usage[id]?.bytes ?? 0
            }
        }
        if let limit = policy.maxStoreBytes {
            let candidates = ended.filter { !removed.contains($0.id) }.map {
                RetentionPolicy.Ended(
                    id: $0.id, at: $0.at, bytes: usage[$0.id]?.bytes ?? 0, delivered: delivered($0.id))
            }
            let victims = policy.maxStoreVictims(candidates, total: total, limit: limit, now: now)
            let byID = Dictionary(candidates.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            for id in victims {
                guard let job = byID[id] else { continue }
                // A result removed unfetched could not be fetched (operator audit: a 12M --max-store removed a
                // 33 MB job 6 s after it finished, without a word). Rate-limited: under pressure it came 640 times
                // in 14 minutes (soak audit 31 F7).
                if !job.delivered {
                    rejects.warning(
                        "max-store-unfetched",
                        "a result is removed before anyone fetched it: --max-store is too small for the results it "
                            + "should keep until they are fetched (raise it, or the store's volume)",
                        metadata: [
                            "job": "\(id)", "bytes": "\(job.bytes)", "limit": "\(limit)",
                            "ended": "\(Int(now.timeIntervalSince(job.at)))s ago",
                        ], counts: false)
                }
                removeEnded(id, reason: "the store is over --max-store", endedAt: job.at, bytes: job.bytes)
                removed.insert(id)
                total -= usage[id]?.bytes ?? 0
            }
            if total > limit && !retention.warnedOverLimit {
                logger.warning(
                    """
                    store over --max-store with no ended job left to remove (active jobs are kept, every job for a \
                    minute after its end, and results nobody fetched for 10 minutes)
                    """,
                    metadata: ["bytes": "\(total)", "limit": "\(limit)"])
            }
            retention.warnedOverLimit = total > limit
        }
        // What the store holds once these removals are done, not until the next check; the removed jobs'
        // submission tokens go too, in one pass (soak audit 31 F5: they were kept for the process's life).
        if !removed.isEmpty {
            metrics.store(bytes: total)
            tokens = tokens.filter { !removed.contains($0.value) }
        }
    }

    /// Whether nothing in ended job `id` waits to be fetched: a client asked for its outputs (in this
    /// coordinator's life, or an earlier one's: `recordFetched`), its map is on the shared storage, or it did not
    /// end done.
    private func delivered(_ id: UInt64) -> Bool {
        if lastFetched[id] != nil { return true }
        if persistent, FileManager.default.fileExists(atPath: store.directory(id) + "/" + Self.fetchedFile) {
            lastFetched[id] = monotonicSeconds() - RetentionPolicy.downloadGrace  // (not a download under way)
            return true
        }
        if let job = jobs[id] { return job.state != .done || job.shared != nil }
        guard let old = archived[id] else { return true }
        return old.state != .done || old.shared
    }

    /// The mark in a job's folder that a client asked for its outputs.
    static let fetchedFile = "fetched"

    /// Marks job `id` as fetched in the store (once, on the store queue; best effort), so a restarted coordinator
    /// does not keep it as unfetched, nor warn of its removal (soak audit 56 F2: every result fetched before a
    /// restart was kept 10 minutes more, and its removal warned "before anyone fetched it").
    func recordFetched(_ id: UInt64) {
        guard persistent else { return }
        let path = store.directory(id) + "/" + Self.fetchedFile
        storeQueue.async {
            let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            if fd >= 0 { close(fd) }
        }
    }

    /// Forgets an ended job and removes its folder (after its queued store writes).
    private func removeEnded(_ id: UInt64, reason: String, endedAt: Date, bytes: Int64?) {
        let state = jobs[id]?.state ?? archived[id]?.state ?? .unknown
        jobs[id] = nil
        retention.removedUpTo = max(retention.removedUpTo, id)
        jobOrder.removeAll { $0 == id }
        archived[id] = nil
        lastFetched[id] = nil
        servedViews[id] = nil
        servedChecks.forget(id)
        metrics.jobEvicted()
        logger.info(
            "job removed",
            metadata: [
                "job": "\(id)", "state": "\(state)", "reason": "\(reason)",
                "ended": "\(Int(Date().timeIntervalSince(endedAt)))s ago", "bytes": "\(bytes ?? 0)",
            ])
        let (store, logger) = (store, logger)
        storeQueue.async {
            do {
                try store.removeJob(id)
            } catch {
                logger.error("cannot remove a job's folder", metadata: ["job": "\(id)", "error": "\(error)"])
            }
        }
    }
}
