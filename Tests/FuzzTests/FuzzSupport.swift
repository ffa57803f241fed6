import Foundation
import Testing

@testable import TesseraCore
@testable import TestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Seeded fuzzing of Tessera's file parsers.
//
// Every input is a pure function of (seed, index): input i is made by a
// SplitMix64 seeded with `seed ^ i·φ`, so one failing input can be replayed
// alone. Environment:
//
//   TESSERA_FUZZ_ITERATIONS=N   inputs per target (default: each test's CI count)
//   TESSERA_FUZZ_SEED=S         base seed, decimal or 0x-hex (default: each test's own)
//   TESSERA_FUZZ_INDEX=I        run only input I and print it (hex) before running it
//   TESSERA_FUZZ_DUMP=DIR       write every failing input to DIR/<target>-<seed>-<index>.bin
//
// A crash (trap, segfault, abort) kills the test process; a signal handler
// prints which target and input index were running first, so the input can be
// replayed with TESSERA_FUZZ_SEED/TESSERA_FUZZ_INDEX.

enum FuzzEnvironment {
    static func integer(_ name: String) -> UInt64? {
        guard let text = ProcessInfo.processInfo.environment[name]?.trimmingCharacters(in: .whitespaces),
            !text.isEmpty
        else { return nil }
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
        return UInt64(text.replacingOccurrences(of: "_", with: ""))
    }

    static func iterations(default d: Int) -> Int { integer("TESSERA_FUZZ_ITERATIONS").map { Int($0) } ?? d }
    static func seed(default d: UInt64) -> UInt64 { integer("TESSERA_FUZZ_SEED") ?? d }
    static var onlyIndex: Int? { integer("TESSERA_FUZZ_INDEX").map { Int($0) } }
    static var dumpDirectory: String? { ProcessInfo.processInfo.environment["TESSERA_FUZZ_DUMP"] }
}

// MARK: - Crash reporting

/// What each running target is doing, in memory a signal handler may read
/// (fixed C buffers, no Swift allocation in the handler).
private let crashSlots = 8
private let crashNameBytes = 32
private let crashNames = UnsafeMutablePointer<CChar>.allocate(capacity: crashSlots * crashNameBytes)
private let crashIndices: UnsafeMutablePointer<Int> = {
    let p = UnsafeMutablePointer<Int>.allocate(capacity: crashSlots)
    p.initialize(repeating: -1, count: crashSlots)
    return p
}()
private let crashSeeds = UnsafeMutablePointer<UInt64>.allocate(capacity: crashSlots)
private let crashLock = NSLock()
private var crashSlotUsed = [Bool](repeating: false, count: crashSlots)
private var crashHandlerInstalled = false

private func writeStderr(_ text: UnsafePointer<CChar>, _ count: Int) {
    _ = write(2, text, count)
}

/// Writes `value` in `radix` to stderr without allocating.
private func writeNumber(_ value: UInt64, radix: UInt64) {
    var digits:
        (
            CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar,
            CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar
        ) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    withUnsafeMutableBytes(of: &digits) { raw in
        let buffer = raw.bindMemory(to: CChar.self)
        var v = value
        var at = buffer.count
        repeat {
            at -= 1
            let d = CChar(truncatingIfNeeded: v % radix)
            buffer[at] = d < 10 ? 48 + d : 87 + d
            v /= radix
        } while v > 0 && at > 0
        writeStderr(buffer.baseAddress! + at, buffer.count - at)
    }
}

private func reportCrash(_ sig: Int32) {
    let head = "\n*** fuzz: signal "
    writeStderr(head, head.utf8.count)
    writeNumber(UInt64(sig), radix: 10)
    let mid = " while running:\n"
    writeStderr(mid, mid.utf8.count)
    for slot in 0..<crashSlots where crashIndices[slot] >= 0 {
        let name = crashNames + slot * crashNameBytes
        writeStderr("***   ", 6)
        writeStderr(name, strlen(name))
        writeStderr(" input ", 7)
        writeNumber(UInt64(crashIndices[slot]), radix: 10)
        writeStderr(" (replay: TESSERA_FUZZ_SEED=0x", 30)
        writeNumber(crashSeeds[slot], radix: 16)
        writeStderr(" TESSERA_FUZZ_INDEX=", 20)
        writeNumber(UInt64(crashIndices[slot]), radix: 10)
        writeStderr(")\n", 2)
    }
    // Let the default action (core, exit status) happen.
    signal(sig, SIG_DFL)
    raise(sig)
}

private func installCrashHandler() {
    guard !crashHandlerInstalled else { return }
    crashHandlerInstalled = true
    for s in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE] {
        signal(s) { reportCrash($0) }
    }
}

