/// A ROUTER peer's routing id (the first frame libzmq adds on receive). Opaque;
/// chosen by the peer, so not proof of identity: use `WireEnvelope.userID` for that.
package struct RoutingID: Hashable, Sendable, CustomStringConvertible {
    package let bytes: [UInt8]
    package init(_ bytes: [UInt8]) { self.bytes = bytes }
    /// Hex, for logs.
    package var description: String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
}

/// One received protocol message with where it came from. Malformed messages are not
/// thrown: `message` is `.failure` with the reason, so the caller can log the peer and
/// go on serving.
package struct WireEnvelope: Sendable {
    /// The sender, on a ROUTER socket; nil on DEALER/PAIR.
    package var peer: RoutingID?
    /// The ZAP `User-Id` of the sender's connection (key name in CURVE mode).
    package var userID: String?
    /// The sender's IP address, when known.
    package var peerAddress: String?
    /// The CURVE key (Z85) the sender's connection authenticated with (`ZMQMessage.curveKey`).
    package var curveKey: String? = nil
    /// The decoded message, or why it was rejected.
    package var message: Result<WireMessage, WireError>
    /// Bytes received, all frames together (routing frame included).
    package var byteCount = 0
}

extension ZMQSocket {
    /// Encodes and sends `message`; on a ROUTER pass the peer's routing id `to`.
    /// Throws `ZMQError` (`.hostUnreachable` for a gone peer with `ROUTER_MANDATORY`,
    /// `.again` with `.dontWait` when the peer's pipe is full).
    /// Returns the bytes sent (all frames, routing frame included).
    @discardableResult
    package func send(_ message: WireMessage, to peer: RoutingID? = nil, flags: ZMQSendFlags = []) throws -> Int {
        do {
            return try sendOnce(message, to: peer, flags: flags)
        } catch ZMQError.again where peer != nil && flags.contains(.dontWait) {
            // A ROUTER counts a peer's queue as full until it processes its I/O thread's word that the messages
            // were taken, which a send does at most about once a millisecond: a client answered quickly twice in a
            // row (queue of 2) had its reply dropped though it read every one (about 1 in 700 status requests
            // under load). Reading ZMQ_EVENTS processes that word now; a peer that really reads nothing stays full.
            // A ROUTER refuses at the routing frame, before any part of the message is queued.
            _ = try? get(.events)
            return try sendOnce(message, to: peer, flags: flags)
        }
    }

    private func sendOnce(_ message: WireMessage, to peer: RoutingID?, flags: ZMQSendFlags) throws -> Int {
        if case .result(let result) = message {
            try sendResult(result, to: peer, flags: flags)
            return (peer?.bytes.count ?? 0) + WireMessage.resultHeader(result).count + result.values.count * 4
        }
        let frames = message.encode()
        if let peer { try sendFrame(peer.bytes, more: true, flags: flags) }
        try send(frames, flags: flags)
        return (peer?.bytes.count ?? 0) + frames.reduce(0) { $0 + $1.count }
    }

    /// Sends a `result` with its float32 payload read straight from `result.values`
    /// (no intermediate byte array; libzmq copies it once).
    package func sendResult(_ result: Wire.TaskResult, to peer: RoutingID? = nil, flags: ZMQSendFlags = []) throws {
        if let peer { try sendFrame(peer.bytes, more: true, flags: flags) }
        try sendFrame(WireMessage.resultHeader(result), more: true, flags: flags)
        #if _endian(little)
        try result.values.withUnsafeBytes { try sendFrame(bytes: $0, more: false, flags: flags) }
        #else
        try sendFrame(WireMessage.floatBytes(result.values), more: false, flags: flags)
        #endif
    }

    /// Receives and decodes one message (blocking; `dontWait: true` returns nil when
    /// nothing is queued). On a ROUTER the routing frame becomes `peer`. Messages over
    /// the frame/byte limits are drained and reported as `.failure(.limitExceeded)`.
    /// Throws only `ZMQError` (e.g. `.terminated`).
    package func receiveWire(limits: WireLimits = .default, dontWait: Bool = false) throws -> WireEnvelope? {
        let envelopeFrames = type == .router ? 1 : 0
        let maxFrames = limits.maxFrames + envelopeFrames
        let maxBytes = limits.maxTotalBytes.addingReportingOverflow(256).overflow ? Int.max : limits.maxTotalBytes + 256
        guard
            let (received, oversized) = try receiveBounded(dontWait: dontWait, maxFrames: maxFrames, maxBytes: maxBytes)
        else { return nil }
        if oversized {
            // Answered and logged like any malformed message: the peer is known (hostile-input audit: a
            // request of 9 frames got no reply and left no log line).
            let peer = envelopeFrames == 1 ? received.frames.first.map { RoutingID($0) } : nil
            return WireEnvelope(
                peer: peer, userID: received.userID, peerAddress: received.peerAddress, curveKey: received.curveKey,
                message: .failure(
                    WireError(
                        .limitExceeded,
                        "message over \(maxFrames - envelopeFrames) frames or \(maxBytes) bytes (discarded)")))
        }
        var frames = received.frames
        var peer: RoutingID?
        if envelopeFrames == 1, !frames.isEmpty { peer = RoutingID(frames.removeFirst()) }
        let result: Result<WireMessage, WireError>
        do {
            result = .success(try WireMessage.decode(frames, limits: limits))
        } catch let error as WireError {
            result = .failure(error)
        } catch {
            result = .failure(WireError(.invalidValue, "\(error)"))
        }
        return WireEnvelope(
            peer: peer, userID: received.userID, peerAddress: received.peerAddress, curveKey: received.curveKey,
            message: result,
            byteCount: received.frames.reduce(0) { $0 + $1.count })
    }
}
