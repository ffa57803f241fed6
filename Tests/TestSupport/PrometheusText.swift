import Foundation

/// A strict reader of Prometheus' text exposition format (0.0.4), for tests: every
/// line is a `# HELP`/`# TYPE` comment, empty, or `name{label="value",…} value
/// [timestamp]` with a valid metric name, valid label names, properly escaped label
/// values and a float value. Throws, naming the line, on anything else.
package struct PrometheusText {
    package struct Sample: Equatable {
        package let name: String
        package let labels: [String: String]
        package let value: Double
    }

    package private(set) var samples: [Sample] = []
    /// `# TYPE` by metric family name.
    package private(set) var types: [String: String] = [:]
    /// `# HELP` by metric family name.
    package private(set) var help: [String: String] = [:]

    package struct ParseError: Error, CustomStringConvertible {
        package let description: String
    }

    package init(_ text: String) throws {
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            func fail(_ why: String) -> ParseError { ParseError(description: "line \(number + 1) `\(line)`: \(why)") }
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let words = line.split(separator: " ", maxSplits: 3).map(String.init)
                guard words.count >= 3, words[0] == "#" else { continue }
                guard Self.isMetricName(words[2]) else { throw fail("invalid metric name in comment") }
                if words[1] == "TYPE" {
                    guard words.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(words[3])
                    else { throw fail("unknown type") }
                    guard types[words[2]] == nil else { throw fail("second TYPE for \(words[2])") }
                    types[words[2]] = words[3]
                } else if words[1] == "HELP" {
                    help[words[2]] = words.count == 4 ? words[3] : ""
                }
                continue
            }
            samples.append(try Self.sample(line, fail))
        }
    }

    /// The value of the sample `name` whose labels include `labels`; nil if none.
    package func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?
            .value
    }

    /// The sum of every sample named `name`.
    package func total(_ name: String) -> Double {
        samples.filter { $0.name == name }.reduce(0) { $0 + $1.value }
    }

    package static func isMetricName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first.isASCIILetter || first == "_" || first == ":" else {
            return false
        }
        return s.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" || $0 == ":" }
    }

    package static func isLabelName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first.isASCIILetter || first == "_" else { return false }
        return s.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" }
    }

    private static func sample(_ line: String, _ fail: (String) -> ParseError) throws -> Sample {
        let chars = Array(line.unicodeScalars)
        var i = 0
        while i < chars.count, chars[i] != "{", chars[i] != " " { i += 1 }
        let name = String(String.UnicodeScalarView(chars[0..<i]))
        guard isMetricName(name) else { throw fail("invalid metric name `\(name)`") }
        var labels: [String: String] = [:]
        if i < chars.count, chars[i] == "{" {
            i += 1
            while true {
                guard i < chars.count else { throw fail("unterminated labels") }
                if chars[i] == "}" {
                    i += 1
                    break
                }
                var j = i
                while j < chars.count, chars[j] != "=" { j += 1 }
                let key = String(String.UnicodeScalarView(chars[i..<j]))
                guard isLabelName(key), j + 1 < chars.count, chars[j + 1] == "\"" else {
                    throw fail("invalid label `\(key)`")
                }
                i = j + 2
                var value = ""
                while true {
                    guard i < chars.count else { throw fail("unterminated label value") }
                    let c = chars[i]
                    if c == "\"" { break }
                    if c == "\\" {
                        guard i + 1 < chars.count else { throw fail("dangling escape") }
                        switch chars[i + 1] {
                        case "\\": value += "\\"
                        case "\"": value += "\""
                        case "n": value += "\n"
                        default: throw fail("invalid escape in a label value")
                        }
                        i += 2
                        continue
                    }
                    value.unicodeScalars.append(c)
                    i += 1
                }
                guard labels[key] == nil else { throw fail("label \(key) twice") }
                labels[key] = value
                i += 1
                if i < chars.count, chars[i] == "," { i += 1 }
            }
        }
        guard i < chars.count, chars[i] == " " else { throw fail("no value") }
        let rest = String(String.UnicodeScalarView(chars[(i + 1)...])).split(separator: " ")
        guard (1...2).contains(rest.count) else { throw fail("expected `value [timestamp]`") }
        let valueText = String(rest[0])
        let value: Double
        switch valueText {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let v = Double(valueText) else { throw fail("value `\(valueText)` is not a number") }
            value = v
        }
        if rest.count == 2, Int64(rest[1]) == nil { throw fail("timestamp is not an integer") }
        return Sample(name: name, labels: labels, value: value)
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

/// One HTTP GET over a raw socket (no URLSession: its Linux build pulls in curl and
/// proxies): returns the status and the body. For the metrics endpoint in tests.
package func httpGet(
    host: String = "127.0.0.1", port: Int, path: String, timeout: Int = 5
) throws -> (
    status: Int, body: String
) {
    try httpExchange(host: host, port: port, request: "GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\r\n", timeout: timeout)
}

/// Sends `request` as is and reads the reply to the end (the server closes).
package func httpExchange(
    host: String = "127.0.0.1", port: Int, request: String, timeout: Int = 5
) throws -> (
    status: Int, body: String
) {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw PrometheusText.ParseError(description: "socket failed") }
    defer { close(fd) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &address.sin_addr)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else {
        throw PrometheusText.ParseError(description: "cannot connect to \(host):\(port): errno \(errno)")
    }
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var reply: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        reply += buffer[0..<n]
    }
    let text = String(decoding: reply, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else {
        throw PrometheusText.ParseError(description: "no HTTP reply head in `\(text.prefix(200))`")
    }
    let statusLine = text[..<split.lowerBound].split(separator: "\r\n").first ?? ""
    let parts = statusLine.split(separator: " ")
    guard parts.count >= 2, let status = Int(parts[1]) else {
        throw PrometheusText.ParseError(description: "bad status line `\(statusLine)`")
    }
    return (status, String(text[split.upperBound...]))
}

/// A loopback TCP port free right now (bound to port 0, then closed).
package func freeLoopbackPort() throws -> Int {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard ok else { throw PrometheusText.ParseError(description: "cannot bind a loopback port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
