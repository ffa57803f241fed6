import Testing

@testable import TesseraWire
@testable import TestSupport

@Suite("Wire protocol codec")
struct WireCodecTests {
    @Test("Every message type survives encode → decode", arguments: WireSamples.all)
    func roundTrip(_ message: WireMessage) throws {
        let frames = message.encode()
        #expect(Array(frames[0].prefix(4)) == [0x54, 0x53, 0x52, WireMessage.version])
        #expect(frames[0][4] == message.type.rawValue)
        let decoded = try WireMessage.decode(frames)
        #expect(decoded == message, "decoded \(decoded), expected \(message)")
        #expect(decoded.encode() == frames, "re-encoding changed the bytes")
    }

    @Test("The samples cover every message type")
    func coverage() {
        let covered = Set(WireSamples.all.map(\.type))
        #expect(
            covered == Set(WireMessageType.allCases), "missing \(Set(WireMessageType.allCases).subtracting(covered))")
    }

    @Test("A std sets bit 7 of the channel-order byte; without one the bytes are those of earlier builds")
    func stdFlag() throws {
        func frame(_ p: Wire.Preprocessing) -> [UInt8] {
            WireMessage.submit(
                Wire.JobSpec(
                    mode: .dense, tileSize: 64, preprocessing: p, outputOptions: "", prototxt: .path("a"),
                    weights: .path("b"), image: .path("c"))
            ).encode()[0]
        }
        let plain = frame(Wire.Preprocessing(channelOrder: .rgb, mean: [1, 2, 3]))
        let withStd = frame(Wire.Preprocessing(channelOrder: .rgb, mean: [1, 2, 3], std: [0.5, 0.25, 2]))
        // Header ("TSR", version, type, flags), u8 mode, u32 tile: the channel-order byte follows.
        #expect(plain[11] == Wire.Preprocessing.ChannelOrder.rgb.rawValue)
        #expect(withStd[11] == Wire.Preprocessing.ChannelOrder.rgb.rawValue | 0x80)
        #expect(withStd.count == plain.count + 2 + 12)
        guard
            case .submit(let spec) = try WireMessage.decode(
                WireMessage.submit(
                    Wire.JobSpec(
                        mode: .dense, tileSize: 64,
                        preprocessing: Wire.Preprocessing(channelOrder: .rgb, std: [0.5]), outputOptions: "",
                        prototxt: .path("a"), weights: .path("b"), image: .path("c"))
                ).encode())
        else {
            Issue.record("not a submit")
            return
        }
        #expect(spec.preprocessing.std == [0.5] && spec.preprocessing.channelOrder == .rgb)
    }

    @Test("Result values travel as raw little-endian float32")
    func resultPayloadIsRaw() throws {
        let frames = WireMessage.result(WireSamples.result).encode()
        #expect(frames.count == 2 && frames[1].count == WireSamples.result.values.count * 4)
        #expect(Array(frames[1][4..<8]) == [0x00, 0x00, 0x80, 0x3F], "1.0f should be 00 00 80 3F")
    }

    /// A mutation of a valid message and the error kind it must produce.
    struct BadCase: CustomTestStringConvertible, Sendable {
        let name: String
        let kind: WireError.Kind
        let frames: @Sendable () -> [[UInt8]]
        var testDescription: String { name }
    }

    static func mutated(
        _ message: WireMessage, _ change: @escaping @Sendable (inout [[UInt8]]) -> Void
    )
        -> @Sendable () -> [[UInt8]]
    {
        {
            var frames = message.encode(); change(&frames); return frames
        }
    }

    /// Overwrites a little-endian UInt32 at `offset` of frame 0.
    static func put32(_ value: UInt32, at offset: Int, in frames: inout [[UInt8]]) {
        for i in 0..<4 { frames[0][offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    // Task header offsets: prefix 6, job 8, task 8, attempt 4, digest 32, mode 1 → rect at 59;
    // then rect 16, displacement 8, image size 8 → input dimensions.
    static let taskRect = 59
    static let taskImage = 59 + 16 + 8
    static let taskInputDims = 59 + 16 + 8 + 8

    static let badCases: [BadCase] = [
        BadCase(name: "empty message", kind: .frameCount, frames: { [] }),
        BadCase(name: "wrong magic", kind: .badMagic, frames: mutated(.heartbeat) { $0[0][0] = UInt8(ascii: "X") }),
        BadCase(
            name: "future version", kind: .unsupportedVersion,
            frames: mutated(.heartbeat) { $0[0][3] = WireMessage.version + 1 }),
        BadCase(name: "unknown type", kind: .unknownType, frames: mutated(.heartbeat) { $0[0][4] = 0xEE }),
        BadCase(name: "undefined flags", kind: .badFlags, frames: mutated(.heartbeat) { $0[0][5] = 0x80 }),
        BadCase(name: "header cut inside prefix", kind: .truncated, frames: mutated(.heartbeat) { $0[0].removeLast() }),
        BadCase(
            name: "header cut inside fields", kind: .truncated,
            frames: mutated(.submitted(jobID: 1)) { $0[0].removeLast(3) }),
        BadCase(name: "trailing byte", kind: .trailingBytes, frames: mutated(.cancel(jobID: 1)) { $0[0].append(0) }),
        BadCase(name: "extra frame", kind: .frameCount, frames: mutated(.heartbeat) { $0.append([1]) }),
        BadCase(
            name: "missing payload frame", kind: .frameCount,
            frames: mutated(.result(WireSamples.result)) { $0.removeLast() }),
        BadCase(
            name: "result payload shorter than declared", kind: .sizeMismatch,
            frames: mutated(.result(WireSamples.result)) { $0[1].removeLast(4) }),
        BadCase(
            name: "result with 0 classes", kind: .invalidValue,
            frames: mutated(.result(WireSamples.result)) { put32(0, at: 26, in: &$0) }),
        BadCase(
            name: "task claiming 10^12 output pixels", kind: .limitExceeded,
            frames: mutated(.task(WireSamples.task())) {
                put32(1_000_000, at: taskRect + 8, in: &$0); put32(1_000_000, at: taskRect + 12, in: &$0)
            }),
        BadCase(
            name: "task claiming 10^12 input pixels", kind: .limitExceeded,
            frames: mutated(.task(WireSamples.task())) {
                put32(1_000_000, at: taskInputDims, in: &$0); put32(1_000_000, at: taskInputDims + 4, in: &$0)
            }),
        BadCase(
            name: "task with 4 GiB height", kind: .limitExceeded,
            frames: mutated(.task(WireSamples.task())) { put32(.max, at: taskInputDims, in: &$0) }),
        BadCase(
            name: "task kept classes not ascending", kind: .invalidValue,
            frames: mutated(.task(WireSamples.task())) { put32(0, at: $0[0].count - 4, in: &$0) }),
        BadCase(
            name: "task keeping 70 000 classes", kind: .limitExceeded,
            frames: mutated(.task(WireSamples.task())) { put32(70_000, at: $0[0].count - 12, in: &$0) }),
        BadCase(
            name: "task pixel frame lies", kind: .sizeMismatch,
            frames: mutated(.task(WireSamples.task())) { $0[1].append(0) }),
        BadCase(
            name: "task output rect overflows", kind: .invalidValue,
            frames: mutated(.task(WireSamples.task())) { put32(.max - 1, at: taskRect, in: &$0) }),
        BadCase(
            name: "task image larger than PNG allows", kind: .limitExceeded,
            frames: mutated(.task(WireSamples.task())) { put32(1 << 31, at: taskImage, in: &$0) }),
        BadCase(
            name: "3 bytes per sample", kind: .invalidValue,
            frames: mutated(.task(WireSamples.task())) { $0[0][taskInputDims + 12] = 3 }),
        BadCase(
            name: "displacement outside shift mode", kind: .invalidValue,
            frames: mutated(.task(WireSamples.task(mode: .dense))) { put32(1, at: taskRect + 16, in: &$0) }),
        BadCase(
            name: "NaN raw scale", kind: .invalidValue,
            frames: mutated(.task(WireSamples.task())) { put32(Float.nan.bitPattern, at: taskInputDims + 14, in: &$0) }),
        BadCase(
            name: "infinite mean", kind: .invalidValue,
            frames: mutated(.task(WireSamples.task())) {
                put32(Float.infinity.bitPattern, at: taskInputDims + 24, in: &$0)
            }),
        BadCase(
            name: "negative throughput", kind: .invalidValue,
            frames: { WireMessage.status(Wire.JobStatus(jobID: 1, state: .done, tasksPerSecond: -1)).encode() }),
        BadCase(
            name: "non-UTF-8 string", kind: .invalidString,
            frames: mutated(.error(message: "ab")) { $0[0][$0[0].count - 1] = 0xFF }),
        BadCase(
            name: "NUL in string", kind: .invalidString,
            frames: mutated(.error(message: "ab")) { $0[0][$0[0].count - 1] = 0 }),
        BadCase(
            name: "path in fetch file name", kind: .invalidString,
            frames: { WireMessage.fetchRequest(Wire.FetchRequest(jobID: 1, fileName: "../etc/passwd")).encode() }),
        BadCase(
            name: "string longer than the limit", kind: .limitExceeded,
            frames: { WireMessage.error(message: String(repeating: "x", count: 5000)).encode() }),
        BadCase(
            name: "goodbye count lies", kind: .sizeMismatch,
            frames: mutated(.goodbye([Wire.TaskRef(jobID: 1, taskID: 2)])) { put32(2, at: 6, in: &$0) }),
        BadCase(
            name: "goodbye count huge", kind: .limitExceeded,
            frames: mutated(.goodbye([])) { put32(.max, at: 6, in: &$0) }),
        BadCase(
            name: "fetch chunk beyond total", kind: .invalidValue,
            frames: {
                WireMessage.fetchData(
                    Wire.FetchChunk(
                        jobID: 1, fileName: "a", offset: 8, totalSize: 10,
                        bytes: [1, 2, 3])
                ).encode()
            }),
        BadCase(
            name: "fetch chunk offset overflow", kind: .invalidValue,
            frames: {
                WireMessage.fetchData(
                    Wire.FetchChunk(
                        jobID: 1, fileName: "a", offset: .max, totalSize: .max,
                        bytes: [1])
                ).encode()
            }),
        BadCase(
            name: "submit flag without frame", kind: .frameCount,
            frames: mutated(WireSamples.all.first { $0.type == .submit }!) { $0.removeLast() }),
        BadCase(
            name: "too many frames", kind: .frameCount,
            frames: { [WireMessage.heartbeat.encode()[0]] + Array(repeating: [], count: 8) }),
        BadCase(
            name: "unknown job state", kind: .invalidValue,
            frames: mutated(.status(Wire.JobStatus(jobID: 1, state: .done))) { $0[0][14] = 77 }),
        BadCase(
            name: "zero heartbeat interval", kind: .invalidValue,
            frames: { WireMessage.welcome(Wire.Welcome(heartbeatIntervalMilliseconds: 0)).encode() }),
    ]

    @Test("Malformed messages are rejected with the right reason", arguments: badCases)
    func rejects(_ bad: BadCase) {
        do {
            let message = try WireMessage.decode(bad.frames())
            Issue.record("\(bad.name): decoded \(message) instead of failing")
        } catch let error as WireError {
            #expect(error.kind == bad.kind, "\(bad.name): got \(error), expected \(bad.kind)")
            #expect(!error.reason.isEmpty)
        } catch {
            Issue.record("\(bad.name): threw a non-WireError \(error)")
        }
    }

    /// A task the worker cannot read names itself in the error, so the worker can fail
    /// it instead of leaving its job waiting; a mean for the net's 3 channels is valid
    /// on a 1-channel (grey) input.
    @Test("A rejected task or tile task carries its job, task and attempt")
    func rejectedTasksNameThemselves() throws {
        let huge = Self.mutated(.task(WireSamples.task())) {
            Self.put32(1_000_000, at: Self.taskRect + 8, in: &$0);
            Self.put32(1_000_000, at: Self.taskRect + 12, in: &$0)
        }
        #expect {
            try WireMessage.decode(huge())
        } throws: {
            ($0 as? WireError).map { $0.task?.jobID == 7 && $0.task?.taskID == 42 && $0.task?.attempt == 2 } ?? false
        }
        let tileTask = try #require(WireSamples.all.first { if case .tileTask = $0 { true } else { false } })
        var tile = tileTask.encode()
        tile[0].removeLast(3)
        #expect {
            try WireMessage.decode(tile)
        } throws: { ($0 as? WireError)?.task?.taskID == 45 }
        var grey = WireSamples.task()
        grey.input = Wire.PixelRegion(height: 2, width: 2, channels: 1, bytesPerSample: 1, pixels: [1, 2, 3, 4])
        grey.preprocessing.mean = [104, 117, 123]
        #expect(try WireMessage.decode(WireMessage.task(grey).encode()) == .task(grey))
    }

    @Test("Limits are configurable")
    func limits() throws {
        var tight = WireLimits()
        tight.maxTotalBytes = 16
        #expect(throws: WireError.self) {
            try WireMessage.decode(WireMessage.result(WireSamples.result).encode(), limits: tight)
        }
        tight = WireLimits()
        tight.maxPixelsPerTask = 5
        #expect(throws: WireError.self) {
            try WireMessage.decode(WireMessage.result(WireSamples.result).encode(), limits: tight)
        }
        tight.maxPixelsPerTask = 6
        _ = try WireMessage.decode(WireMessage.result(WireSamples.result).encode(), limits: tight)
        do {
            _ = try WireMessage.decode([[0x54, 0x53, 0x52, 9, 1, 0]])
            Issue.record("version 9 accepted")
        } catch let error as WireError where error.kind == .unsupportedVersion {
            #expect(error.description.hasPrefix("unsupportedVersion:"))
        }
    }
}

