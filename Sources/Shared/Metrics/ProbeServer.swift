import Foundation

#if canImport(Glibc)
import Glibc
private let streamSocket = Int32(SOCK_STREAM.rawValue)
private let sendFlags = Int32(MSG_NOSIGNAL)
#else
import Darwin
private let streamSocket = SOCK_STREAM
private let sendFlags: Int32 = 0
#endif

/// A minimal HTTP/1.x server for `/metrics`, `/healthz` and `/readyz`, on its own
/// thread with plain POSIX sockets (no event loop to build or start): one request per
/// connection (`Connection: close`), GET and HEAD only, a request head of at most
/// `maxRequestBytes`, `ioTimeoutSeconds` per read or write and `requestDeadlineSeconds`
/// for the whole request, at most `maxConnections` served at once and `maxPerPeer` from
/// one peer address (others are closed at once: one peer holding idle connections
/// cannot starve the kubelet's probes or the scraper). Nothing it does waits on the
/// service it reports on: handlers read snapshots and counters.
package final class ProbeServer: @unchecked Sendable {
    // Safe: `stopping`, `active` and `perPeer` are private and touched only inside `lock`; the
    // listening descriptor is closed once, by `stop()`, after the accept thread ended.

    package struct Response: Sendable {
        package var status: Int
        package var contentType = "text/plain; charset=utf-8"
        package var body: String

        package init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    /// The response for a path (query removed), nil for 404.
    package typealias Handler = @Sendable (_ path: String) -> Response?

    package static let maxRequestBytes = 8192
    package static let maxConnections = 64
    package static let maxPerPeer = 4
    package static let ioTimeoutSeconds = 1
    package static let requestDeadlineSeconds = 2.0

    /// The bound address (the real port when 0 was asked for).
    package let address: MetricsAddress
    private let listener: Int32
    private let handler: Handler
    private let lock = NSLock()
    private var stopping = false
    private var active = 0
    private var perPeer: [[UInt8]: Int] = [:]
    private let finished = DispatchSemaphore(value: 0)
    private var started = false

    /// Binds and listens (errors name the address); `start()` serves.
    package init(address: MetricsAddress, handler: @escaping Handler) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = streamSocket
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &list)
        guard status == 0, let info = list else {
            throw MetricsError("metrics address \(address): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(info.pointee.ai_family, streamSocket, 0)
        guard fd >= 0 else { throw MetricsError("metrics address \(address): socket: \(Self.errnoText())") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let text = Self.errnoText()
            close(fd)
            throw MetricsError("cannot listen for metrics on \(address): \(text)")
        }
        guard listen(fd, 64) == 0 else {
            let text = Self.errnoText()
            close(fd)
            throw MetricsError("cannot listen for metrics on \(address): \(text)")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let port = withUnsafeMutablePointer(to: &storage) { pointer -> UInt16 in
            _ = pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            if Int32(pointer.pointee.ss_family) == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    UInt16(bigEndian: $0.pointee.sin6_port)
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                UInt16(bigEndian: $0.pointee.sin_port)
            }
        }
        self.address = MetricsAddress(host: address.host, port: port)
        self.listener = fd
        self.handler = handler
    }

    deinit {
        stop()
    }

    /// Serves on a new thread until `stop()`.
    package func start() {
        lock.lock()
        started = true
        lock.unlock()
        let thread = Thread { [self] in
            acceptLoop()
            finished.signal()
        }
        thread.name = "tessera-probes"
        thread.start()
    }

    /// Stops accepting and closes the listening socket (requests being answered finish).
    package func stop() {
        lock.lock()
        let wasStopping = stopping
        stopping = true
        let wasStarted = started
        lock.unlock()
        guard !wasStopping else { return }
        if wasStarted { finished.wait() }
        close(listener)
    }

    private var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    private func acceptLoop() {
        while !isStopping {
            var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 200) > 0 else { continue }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener, $0, &length) }
            }
            guard fd >= 0 else { continue }
            let peer = Self.peerAddress(storage)
            lock.lock()
            let admitted = active < Self.maxConnections && perPeer[peer, default: 0] < Self.maxPerPeer
            if admitted {
                active += 1
                perPeer[peer, default: 0] += 1
            }
            lock.unlock()
            guard admitted else {
                close(fd)
                continue
            }
            // A thread per connection, not a dispatch queue: a silent client blocks its
            // thread in recv (up to the timeouts), which must not starve the others.
            let thread = Thread { [self] in
                serve(fd)
                close(fd)
                lock.lock()
                active -= 1
                perPeer[peer, default: 1] -= 1
                if perPeer[peer] == 0 { perPeer[peer] = nil }
                lock.unlock()
            }
            thread.name = "tessera-probe"
            thread.start()
        }
    }

    /// The peer's IP address bytes (its port left out).
    static func peerAddress(_ storage: sockaddr_storage) -> [UInt8] {
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET:
                let offset = MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!
                return Array(raw[offset..<(offset + 4)])
            case AF_INET6:
                let offset = MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!
                return Array(raw[offset..<(offset + 16)])
            default:
                return []
            }
        }
    }

    /// Reads one request head and answers it.
    private func serve(_ fd: Int32) {
        var timeout = timeval(tv_sec: Self.ioTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let deadline = Date().addingTimeInterval(Self.requestDeadlineSeconds)
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while !Self.endsHead(head) {
            guard head.count < Self.maxRequestBytes else {
                write(fd, Response(status: 431, body: "request head over \(Self.maxRequestBytes) bytes\n"), head: false)
                return
            }
            guard Date() < deadline else { return }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return }
            head += buffer[0..<n]
        }
        let (response, isHead) = respond(to: head)
        write(fd, response, head: isHead)
    }

    /// The response to a request head, and whether it was a HEAD request.
    func respond(to head: [UInt8]) -> (Response, Bool) {
        let firstLine =
            head.split(separator: UInt8(ascii: "\r"), maxSplits: 1).first.map { String(decoding: $0, as: UTF8.self) }
            ?? ""
        let parts = firstLine.split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            return (Response(status: 400, body: "bad request line\n"), false)
        }
        let method = parts[0]
        guard method == "GET" || method == "HEAD" else {
            return (Response(status: 405, body: "only GET and HEAD\n"), false)
        }
        let path = String(parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0])
        return (
            handler(path) ?? Response(status: 404, body: "not found: try /metrics, /healthz, /readyz\n"),
            method == "HEAD"
        )
    }

    private static func endsHead(_ bytes: [UInt8]) -> Bool {
        let end: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4 else { return false }
        // The terminator can only be in what arrived last; scanning all is cheap at 8 KiB.
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && Array(bytes[i..<(i + 4)]) == end { return true }
        return false
    }

    private func write(_ fd: Int32, _ response: Response, head: Bool) {
        let body = Array(response.body.utf8)
        let text =
            "HTTP/1.1 \(response.status) \(Self.reason(response.status))\r\n"
            + "Content-Type: \(response.contentType)\r\nContent-Length: \(body.count)\r\n"
            + "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        let bytes = Array(text.utf8) + (head ? [] : body)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, sendFlags) }
            guard n > 0 else { return }
            sent += n
        }
    }

    private static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}
