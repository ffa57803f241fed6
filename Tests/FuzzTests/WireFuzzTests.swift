import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraWire
@testable import TestSupport

/// Mutates valid messages the way a hostile or broken peer would.
struct WireMutator {
    var rng: SplitMix64
    let corpus: [[[UInt8]]]

    /// Values that stress size arithmetic when written over a header field.
    static let interesting: [UInt64] = [
        0, 1, 2, 0x7F, 0xFF, 0x100, 0xFFFF, 0x1_0000, 1_000_000, 0x7FFF_FFFF,
        0xFFFF_FFFF, 0x1_0000_0000, 1_000_000_000_000, 0x7FFF_FFFF_FFFF_FFFF, .max,
    ]

    mutating func int(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(rng.next() % UInt64(bound)) }

    mutating func randomBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    mutating func next() -> [[UInt8]] {
        var frames = corpus[int(corpus.count)]
        for _ in 0..<(1 + int(3)) { mutate(&frames) }
        return frames
    }

    mutating func mutate(_ frames: inout [[UInt8]]) {
        if frames.isEmpty { frames = [randomBytes(int(64))]; return }
        let f = int(frames.count)
        switch int(10) {
        case 0:  // bit flip
            if !frames[f].isEmpty { frames[f][int(frames[f].count)] ^= 1 << UInt8(int(8)) }
        case 1:  // truncate
            frames[f].removeLast(int(frames[f].count + 1))
        case 2:  // append junk
            frames[f] += randomBytes(1 + int(16))
        case 3, 4:  // length lie / huge dims: overwrite a header window with an interesting value
            let width = [1, 2, 4, 8][int(4)]
            guard frames[0].count >= width else { return }
            let at = int(frames[0].count - width + 1)
            let value = Self.interesting[int(Self.interesting.count)]
            for i in 0..<width { frames[0][at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        case 5:  // random byte
            if !frames[0].isEmpty { frames[0][int(frames[0].count)] = UInt8(truncatingIfNeeded: rng.next()) }
        case 6:  // drop a frame
            frames.remove(at: f)
        case 7:  // add a random frame
            frames.insert(randomBytes(int(48)), at: int(frames.count + 1))
        case 8:  // change the type byte to another valid one (fields now mean something else)
            if frames[0].count > 4 {
                frames[0][4] = WireMessageType.allCases[int(WireMessageType.allCases.count)].rawValue
            }
        default:  // entirely random frame 0 behind a valid prefix
            frames[0] = Array(frames[0].prefix(6)) + randomBytes(int(128))
        }
    }
}

@Suite("Wire decoder fuzzing")
struct WireFuzzTests {
    @Test("≥100 000 mutated messages never crash the decoder")
    func fuzz() {
        let iterations = 120_000
        var mutator = WireMutator(rng: SplitMix64(seed: 0x7E55_E7A1), corpus: WireSamples.all.map { $0.encode() })
        var rejected: [WireError.Kind: Int] = [:]
        var accepted = 0
        var reencodeMismatch = 0
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<iterations {
            let frames = mutator.next()
            do {
                let message = try WireMessage.decode(frames)
                accepted += 1
                // Accepted input must be canonical: it re-encodes to the same bytes.
                if message.encode() != frames { reencodeMismatch += 1 }
            } catch let error as WireError {
                rejected[error.kind, default: 0] += 1
            } catch {
                Issue.record("decode threw a non-WireError: \(error)")
            }
        }
        let elapsed = clock.now - start
        let summary = rejected.sorted { $0.value > $1.value }.map { "\($0.key.rawValue)=\($0.value)" }
            .joined(separator: " ")
        print(
            "wire fuzz: \(iterations) inputs in \(elapsed): accepted \(accepted), rejected "
                + "\(iterations - accepted) [\(summary)]")
        #expect(reencodeMismatch == 0, "\(reencodeMismatch) accepted inputs were not canonical")
        #expect(iterations - accepted > iterations / 2, "most mutations should be rejected")
    }

    @Test("Entirely random frames are rejected")
    func randomFrames() {
        var mutator = WireMutator(rng: SplitMix64(seed: 42), corpus: [[]])
        for _ in 0..<20_000 {
            let frames = (0..<(1 + mutator.int(4))).map { _ in mutator.randomBytes(mutator.int(96)) }
            #expect(throws: WireError.self) { try WireMessage.decode(frames) }
        }
    }
}