/// Claims a slot naming `target` for crash reports; returns it.
private func claimCrashSlot(_ target: String, seed: UInt64) -> Int? {
    crashLock.lock()
    defer { crashLock.unlock() }
    installCrashHandler()
    guard let slot = crashSlotUsed.firstIndex(of: false) else { return nil }
    crashSlotUsed[slot] = true
    let name = crashNames + slot * crashNameBytes
    let bytes = Array(target.utf8.prefix(crashNameBytes - 1))
    for (i, b) in bytes.enumerated() { name[i] = CChar(bitPattern: b) }
    name[bytes.count] = 0
    crashSeeds[slot] = seed
    return slot
}

private func releaseCrashSlot(_ slot: Int) {
    crashLock.lock()
    defer { crashLock.unlock() }
    crashIndices[slot] = -1
    crashSlotUsed[slot] = false
}

// MARK: - Runner

/// The outcome of one input that did not crash.
enum FuzzOutcome {
    /// Parsed (and went as far as the target goes).
    case accepted
    /// Refused with an error of the expected type; the label groups refusals in the summary.
    case rejected(String)
}

struct FuzzSummary {
    var target: String
    var seed: UInt64
    var inputs = 0
    var accepted = 0
    var rejected: [String: Int] = [:]
    var seconds = 0.0
    var slowest = 0.0
    var slowestIndex = -1
    var inputsPerSecond: Double { seconds > 0 ? Double(inputs) / seconds : 0 }

    var text: String {
        let top = rejected.sorted { $0.value > $1.value }.prefix(8).map { "\($0.key)=\($0.value)" }.joined(
            separator: " ")
        return "\(target) fuzz: \(inputs) inputs (seed 0x\(String(seed, radix: 16))) in "
            + String(format: "%.1f s = %.0f inputs/s", seconds, inputsPerSecond)
            + "; accepted \(accepted), rejected \(inputs - accepted) [\(top)]; slowest input #\(slowestIndex) "
            + String(format: "%.1f ms", slowest * 1000)
    }
}

/// Runs `iterations` inputs (or the one TESSERA_FUZZ_INDEX names) through `body`.
/// `make` builds input `index` from its own generator; `body` returns the outcome
/// and throws only for an unexpected failure (a wrong error type, a broken
/// invariant), which is recorded with the seed, index and the input's bytes.
func runFuzz(
    target: String, seed defaultSeed: UInt64, iterations defaultIterations: Int,
    slowLimit: Double = 2.0,
    make: (inout SplitMix64, Int) -> [UInt8],
    body: ([UInt8]) throws -> FuzzOutcome
) -> FuzzSummary {
    let seed = FuzzEnvironment.seed(default: defaultSeed)
    let only = FuzzEnvironment.onlyIndex
    let iterations = FuzzEnvironment.iterations(default: defaultIterations)
    let indices: Range<Int> = only.map { $0..<($0 + 1) } ?? 0..<iterations
    var summary = FuzzSummary(target: target, seed: seed)
    let slot = claimCrashSlot(target, seed: seed)
    defer { if let slot { releaseCrashSlot(slot) } }
    var failures = 0
    let clock = ContinuousClock()
    let start = clock.now
    for index in indices {
        var rng = SplitMix64(seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
        let input = make(&rng, index)
        if only != nil {
            print(
                "\(target) input #\(index) (seed 0x\(String(seed, radix: 16))), \(input.count) bytes:\n"
                    + hex(input, limit: 1 << 20))
        }
        if let slot { crashIndices[slot] = index }
        let t0 = clock.now
        let outcome: FuzzOutcome
        do {
            outcome = try body(input)
        } catch {
            failures += 1
            if failures <= 5 {
                let message =
                    "\(target) input #\(index) (seed 0x\(String(seed, radix: 16))): \(error)\n"
                    + "replay: TESSERA_FUZZ_SEED=0x\(String(seed, radix: 16)) TESSERA_FUZZ_INDEX=\(index)\n"
                    + "input (\(input.count) bytes): \(hex(input, limit: 4096))"
                Issue.record(Comment(rawValue: message))
            }
            dump(input, target: target, seed: seed, index: index)
            outcome = .rejected("UNEXPECTED")
        }
        let elapsed = clock.now - t0
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        if seconds > summary.slowest { (summary.slowest, summary.slowestIndex) = (seconds, index) }
        if seconds > slowLimit {
            failures += 1
            let message =
                "\(target) input #\(index) (seed 0x\(String(seed, radix: 16))) took "
                + String(format: "%.2f s", seconds) + ": a hostile input must be refused quickly\n"
                + "input (\(input.count) bytes): \(hex(input, limit: 4096))"
            Issue.record(Comment(rawValue: message))
            dump(input, target: target, seed: seed, index: index)
        }
        summary.inputs += 1
        switch outcome {
        case .accepted: summary.accepted += 1
        case .rejected(let label): summary.rejected[label, default: 0] += 1
        }
    }
    let total = clock.now - start
    summary.seconds = Double(total.components.seconds) + Double(total.components.attoseconds) * 1e-18
    print(summary.text)
    return summary
}

func hex(_ bytes: [UInt8], limit: Int) -> String {
    let shown = bytes.prefix(limit).map { String(format: "%02x", $0) }.joined()
    return bytes.count > limit ? shown + "… (\(bytes.count - limit) more bytes)" : shown
}

private func dump(_ input: [UInt8], target: String, seed: UInt64, index: Int) {
    guard let dir = FuzzEnvironment.dumpDirectory else { return }
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = "\(dir)/\(target)-\(String(seed, radix: 16))-\(index).bin"
    try? Data(input).write(to: URL(fileURLWithPath: path))
}

/// Writes a fuzz input to a file (the readers under test take paths), with
/// plain POSIX calls: Foundation's file writing costs more than the parsing.
func writeInput(_ bytes: [UInt8], to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { throw FuzzInvariantError("cannot create \(path): errno \(errno)") }
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == bytes.count else { throw FuzzInvariantError("cannot write \(path): errno \(errno)") }
}

/// A scratch directory for fuzz inputs, in memory (/dev/shm) where there is one.
func fuzzScratchDirectory() throws -> TemporaryDirectory {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory), isDirectory.boolValue,
        access("/dev/shm", W_OK) == 0
    {
        return try TemporaryDirectory(under: "/dev/shm")
    }
    return try TemporaryDirectory()
}

