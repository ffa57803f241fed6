import Foundation
import Testing

@testable import TesseraWire
@testable import TestSupport

/// Large messages cross the worker link as pieces (`WireOutbox`, `PieceAssembler`): concurrency audit 42 F1.
@Suite("Pieces of large messages")
struct WirePiecesTests {
    /// A task whose pixels, a result whose values and a model whose files span many pieces, between small messages.
    static func messages() -> [WireMessage] {
        var task = WireSamples.task()
        let side: UInt32 = 700
        task.input = Wire.PixelRegion(
            height: side, width: side, channels: 3, bytesPerSample: 1,
            pixels: (0..<Int(side * side * 3)).map { UInt8(truncatingIfNeeded: $0 &* 31 >> 3) })
        let values = (0..<(2 * 400 * 500)).map { Float($0 % 977) / 977 }
        let result = Wire.TaskResult(
            jobID: 3, taskID: 9, attempt: 1, classes: 2, height: 400, width: 500, values: values)
        let model = Wire.ModelData(
            digest: WireSamples.digest, prototxt: Array(repeating: 0x61, count: Wire.pieceBytes + 17),
            weights: (0..<(3 * Wire.pieceBytes - 5)).map { UInt8(truncatingIfNeeded: $0 * 7) })
        return [
            .heartbeat, .task(task), .modelRequest(WireSamples.digest), .result(result), .modelData(model), .heartbeat,
        ]
    }

