import Foundation

/// The host of a `tcp://HOST:PORT` endpoint, checked before a client waits on it.
enum EndpointHost {
    /// Why `endpoint`'s host name cannot be resolved, when the resolver says it does not
    /// exist (not when it is merely unreachable: a coordinator restarting, DNS slow to come
    /// up, is what the client's retries are for). Nil for addresses and other transports.
    static func unresolvable(_ endpoint: String) -> String? {
        guard endpoint.hasPrefix("tcp://") else { return nil }
        let rest = endpoint.dropFirst("tcp://".count)
        guard !rest.hasPrefix("["), let colon = rest.lastIndex(of: ":") else { return nil }
        // ZeroMQ's "source;host" form connects from a given interface: the host follows ";".
        let host = String(rest[..<colon].split(separator: ";").last ?? "")
        guard !host.isEmpty, host != "*", host.contains(where: { $0.isLetter }) else { return nil }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &result)
        if let result { freeaddrinfo(result) }
        guard status == EAI_NONAME || status == EAI_FAIL else { return nil }
        return "cannot resolve the host '\(host)' of \(endpoint): \(String(cString: gai_strerror(status)))"
    }
}
