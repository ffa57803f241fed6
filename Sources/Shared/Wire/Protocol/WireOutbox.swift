/// The messages waiting to go to one peer of the worker link, in order. A message up to `Wire.pieceBytes`
/// leaves whole; a larger one leaves as `piece`s, each its own ZeroMQ message, so its receiver hears from
/// this side while it crosses (`Wire.Piece`). `pump` sends what the socket takes without blocking and
/// keeps the rest, so a message's pieces go out one after another with nothing between them, however
/// often the socket's queue is full: no message is dropped, none overtakes another.
package struct WireOutbox: Sendable {
    /// What a waiting message is about, for taking it back before it leaves (`removeUnsent`).
    package enum Subject: Equatable, Sendable {
        /// A task, or its outcome (result, receipt, failure).
        case task(Wire.TaskRef, attempt: UInt32)
        case model(Wire.ModelDigest)

        init?(_ message: WireMessage) {
            switch message {
            case .task(let m): self = .task(m.ref, attempt: m.attempt)
            case .tileTask(let m): self = .task(m.ref, attempt: m.attempt)
            case .result(let m): self = .task(Wire.TaskRef(jobID: m.jobID, taskID: m.taskID), attempt: m.attempt)
            case .receipt(let m): self = .task(Wire.TaskRef(jobID: m.jobID, taskID: m.taskID), attempt: m.attempt)
            case .taskFailed(let m): self = .task(Wire.TaskRef(jobID: m.jobID, taskID: m.taskID), attempt: m.attempt)
            case .modelData(let m): self = .model(m.digest)
            default: return nil
            }
        }
    }

    private struct Entry: Sendable {
        let type: WireMessageType
        let subject: Subject?
        let frames: [[UInt8]]
        let sizes: [UInt64]
        let total: Int
        /// Bytes already sent (pieces only).
        var sent = 0
    }

    private var entries: [Entry] = []
    private var head = 0

    package init() {}

    /// Whether nothing waits.
    package var isEmpty: Bool { head == entries.count }
    /// Messages waiting, the one partly sent included.
    package var count: Int { entries.count - head }
    /// Whether a message is partly sent (its other pieces must follow before anything else).
    package var isMidMessage: Bool { !isEmpty && entries[head].sent > 0 }

    package mutating func append(_ message: WireMessage) {
        let frames = message.encode()
        let sizes = frames.map { UInt64($0.count) }
        entries.append(
            Entry(
                type: message.type, subject: Subject(message), frames: frames, sizes: sizes,
                total: frames.reduce(0) { $0 + $1.count }))
    }

    /// Takes back the waiting messages `matches` picks; returns their subjects, in order. A message part-way
    /// out is taken back too when `partlySent`: what this side sends next (a whole message, or a new message's
    /// first piece) tells the receiver to drop the pieces it holds (`PieceAssembler`).
    package mutating func removeUnsent(partlySent: Bool = false, where matches: (Subject) -> Bool) -> [Subject] {
        let first = isMidMessage && !partlySent ? head + 1 : head
        guard first < entries.count else { return [] }
        var removed: [Subject] = []
        var kept = Array(entries[head..<first])
        for e in entries[first...] {
            if let subject = e.subject, matches(subject) {
                removed.append(subject)
            } else {
                kept.append(e)
            }
        }
        entries = kept
        head = 0
        return removed
    }

    /// Drops every waiting message (the connection is being replaced).
    package mutating func removeAll() {
        entries = []
        head = 0
    }

    /// Sends waiting messages (on a ROUTER to `peer`) until the socket's queue for the peer is full or none
    /// waits; returns the bytes sent (routing frames included). Throws the `ZMQError`s other than `.again`
    /// (`.hostUnreachable`: the peer is gone).
    package mutating func pump(_ socket: borrowing ZMQSocket, to peer: RoutingID? = nil) throws -> Int {
        var bytes = 0
        var retried = false
        while head < entries.count {
            do {
                bytes += try sendNext(socket, to: peer)
                retried = false
            } catch ZMQError.again {
                // As in `send(_:to:flags:)`: reading ZMQ_EVENTS lets libzmq see that the peer took messages.
                guard !retried else { break }
                retried = true
                _ = try? socket.get(.events)
            }
        }
        if head == entries.count, head > 0 { removeAll() }
        if head > 64, head * 2 > entries.count {
            entries.removeFirst(head)
            head = 0
        }
        return bytes
    }

    /// Sends the head message whole, or its next piece; each is one atomic ZeroMQ message.
    private mutating func sendNext(_ socket: borrowing ZMQSocket, to peer: RoutingID?) throws -> Int {
        let e = entries[head]
        let routing = peer?.bytes.count ?? 0
        if e.total <= Wire.pieceBytes {
            if let peer { try socket.sendFrame(peer.bytes, more: true, flags: .dontWait) }
            try socket.send(e.frames, flags: .dontWait)
            head += 1
            return routing + e.total
        }
        // A piece never spans two frames: the receiver accepts any cut, and this one needs no copy.
        var start = 0
        var frame = 0
        while start + e.frames[frame].count <= e.sent {
            start += e.frames[frame].count
            frame += 1
        }
        let within = e.sent - start
        let n = min(Wire.pieceBytes, e.frames[frame].count - within)
        let header = WireMessage.pieceHeader(frameSizes: e.sizes, offset: UInt64(e.sent))
        if let peer { try socket.sendFrame(peer.bytes, more: true, flags: .dontWait) }
        try socket.sendFrame(header, more: true, flags: .dontWait)
        try e.frames[frame].withUnsafeBytes { raw in
            try socket.sendFrame(
                bytes: UnsafeRawBufferPointer(rebasing: raw[within..<(within + n)]), more: false, flags: .dontWait)
        }
        entries[head].sent += n
        if entries[head].sent == e.total { head += 1 }
        return routing + header.count + n
    }
}