/// An error a parser must never throw: the input crossed a line it should not.
struct FuzzInvariantError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

// MARK: - Mutations

/// Values that stress size and index arithmetic when they replace a number.
let fuzzInterestingIntegers: [UInt64] = [
    0, 1, 2, 3, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, 0x1_0001, 1 << 20, (1 << 20) + 1,
    1 << 24, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 1 << 40, 1 << 53, 0x7FFF_FFFF_FFFF_FFFF,
    0x8000_0000_0000_0000, .max,
]

extension SplitMix64 {
    mutating func int(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound)) }
    mutating func chance(_ n: Int) -> Bool { int(n) == 0 }
    mutating func pick<T>(_ array: [T]) -> T { array[int(array.count)] }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
    mutating func interesting() -> UInt64 { pick(fuzzInterestingIntegers) }
}

/// Byte-level mutations that know nothing about the format.
enum ByteMutation {
    static func mutate(_ data: inout [UInt8], _ rng: inout SplitMix64, donors: [[UInt8]]) {
        if data.isEmpty { data = rng.bytes(1 + rng.int(32)); return }
        switch rng.int(9) {
        case 0:  // bit flip
            data[rng.int(data.count)] ^= 1 << UInt8(rng.int(8))
        case 1:  // boundary byte
            data[rng.int(data.count)] = rng.pick([0, 0xFF, 0x7F, 0x80, 1, 0xFE])
        case 2:  // truncate
            data.removeLast(1 + rng.int(data.count))
        case 3:  // duplicate a range somewhere else
            let (a, n) = range(in: data.count, &rng)
            data.insert(contentsOf: data[a..<(a + n)], at: rng.int(data.count + 1))
        case 4:  // splice a range of another input
            let donor = rng.pick(donors)
            guard !donor.isEmpty else { return }
            let (a, n) = range(in: donor.count, &rng)
            let at = rng.int(data.count + 1)
            let cut = min(data.count - at, rng.int(n + 1))
            data.replaceSubrange(at..<(at + cut), with: donor[a..<(a + n)])
        case 5:  // delete a range
            let (a, n) = range(in: data.count, &rng)
            data.removeSubrange(a..<(a + n))
        case 6:  // insert random bytes
            data.insert(contentsOf: rng.bytes(1 + rng.int(16)), at: rng.int(data.count + 1))
        case 7:  // overwrite 1, 2, 4 or 8 bytes with an interesting integer, either byte order
            let width = rng.pick([1, 2, 4, 8])
            guard data.count >= width else { return }
            let at = rng.int(data.count - width + 1)
            let value = rng.interesting()
            let big = rng.chance(2)
            for i in 0..<width {
                let shift = UInt64(8 * (big ? width - 1 - i : i))
                data[at + i] = UInt8(truncatingIfNeeded: value >> shift)
            }
        default:  // random byte
            data[rng.int(data.count)] = UInt8(truncatingIfNeeded: rng.next())
        }
    }

    /// A range (start, length ≥ 1) mostly short, within `count` (> 0).
    static func range(in count: Int, _ rng: inout SplitMix64) -> (Int, Int) {
        let a = rng.int(count)
        let n = 1 + rng.int(min(count - a, rng.chance(4) ? count : 64))
        return (a, n)
    }
}
