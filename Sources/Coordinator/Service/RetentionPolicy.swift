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

    /// Seconds in a duration such as `7d`, `12h`, `30m`, `45s` or `1.5h` (a bare number is seconds).
    package static func seconds(parsing text: String) throws -> Double {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let (number, scale) = t.last.flatMap { units[$0] }.map { (String(t.dropLast()), $0) } ?? (t, 1)
        guard let value = Double(number), value.isFinite, value >= 0 else {
            throw ClusterError("duration \(text): write a number and a unit s, m, h, d or w (e.g. 7d, 12h, 30m)")
        }
        return value * scale
    }

    /// Bytes in a size such as `50G`, `500M`, `2T`, `64K` or `1.5G` (binary units; `GB`
    /// and `GiB` mean the same; a bare number is bytes).
    package static func bytes(parsing text: String) throws -> Int64 {
        let units: [String: Double] = ["": 1, "k": 1024, "m": 1_048_576, "g": 1_073_741_824, "t": 1_099_511_627_776]
        var t = text.trimmingCharacters(in: .whitespaces).lowercased()
        for suffix in ["ib", "b"] where t.hasSuffix(suffix) && t.count > suffix.count {
            t = String(t.dropLast(suffix.count))
            break
        }
        let unit = t.last.map { $0.isLetter ? String($0) : "" } ?? ""
        let number = unit.isEmpty ? t : String(t.dropLast())
        guard let scale = units[unit], let value = Double(number), value.isFinite, value > 0,
            value * scale < 9e18
        else {
            throw ClusterError("size \(text): write a positive number and a unit K, M, G or T (e.g. 50G)")
        }
        return Int64(value * scale)
    }
}