    @Test(
        "Messages leave in order, large ones as pieces of at most Wire.pieceBytes, and are joined into equal messages")
    func roundTrip() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context, type: .router)
        try router.applyTesseraDefaults()
        try router.bind(uniqueInproc("pieces"))
        let dealer = try ZMQSocket(context, type: .dealer)
        try dealer.set(.routingID, Array("w".utf8))
        try dealer.applyTesseraDefaults()
        try dealer.connect(try router.lastEndpoint)
        let sent = Self.messages()
        var outbox = WireOutbox()
        for m in sent { outbox.append(m) }
        // Worker to coordinator, then back.
        try Self.deliver(outbox, sent, from: dealer, to: nil, receiver: router)
        _ = try router.send(.heartbeat, to: RoutingID(Array("w".utf8)))
        _ = try dealer.receiveWire()
        try Self.deliver(outbox, sent, from: router, to: RoutingID(Array("w".utf8)), receiver: dealer)
    }

    /// Pumps `outbox` from `sender` and joins what `receiver` gets: it must be `sent`, in order.
    static func deliver(
        _ outbox: WireOutbox, _ sent: [WireMessage], from sender: borrowing ZMQSocket, to peer: RoutingID?,
        receiver: borrowing ZMQSocket
    ) throws {
        var out = outbox
        var assembler = PieceAssembler()
        var received: [WireMessage] = []
        var pieces = 0
        let deadline = Date().addingTimeInterval(20)
        while received.count < sent.count, Date() < deadline {
            _ = try out.pump(sender, to: peer)
            while let envelope = try receiver.receiveWire(dontWait: true) {
                let message = try envelope.message.get()
                if case .piece(let piece) = message {
                    pieces += 1
                    #expect(piece.bytes.count <= Wire.pieceBytes)
                    if case .complete(let whole) = assembler.add(piece, limits: .default) {
                        received.append(try whole.get())
                    }
                } else {
                    #expect(!assembler.inProgress, "a whole message arrived between the pieces of another")
                    received.append(message)
                }
            }
            if received.count < sent.count { usleep(1000) }
        }
        #expect(out.isEmpty)
        #expect(received == sent)
        // 1 470 000 pixel bytes, 1 600 000 value bytes, 1 048 588 file bytes: each header its own piece.
        #expect(pieces >= 6 + 7 + 5 + 3)
    }

    @Test("A queue that is full keeps the rest: nothing dropped, nothing between a message's pieces")
    func fullQueue() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context, type: .router)
        try router.applyTesseraDefaults()
        try router.set(.sendHighWaterMark, 2)
        // In process, so that the queue is what the two high-water marks say (2 + 2 messages): over TCP the
        // kernel's buffers took a varying share of the 4 MB too, and the test failed now and then.
        try router.bind(uniqueInproc("full-queue"))
        let dealer = try ZMQSocket(context, type: .dealer)
        try dealer.set(.routingID, Array("slow".utf8))
        try dealer.set(.receiveHighWaterMark, 2)
        try dealer.applyTesseraDefaults()
        try dealer.connect(try router.lastEndpoint)
        try dealer.send(.heartbeat)
        #expect(try router.waitForMessage(timeoutMilliseconds: 5000))
        _ = try router.receiveWire()
        let peer = RoutingID(Array("slow".utf8))
        var outbox = WireOutbox()
        let sent = Self.messages()
        for m in sent { outbox.append(m) }
        _ = try outbox.pump(router, to: peer)
        #expect(!outbox.isEmpty, "a queue of 2 messages per side took every piece at once")
        var assembler = PieceAssembler()
        var received: [WireMessage] = []
        let deadline = Date().addingTimeInterval(20)
        while received.count < sent.count, Date() < deadline {
            if let envelope = try dealer.receiveWire(dontWait: true) {
                switch try envelope.message.get() {
                case .piece(let piece):
                    if case .complete(let whole) = assembler.add(piece, limits: .default) {
                        received.append(try whole.get())
                    }
                case let m:
                    #expect(!assembler.inProgress)
                    received.append(m)
                }
            } else {
                _ = try outbox.pump(router, to: peer)
                usleep(500)
            }
        }
        #expect(received == sent)
    }

    @Test("Messages not begun are taken back by subject; a message part-way out is not: its receiver holds pieces")
    func removeUnsent() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context, type: .router)
        try router.applyTesseraDefaults()
        try router.set(.sendHighWaterMark, 3)
        // In process: the queue holds exactly 3 + 1 messages (over TCP the kernel's buffers took the whole task
        // now and then, and nothing was part-way out).
        try router.bind(uniqueInproc("remove-unsent"))
        let dealer = try ZMQSocket(context, type: .dealer)
        try dealer.set(.routingID, Array("w".utf8))
        try dealer.set(.receiveHighWaterMark, 1)
        try dealer.applyTesseraDefaults()
        try dealer.connect(try router.lastEndpoint)
        try dealer.send(.heartbeat)
        #expect(try router.waitForMessage(timeoutMilliseconds: 5000))
        _ = try router.receiveWire()
        let messages = Self.messages()  // heartbeat, task (job 7), modelRequest, result (job 3), model, heartbeat
        var outbox = WireOutbox()
        for m in messages { outbox.append(m) }
        _ = try outbox.pump(router, to: RoutingID(Array("w".utf8)))
        #expect(outbox.isMidMessage, "the task's pieces all left at once")
        let taken = outbox.removeUnsent { subject in
            switch subject {
            case .task: true
            case .model: true
            }
        }
        // The task is part-way out and stays; the result and the model had not begun.
        #expect(taken == [.task(Wire.TaskRef(jobID: 3, taskID: 9), attempt: 1), .model(WireSamples.digest)])
        // Taken back part-way only when asked (the caller then sends what tells the receiver to drop its pieces).
        var abandoned = outbox
        #expect(abandoned.removeUnsent(partlySent: true) { _ in true } == [.task(WireSamples.task().ref, attempt: 2)])
        #expect(!abandoned.isMidMessage && abandoned.count == 2)
        var assembler = PieceAssembler()
        var received: [WireMessage] = []
        let deadline = Date().addingTimeInterval(20)
        while received.count < 4, Date() < deadline {
            if let envelope = try dealer.receiveWire(dontWait: true) {
                switch try envelope.message.get() {
                case .piece(let piece):
                    if case .complete(let whole) = assembler.add(piece, limits: .default) {
                        received.append(try whole.get())
                    }
                case let m: received.append(m)
                }
            } else {
                _ = try outbox.pump(router, to: RoutingID(Array("w".utf8)))
                usleep(500)
            }
        }
        #expect(received == [messages[0], messages[1], messages[2], messages[5]])
    }

    @Test("A piece's layout is checked against the limits when it is decoded")
    func decodeLimits() throws {
        func frames(_ sizes: [UInt64], offset: UInt64, bytes: Int) -> [[UInt8]] {
            [WireMessage.pieceHeader(frameSizes: sizes, offset: offset), [UInt8](repeating: 1, count: bytes)]
        }
        var limits = WireLimits()
        limits.maxTotalBytes = 1 << 20
        let cases: [([[UInt8]], WireError.Kind)] = [
            (frames([], offset: 0, bytes: 1), .frameCount),
            (frames(Array(repeating: 100, count: 9), offset: 0, bytes: 1), .frameCount),
            (frames([100, 1 << 20], offset: 0, bytes: 1), .limitExceeded),
            (frames([100, UInt64.max], offset: 0, bytes: 1), .limitExceeded),
            (frames([3, 100], offset: 0, bytes: 1), .invalidValue),
            (frames([100, 100], offset: 150, bytes: 51), .sizeMismatch),
            (frames([100, 100], offset: 200, bytes: 1), .sizeMismatch),
            (frames([100, 100], offset: 0, bytes: 0), .sizeMismatch),
        ]
        for (f, kind) in cases {
            #expect(throws: WireError.self) { try WireMessage.decode(f, limits: limits) }
            do {
                _ = try WireMessage.decode(f, limits: limits)
            } catch let error as WireError {
                #expect(error.kind == kind, "\(error)")
            }
        }
        #expect(throws: Never.self) {
            try WireMessage.decode(frames([100, 100], offset: 150, bytes: 50), limits: limits)
        }
    }

    @Test("Pieces out of order, of another layout, without a first, or holding a piece are refused")
    func assemblerRefusals() throws {
        let header = WireMessage.heartbeat.encode()[0]
        let message = [header, [UInt8](repeating: 7, count: 10)]
        let sizes = message.map { UInt64($0.count) }
        func piece(_ offset: Int, _ bytes: [UInt8], sizes: [UInt64]? = nil) -> Wire.Piece {
            Wire.Piece(frameSizes: sizes ?? message.map { UInt64($0.count) }, offset: UInt64(offset), bytes: bytes)
        }
        var a = PieceAssembler()
        // No first piece.
        guard case .complete(.failure) = a.add(piece(6, [7]), limits: .default) else {
            Issue.record("a piece without its first was kept")
            return
        }
        // Out of order: the message in progress is dropped.
        #expect({ if case .incomplete = a.add(piece(0, Array(header)), limits: .default) { true } else { false } }())
        #expect(a.inProgress)
        guard case .complete(.failure) = a.add(piece(header.count + 1, [7]), limits: .default) else {
            Issue.record("a piece out of order was kept")
            return
        }
        #expect(!a.inProgress)
        // Another layout mid-message.
        _ = a.add(piece(0, Array(header)), limits: .default)
        guard case .complete(.failure) = a.add(piece(header.count, [7], sizes: [sizes[0], 11]), limits: .default)
        else {
            Issue.record("a piece of another layout was kept")
            return
        }
        // Complete pieces whose message is a heartbeat with a payload frame: decoded and refused like any message.
        _ = a.add(piece(0, Array(header)), limits: .default)
        guard case .complete(.failure(let error)) = a.add(piece(header.count, Array(message[1])), limits: .default)
        else {
            Issue.record("a heartbeat with a payload was accepted")
            return
        }
        #expect(error.kind == .frameCount)
        // A piece inside a piece.
        let inner = WireMessage.piece(Wire.Piece(frameSizes: [10, 10], offset: 0, bytes: [1])).encode()
        _ = a.add(Wire.Piece(frameSizes: inner.map { UInt64($0.count) }, offset: 0, bytes: inner[0]), limits: .default)
        guard
            case .complete(.failure(let nested)) = a.add(
                Wire.Piece(frameSizes: inner.map { UInt64($0.count) }, offset: UInt64(inner[0].count), bytes: inner[1]),
                limits: .default)
        else {
            Issue.record("a piece inside a piece was accepted")
            return
        }
        #expect(nested.reason.contains("inside a piece"))
        // A good one after all that.
        let good = WireMessage.modelRequest(WireSamples.digest).encode()
        guard
            case .complete(.success(let m)) = a.add(
                Wire.Piece(frameSizes: [UInt64(good[0].count)], offset: 0, bytes: good[0]), limits: .default)
        else {
            Issue.record("a one-piece message was refused")
            return
        }
        #expect(m == .modelRequest(WireSamples.digest))
        // A message abandoned part-way (its job was revoked): the next message's first piece starts over.
        #expect(
            {
                if case .incomplete = a.add(piece(0, Array(header.prefix(3))), limits: .default) { true } else { false }
            }())
        guard
            case .complete(.success(let next)) = a.add(
                Wire.Piece(frameSizes: [UInt64(good[0].count)], offset: 0, bytes: good[0]), limits: .default)
        else {
            Issue.record("a new message after an abandoned one was refused")
            return
        }
        #expect(next == .modelRequest(WireSamples.digest) && !a.inProgress)
    }

    @Test("A message not admitted at its first piece passes through: only its header is kept, the rest is counted")
    func notAdmitted() throws {
        let result = Wire.TaskResult(
            jobID: 7, taskID: 3, attempt: 2, classes: 2, height: 300, width: 300,
            values: [Float](repeating: 0.5, count: 2 * 300 * 300))
        let frames = WireMessage.result(result).encode()
        let bytes = frames.flatMap { $0 }
        // The pieces a sender cuts: 128 KiB each, the header's start in the first.
        func pieces() -> [Wire.Piece] { WireSamples.pieces(frames) }
        var a = PieceAssembler()
        var asked = 0
        var outcome: PieceAssembler.Outcome = .incomplete
        for p in pieces() {
            outcome = a.add(
                p, limits: .default,
                admit: { first in
                    asked += 1
                    // What the coordinator reads at the first piece: the result's fields, before its values.
                    let header = Array(first.bytes.prefix(Int(first.frameSizes[0])))
                    #expect(WireMessage.resultFields(header)?.taskID == 3)
                    return false
                })
            #expect(a.bytesHeld <= UInt64(frames[0].count), "a message not admitted was held")
        }
        #expect(asked == 1)
        guard case .discarded(let header, let total) = outcome else {
            Issue.record("a message not admitted ended as \(outcome)")
            return
        }
        #expect(header == frames[0] && total == UInt64(bytes.count) && !a.inProgress)
        let fields = try #require(WireMessage.resultFields(header))
        #expect(fields.jobID == 7 && fields.attempt == 2 && fields.classes == 2 && fields.width == 300)
        #expect(WireMessage.resultFields(WireMessage.heartbeat.encode()[0]) == nil)
        #expect(WireMessage.resultFields(Array(frames[0].dropLast())) == nil)
        // Admitted, the same pieces make the message.
        for p in pieces() { outcome = a.add(p, limits: .default, admit: { _ in true }) }
        guard case .complete(.success(.result(let back))) = outcome else {
            Issue.record("an admitted message ended as \(outcome)")
            return
        }
        #expect(back == result)
    }

    @Test("A task cut off names its ids: out of order in the failure, abandoned in the header kept")
    func cutTaskNamesItsIDs() throws {
        var spec = WireSamples.task()
        spec.input = Wire.PixelRegion(
            height: 512, width: 512, channels: 3, bytesPerSample: 1, pixels: [UInt8](repeating: 1, count: 786_432))
        let pieces = WireSamples.pieces(WireMessage.task(spec).encode())
        var a = PieceAssembler()
        _ = a.add(pieces[0], limits: .default)
        guard case .complete(.failure(let error)) = a.add(pieces[2], limits: .default) else {
            Issue.record("a gap was not refused")
            return
        }
        #expect(error.task?.jobID == spec.jobID && error.task?.taskID == spec.taskID)
        #expect(error.task?.attempt == spec.attempt)
        _ = a.add(pieces[0], limits: .default)
        _ = a.add(pieces[1], limits: .default)
        let ids = WireMessage.taskIDs(a.abandon())
        #expect(ids?.jobID == spec.jobID && ids?.taskID == spec.taskID && !a.inProgress)
        // Not a task: no ids, whether a result, a model or a header cut before its ids.
        let result = Wire.TaskResult(jobID: 7, taskID: 42, attempt: 2, classes: 1, height: 1, width: 1, values: [0])
        #expect(WireMessage.taskIDs(WireMessage.result(result).encode()[0]) == nil)
        #expect(WireMessage.taskIDs(Array(WireMessage.task(spec).encode()[0].prefix(12))) == nil)
        #expect(WireMessage.taskIDs(a.abandon()) == nil)
    }
}
