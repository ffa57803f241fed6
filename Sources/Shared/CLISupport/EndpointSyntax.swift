/// What is wrong with a ZeroMQ endpoint given on the command line, before it reaches libzmq: libzmq takes a
/// TCP port above 65535 modulo 65536 (`tcp://127.0.0.1:70000` bound or connected port 4464: another service,
/// silently; docs/CLI audit 36 F1).
package enum EndpointSyntax {
    /// Nil when `endpoint` is fine as far as can be told here; else why not, naming `option`. `bind`: a
    /// server's endpoint, which may ask for any free port (`*`).
    package static func problem(_ endpoint: String, option: String, bind: Bool) -> String? {
        let transports = ["tcp://", "ipc://", "inproc://"]
        guard let transport = transports.first(where: { endpoint.hasPrefix($0) }) else {
            return "\(option) \(endpoint): an endpoint looks like tcp://HOST:PORT, e.g. tcp://10.0.0.5:5555 (or ipc://PATH)"
        }
        guard transport == "tcp://" else { return nil }
        let rest = endpoint.dropFirst(transport.count)
        guard let colon = rest.lastIndex(of: ":"), !rest[..<colon].isEmpty else {
            return "\(option) \(endpoint): no port (tcp://HOST:PORT)"
        }
        let port = rest[rest.index(after: colon)...]
        if port == "*" {
            return bind ? nil : "\(option) \(endpoint): a connection needs the port number, not *"
        }
        guard !port.isEmpty, port.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(port),
            (1...65535).contains(number)
        else {
            return "\(option) \(endpoint): the port must be a number from 1 to 65535\(bind ? " (or *)" : "")"
        }
        return nil
    }
}
