import Foundation
import Testing

@testable import TesseraCore

@Suite("JSONValue's text, read back by Foundation's JSONDecoder")
struct JSONTextTests {
    /// What Foundation's decoder reads: the reference the writer is checked against.
    enum Parsed: Decodable, Equatable {
        case null, bool(Bool), int(Int64), unsigned(UInt64), number(Double), string(String)
        case array([Parsed]), object([String: Parsed])

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() {
                self = .null
            } else if let b = try? c.decode(Bool.self) {
                self = .bool(b)
            } else if let i = try? c.decode(Int64.self) {
                self = .int(i)
            } else if let u = try? c.decode(UInt64.self) {
                self = .unsigned(u)
            } else if let d = try? c.decode(Double.self) {
                self = .number(d)
            } else if let s = try? c.decode(String.self) {
                self = .string(s)
            } else if let a = try? c.decode([Parsed].self) {
                self = .array(a)
            } else {
                self = .object(try c.decode([String: Parsed].self))
            }
        }
    }

    /// Whether `p` is what `v` should read as (a whole Double reads as an integer; a not-finite one as null).
    static func same(_ v: JSONValue, _ p: Parsed) -> Bool {
        switch (v, p) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.unsigned(let a), .int(let b)): return b >= 0 && a == UInt64(b)
        case (.unsigned(let a), .unsigned(let b)): return a == b
        case (.number(let a), .null): return !a.isFinite
        case (.number(let a), .int(let b)): return a == Double(b) && a == a.rounded()
        case (.number(let a), .number(let b)): return a == b && a.sign == b.sign
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a.count == b.count && zip(a, b).allSatisfy { same($0, $1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.allSatisfy { k, x in b[k].map { same(x, $0) } ?? false }
        default: return false
        }
    }

    static func randomString(_ rng: inout SplitMix64) -> String {
        let pieces: [String] = [
            "a", "Z", "_", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{0}", "\u{1}", "\u{1F}",
            "\u{7F}", "é", "µm", "\u{2028}", "日本", "🧫", "{", "}", ":", ",",
        ]
        return (0..<Int(rng.next() % 12)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined()
    }

    static func randomValue(_ rng: inout SplitMix64, depth: Int) -> JSONValue {
        let numbers: [Double] = [
            0, -0.0, 0.1, 1e-5, 2.5e-300, 1e300, -3, 123_456.75, 9_007_199_254_740_992, 1e16,
            Double.greatestFiniteMagnitude, Double.leastNonzeroMagnitude,
        ]
        switch rng.next() % (depth > 3 ? 6 : 8) {
        case 0: return .null
        case 1: return .bool(rng.next() % 2 == 0)
        case 2: return .int(Int64(bitPattern: rng.next()) >> Int64(rng.next() % 64))
        case 3: return .unsigned(rng.next() >> (rng.next() % 64))
        case 4:
            let pick = rng.next() % 3
            if pick == 0 { return .number(numbers[Int(rng.next() % UInt64(numbers.count))]) }
            if pick == 1 { return .number(Double(Int64(bitPattern: rng.next()) >> 20) / 1024) }
            return .number(Double(bitPattern: rng.next() & 0x7FEF_FFFF_FFFF_FFFF))
        case 5: return .string(randomString(&rng))
        case 6: return .array((0..<Int(rng.next() % 5)).map { _ in randomValue(&rng, depth: depth + 1) })
        default:
            var members: [String: JSONValue] = [:]
            for _ in 0..<Int(rng.next() % 6) { members[randomString(&rng)] = randomValue(&rng, depth: depth + 1) }
            return .object(members)
        }
    }

    @Test("2 000 random documents (control characters, quotes, Unicode, extreme numbers) read back as written")
    func roundTrip() throws {
        var rng = SplitMix64(seed: 29)
        for _ in 0..<2000 {
            let value = JSONValue.array([Self.randomValue(&rng, depth: 0)])
            let text = value.text
            #expect(!text.contains("\n"), "one line: \(text)")
            let parsed = try JSONDecoder().decode(Parsed.self, from: Data(text.utf8))
            #expect(Self.same(value, parsed), "\(text)")
        }
    }

    @Test("Keys sorted by their bytes; whole numbers without a fraction; no NaN; slashes as they are")
    func exactText() {
        let v = JSONValue.object([
            "b": .number(2), "a_b": .number(0.5), "ab": .number(.nan), "A": .string("x/y"), "_": .int(-1),
            "é": .null, "a": .array([.bool(true), .unsigned(UInt64.max), .number(-1e-7)]),
        ])
        #expect(
            v.text
                == #"{"A":"x/y","_":-1,"a":[true,18446744073709551615,-1e-07],"a_b":0.5,"ab":null,"b":2,"é":null}"#)
        #expect(JSONValue.string("q\"\\\u{8}").text == #""q\"\\\u0008""#)
        #expect(JSONValue.string(nil) == .null)
    }
}
