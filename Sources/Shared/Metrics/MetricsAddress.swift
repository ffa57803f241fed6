import Foundation

/// Where the metrics and health endpoint listens (`--metrics-address`): `HOST:PORT`,
/// `[IPv6]:PORT`, `:PORT` or `PORT`. Without a host it is loopback (127.0.0.1):
/// exposing it elsewhere (a pod's probes) takes an explicit `0.0.0.0:PORT`.
package struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    package let host: String
    package let port: UInt16

    package init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    package init(parsing text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var host = ""
        var portText = trimmed
        if trimmed.hasPrefix("[") {
            guard let close = trimmed.firstIndex(of: "]"),
                trimmed[trimmed.index(after: close)...].hasPrefix(":")
            else { throw MetricsError("metrics address \(text): write an IPv6 host as [ADDRESS]:PORT") }
            host = String(trimmed[trimmed.index(after: trimmed.startIndex)..<close])
            portText = String(trimmed[trimmed.index(close, offsetBy: 2)...])
        } else if let colon = trimmed.lastIndex(of: ":") {
            host = String(trimmed[..<colon])
            portText = String(trimmed[trimmed.index(after: colon)...])
            guard !host.contains(":") else {
                throw MetricsError("metrics address \(text): write an IPv6 host as [ADDRESS]:PORT")
            }
        }
        guard let port = UInt16(portText) else {
            throw MetricsError("metrics address \(text): the port must be a number 0…65535 (HOST:PORT, :PORT or PORT)")
        }
        self.host = host.isEmpty ? "127.0.0.1" : host
        self.port = port
    }

    /// Whether only this machine can reach it.
    package var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A metrics endpoint problem: a bad address, a port that cannot be bound.
package struct MetricsError: Error, CustomStringConvertible, Sendable {
    package let description: String
    package init(_ description: String) { self.description = description }
}
