import Foundation
import TesseraCluster

/// Which ended jobs (done, failed, cancelled) the coordinator removes, from memory and
/// from the store: those that ended more than `keepFinishedSeconds` ago, and the oldest
/// ended ones while the store holds more than `maxStoreBytes`. Active jobs are never
/// removed. Nil limits keep everything (the default).
package struct RetentionPolicy: Sendable, Equatable {
    package var keepFinishedSeconds: Double?
    package var maxStoreBytes: Int64?
    /// How often the store is measured and the limits applied.
    package var checkSeconds = 30.0

    package init(keepFinishedSeconds: Double? = nil, maxStoreBytes: Int64? = nil) {
        self.keepFinishedSeconds = keepFinishedSeconds
        self.maxStoreBytes = maxStoreBytes
    }

    package var isOn: Bool { keepFinishedSeconds != nil || maxStoreBytes != nil }

    /// How long after a client last asked for a piece of a job's outputs retention leaves the job alone: a
    /// download in progress asks every few seconds at most (a job was removed under a download, which then
    /// failed: session-19 left-over).
    package static let downloadGrace: Double = 60

    /// How long after its end a result nobody has fetched is kept from removal, by `--max-store` and
    /// `--keep-finished` alike (tests shorten it).
    package var unfetchedGrace: TimeInterval = 600
    /// How long after its end any job is kept from removal (`--max-store`, `--keep-finished`): a client waiting
    /// on it (`submit --wait`, a `cancel`) sees how it ended (tests shorten it).
    package var endGrace: TimeInterval = 60

    /// One ended job, as `--max-store` weighs it.
    package struct Ended: Sendable, Equatable {
        package var id: UInt64
        package var at: Date
        package var bytes: Int64
        /// Nothing in it waits to be fetched: it was fetched, its map is on the shared storage, or it failed or
        /// was cancelled.
        package var delivered: Bool
        package init(id: UInt64, at: Date, bytes: Int64, delivered: Bool) {
            self.id = id; self.at = at; self.bytes = bytes; self.delivered = delivered
        }
    }

    /// The ended jobs `--max-store` removes, in order, from a store of `total` bytes, until it fits `limit`: first
    /// the delivered ones (oldest end first), then the undelivered ones older than `unfetchedGrace`; never a job
    /// that ended under `endGrace` ago, nor an undelivered one under `unfetchedGrace` (the store may stay over the
    /// limit meanwhile, with a warning). It removed the oldest jobs first, so under pressure the results that had
    /// just ended went, unfetched, and older ones already downloaded stayed (soak audit 31 F1: 6 upload results
    /// lost, a `submit --wait` ended "unknown").
    package func maxStoreVictims(_ ended: [Ended], total: Int64, limit: Int64, now: Date) -> [UInt64] {
        var total = total
        var out: [UInt64] = []
        let removable = ended.filter { job in
            let age = now.timeIntervalSince(job.at)
            return age >= endGrace && (job.delivered || age >= unfetchedGrace)
        }
        for job in removable.sorted(by: { ($0.delivered ? 0 : 1, $0.at, $0.id) < ($1.delivered ? 0 : 1, $1.at, $1.id) })
        where total > limit {
            out.append(job.id)
            total -= job.bytes
        }
        return out
    }

    /// Seconds in a duration such as `7d`, `12h`, `30m`, `45s` or `1.5h`. The unit is
    /// required: a bare `7` meant seven seconds, and removed every finished job of an
    /// operator who meant days before anyone could fetch it.
    package static func seconds(parsing text: String) throws -> Double {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard let unit = t.last.flatMap({ units[$0] }), let value = Double(t.dropLast()), value.isFinite, value >= 0
        else {
            throw ClusterError("duration \(text): write a number and a unit s, m, h, d or w (e.g. 7d, 12h, 30m)")
        }
        return value * unit
    }

    /// Bytes in a size such as `50G`, `500M`, `2T`, `64K`, `1.5G` or `4096B` (binary
    /// units; `GB` and `GiB` mean the same). The unit is required, as for durations.
    package static func bytes(parsing text: String) throws -> Int64 {
        let units: [String: Double] = ["b": 1, "k": 1024, "m": 1_048_576, "g": 1_073_741_824, "t": 1_099_511_627_776]
        var t = text.trimmingCharacters(in: .whitespaces).lowercased()
        for suffix in ["ib", "b"]
        where t.hasSuffix(suffix) && t.count > suffix.count && t.dropLast(suffix.count).last?.isLetter == true {
            t = String(t.dropLast(suffix.count))
            break
        }
        guard let unit = t.last.map(String.init), let scale = units[unit], let value = Double(t.dropLast()),
            value.isFinite, value * scale >= 1, value * scale < 9e18
        else {
            throw ClusterError("size \(text): write a positive number and a unit B, K, M, G or T (e.g. 50G)")
        }
        return Int64(value * scale)
    }

    /// The limits as an operator reads them in the start-up log ("keep 7d, at most 50G").
    package var summary: String {
        func duration(_ s: Double) -> String {
            for (unit, size) in [("w", 604_800.0), ("d", 86400), ("h", 3600), ("m", 60)]
            where s >= size && s.truncatingRemainder(dividingBy: size) == 0 {
                return "\(Int(s / size))\(unit)"
            }
            return s == s.rounded() ? "\(Int(s))s" : "\(s)s"
        }
        let keep = keepFinishedSeconds.map { "remove ended jobs \(duration($0)) after they end" } ?? "keep ended jobs"
        let size =
            maxStoreBytes.map {
                ", the oldest ended while the store is over \(Self.binaryBytes($0))"
            } ?? ""
        return keep + size
    }

    /// "30 MiB", "50 GiB", "1.5 TiB": binary units, as --max-store reads them.
    static func binaryBytes(_ bytes: Int64) -> String {
        var value = Double(bytes)
        for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
            if value < 1024 || unit == "TiB" {
                return value == value.rounded() ? "\(Int(value)) \(unit)" : "\(String(format: "%.1f", value)) \(unit)"
            }
            value /= 1024
        }
        return "\(bytes) B"
    }
}