extension WireCodecTests {
    /// Operator audit F9: the detailed status travels behind flags bit 1 (added within protocol 3),
    /// so the plain request and reply keep the bytes of earlier builds, and an earlier
    /// build refuses the bit with the words the client falls back on.
    @Test("A plain status keeps the bytes of earlier builds; the detailed one is flags bit 1 and a tail")
    func detailedStatusIsOptional() throws {
        let plainRequest = WireMessage.statusRequest(jobID: 12).encode()
        #expect(
            plainRequest == [[0x54, 0x53, 0x52, WireMessage.version, 0x23, 1, 12, 0, 0, 0, 0, 0, 0, 0]],
            "\(plainRequest)")
        let detailedRequest = WireMessage.statusRequest(jobID: nil, query: Wire.StatusQuery(states: 0b100)).encode()
        #expect(detailedRequest[0][5] == 2, "flags: bit 1 only (no job)")
        #expect(Array(detailedRequest[0][14...]) == [0b100, 0, 0, 0], "mask, list flags, empty owner")

        var plain = WireSamples.detailedStatus
        plain.details = nil
        let plainFrame = WireMessage.status(plain).encode()[0]
        let detailedFrame = WireMessage.status(WireSamples.detailedStatus).encode()[0]
        #expect(plainFrame[5] == 0 && detailedFrame[5] == 2)
        // Header, u64 job, u8 state, 4 × u64, u32 workers, 2 × f64, empty message, no files.
        #expect(plainFrame.count == 6 + 8 + 1 + 32 + 4 + 16 + 2 + 2)
        #expect(Array(detailedFrame[6..<plainFrame.count]) == Array(plainFrame[6...]), "the plain fields come first")
        guard case .status(let decoded) = try WireMessage.decode([plainFrame]) else {
            Issue.record("not a status")
            return
        }
        #expect(decoded.details == nil)

        // What an earlier build's decoder says of a bit it does not define (the client's cue).
        var undefined = detailedRequest[0]
        undefined[5] = 4
        do {
            _ = try WireMessage.decode([undefined])
            Issue.record("flags bit 2 was accepted")
        } catch let error as WireError {
            #expect("\(error)".contains("statusRequest: flags 0x4 not defined"), "\(error)")
        }
    }

    @Test("A detailed status's lists are checked against the bytes left and its values against their ranges")
    func detailedStatusLimits() throws {
        var frame = WireMessage.status(WireSamples.detailedStatus).encode()[0]
        // The job count follows the plain fields: claim more jobs than the header can hold.
        var plain = WireSamples.detailedStatus
        plain.details = nil
        let countAt = WireMessage.status(plain).encode()[0].count
        frame.replaceSubrange(countAt..<countAt + 4, with: [0xFF, 0xFF, 0, 0])
        #expect(throws: WireError.self) { try WireMessage.decode([frame]) }
        // A state mask naming no state (bit 5: "unknown") is refused.
        var request = WireMessage.statusRequest(jobID: nil, query: Wire.StatusQuery()).encode()[0]
        request[14] = 1 << 5
        #expect(throws: WireError.self) { try WireMessage.decode([request]) }
    }
}
