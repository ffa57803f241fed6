import Foundation
import TesseraCore

/// `status`'s times, in UTC. Formatted from the calendar fields directly: a formatter object made per
/// time cost about 0.25 ms, so `status --all --json` of a store with 20 000 ended jobs took 11 s.
extension Status {
    /// The UTC calendar fields of a Unix time (seconds, fractions dropped).
    private static func utc(_ unixSeconds: Double) -> tm {
        var seconds = time_t(unixSeconds.rounded(.down))
        var fields = tm()
        gmtime_r(&seconds, &fields)
        return fields
    }

    private static func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }

    private static func date(_ t: tm) -> String {
        let year = Int(t.tm_year) + 1900
        let y = year < 1000 ? String(repeating: "0", count: 4 - String(year).count) + "\(year)" : "\(year)"
        return "\(y)-\(two(t.tm_mon + 1))-\(two(t.tm_mday))"
    }

    private static func clock(_ t: tm) -> String { "\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec))" }

    /// "2026-12-05 18:49:47 UTC".
    static func time(_ unixSeconds: Double) -> String {
        let t = utc(unixSeconds)
        return "\(date(t)) \(clock(t)) UTC"
    }

    /// ISO 8601 in UTC ("2026-12-05T18:49:47Z"), or null when not known.
    static func timestamp(_ unixSeconds: Double) -> JSONValue {
        guard unixSeconds > 0 else { return .null }
        let t = utc(unixSeconds)
        return .string("\(date(t))T\(clock(t))Z")
    }
}
