import Foundation
import SwiftProtobuf

/// A small reader of protobuf text format that knows nothing about Caffe's schema
/// and only remembers *where* each field is. swift-protobuf's `TextFormat`
/// decoder reports what is wrong but not where; this scanner supplies the line
/// and column: syntax errors directly, schema errors (unknown field, bad number,
/// unknown enum value) by finding the first field whose presence makes the
/// decoder fail.
struct PrototxtScanner {
    /// One `name: value` or `name { … }` field.
    struct Entry {
        var name: String
        /// Byte offsets of the whole field, name to end of value.
        var start: Int
        var end: Int
        /// For a message value: byte offset just after its opening brace, and its fields.
        var bodyStart: Int?
        var children: [Entry]
        var line: Int
        var column: Int
        var isMessage: Bool { bodyStart != nil }
    }

    /// A syntax error at a position (1-based line and column).
    struct SyntaxError: Error {
        var line: Int
        var column: Int
        var message: String
    }

    let bytes: [UInt8]
    private var pos = 0
    /// Blocks open at `pos`: the grammar recurses once per block, so a file of 10 000 nested `{`
    /// overflowed the stack (hostile-input audit: SIGSEGV of the CLI, the coordinator and workers).
    private var depth = 0
    /// Far more than any Caffe net nests (a layer's parameter blocks are 3 or 4 deep), far less than
    /// what the stack holds.
    static let maxDepth = 100
    private var lineStarts: [Int] = [0]

    init(_ text: String) {
        bytes = Array(text.utf8)
        for (i, b) in bytes.enumerated() where b == UInt8(ascii: "\n") { lineStarts.append(i + 1) }
    }

    /// Line and column (1-based, column counted in bytes) of a byte offset.
    func location(of offset: Int) -> (line: Int, column: Int) {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return (lo + 1, offset - lineStarts[lo] + 1)
    }

    /// Parses the whole text into its top-level fields.
    mutating func parse() throws -> [Entry] {
        pos = 0
        let entries = try parseEntries(closer: nil, openedAt: 0)
        return entries
    }

    // MARK: - Tokens

    private enum Token: Equatable {
        case identifier(String)
        case number(String)
        case string
        case punct(UInt8)
        case end
    }

    private func fail(_ offset: Int, _ message: String) -> SyntaxError {
        let (l, c) = location(of: offset)
        return SyntaxError(line: l, column: c, message: message)
    }

    private mutating func skipSpace() {
        while pos < bytes.count {
            let b = bytes[pos]
            if b == UInt8(ascii: "#") {
                while pos < bytes.count, bytes[pos] != UInt8(ascii: "\n") { pos += 1 }
            } else if b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == 0x0B || b == 0x0C {
                pos += 1
            } else {
                return
            }
        }
    }

    private static func isIdentStart(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == UInt8(ascii: "_")
    }
    private static func isIdentChar(_ b: UInt8) -> Bool {
        isIdentStart(b) || (b >= 0x30 && b <= 0x39)
    }

    /// Reads one token; returns it and its start offset.
    private mutating func next() throws -> (Token, Int) {
        skipSpace()
        let start = pos
        guard pos < bytes.count else { return (.end, start) }
        let b = bytes[pos]
        if Self.isIdentStart(b) {
            while pos < bytes.count, Self.isIdentChar(bytes[pos]) || bytes[pos] == UInt8(ascii: ".") { pos += 1 }
            return (.identifier(String(decoding: bytes[start..<pos], as: UTF8.self)), start)
        }
        if (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+") || b == UInt8(ascii: ".") {
            pos += 1
            while pos < bytes.count {
                let c = bytes[pos]
                let exponentSign =
                    (c == UInt8(ascii: "-") || c == UInt8(ascii: "+"))
                    && (bytes[pos - 1] == UInt8(ascii: "e") || bytes[pos - 1] == UInt8(ascii: "E"))
                guard Self.isIdentChar(c) || c == UInt8(ascii: ".") || exponentSign else { break }
                pos += 1
            }
            return (.number(String(decoding: bytes[start..<pos], as: UTF8.self)), start)
        }
        if b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") {
            pos += 1
            while pos < bytes.count, bytes[pos] != b {
                if bytes[pos] == UInt8(ascii: "\n") { break }
                if bytes[pos] == UInt8(ascii: "\\") { pos += 1 }
                pos += 1
            }
            guard pos < bytes.count, bytes[pos] == b else {
                throw fail(start, "unterminated string")
            }
            pos += 1
            return (.string, start)
        }
        if "{}<>[]:,;".utf8.contains(b) {
            pos += 1
            return (.punct(b), start)
        }
        throw fail(start, "unexpected character '\(String(decoding: [b], as: UTF8.self))'")
    }

    private mutating func peek() throws -> (Token, Int) {
        let saved = pos
        defer { pos = saved }
        return try next()
    }

    private func describe(_ t: Token) -> String {
        switch t {
        case .identifier(let s): return "'\(s)'"
        case .number(let s): return "'\(s)'"
        case .string: return "a string"
        case .punct(let p): return "'\(String(decoding: [p], as: UTF8.self))'"
        case .end: return "the end of the file"
        }
    }

    // MARK: - Grammar

    private mutating func parseEntries(closer: UInt8?, openedAt: Int) throws -> [Entry] {
        if closer != nil {
            guard depth < Self.maxDepth else {
                throw fail(openedAt, "blocks nested more than \(Self.maxDepth) deep: this is not a Caffe net")
            }
            depth += 1
        }
        defer { if closer != nil { depth -= 1 } }
        var entries: [Entry] = []
        while true {
            let (tok, at) = try peek()
            switch tok {
            case .end:
                if let closer {
                    let (l, c) = location(of: openedAt)
                    throw fail(
                        at,
                        "missing '\(String(decoding: [closer], as: UTF8.self))' for the block opened "
                            + "at line \(l), column \(c)")
                }
                return entries
            case .punct(let p) where p == closer:
                _ = try next()
                return entries
            case .punct(let p) where p == UInt8(ascii: "}") || p == UInt8(ascii: ">"):
                throw fail(at, "unexpected '\(String(decoding: [p], as: UTF8.self))' with no block open")
            default:
                entries.append(try parseEntry())
            }
        }
    }

    private mutating func parseEntry() throws -> Entry {
        let (tok, start) = try next()
        let name: String
        switch tok {
        case .identifier(let s):
            name = s
        case .punct(UInt8(ascii: "[")):
            // Extension or Any type URL: [some.name]
            var parts = ""
            while true {
                let (t, at) = try next()
                if case .punct(UInt8(ascii: "]")) = t { break }
                if case .end = t { throw fail(at, "missing ']'") }
                if case .identifier(let s) = t { parts += s } else { parts += "/" }
            }
            name = "[\(parts)]"
        default:
            throw fail(start, "expected a field name, found \(describe(tok))")
        }
        let (l, c) = location(of: start)
        var entry = Entry(name: name, start: start, end: start, bodyStart: nil, children: [], line: l, column: c)
        var (t, at) = try next()
        var hadColon = false
        if case .punct(UInt8(ascii: ":")) = t {
            hadColon = true
            (t, at) = try next()
        }
        switch t {
        case .punct(let p) where p == UInt8(ascii: "{") || p == UInt8(ascii: "<"):
            entry.bodyStart = pos
            entry.children = try parseEntries(
                closer: p == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: ">"),
                openedAt: at)
        case .punct(UInt8(ascii: "[")) where hadColon:
            // A list: scalars or messages separated by commas.
            var first = true
            while true {
                let (lt, lat) = try next()
                if case .punct(UInt8(ascii: "]")) = lt, first { break }
                switch lt {
                case .punct(let p) where p == UInt8(ascii: "{") || p == UInt8(ascii: "<"):
                    _ = try parseEntries(
                        closer: p == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: ">"),
                        openedAt: lat)
                case .identifier, .number:
                    break
                case .string:
                    while case .string = try peek().0 { _ = try next() }
                default:
                    throw fail(lat, "expected a value in the list for '\(name)', found \(describe(lt))")
                }
                first = false
                let (sep, sat) = try next()
                if case .punct(UInt8(ascii: "]")) = sep { break }
                guard case .punct(UInt8(ascii: ",")) = sep else {
                    throw fail(sat, "expected ',' or ']' in the list for '\(name)', found \(describe(sep))")
                }
            }
        case .identifier where hadColon, .number where hadColon:
            break
        case .string where hadColon:
            while case .string = try peek().0 { _ = try next() }
        default:
            if hadColon {
                throw fail(at, "expected a value after '\(name):', found \(describe(t))")
            }
            throw fail(at, "expected ':' or '{' after the field name '\(name)', found \(describe(t))")
        }
        entry.end = pos
        // Optional separator.
        if case .punct(let p) = try peek().0, p == UInt8(ascii: ",") || p == UInt8(ascii: ";") {
            _ = try next()
        }
        return entry
    }
}

extension PrototxtScanner {
    /// Finds the innermost field whose presence makes `decodes` fail: the first
    /// top-level field after which a truncated copy (closed with braces) fails,
    /// then the same among its fields. Returns nil when truncation never fails.
    func culprit(in entries: [Entry], decodes: (String) -> Bool) -> Entry? {
        func text(upTo cut: Int, closers: Int) -> String {
            String(decoding: bytes[0..<cut], as: UTF8.self) + String(repeating: "\n}", count: closers)
        }
        // Decoding stops at the first error, so once a prefix fails every longer
        // one does: the first failing sibling is found by bisection, in
        // log2(n) + 1 decodes instead of up to n (a hostile or long file fails fast).
        func search(_ siblings: [Entry], depth: Int) -> Entry? {
            guard let last = siblings.indices.last, !decodes(text(upTo: siblings[last].end, closers: depth)) else {
                return nil
            }
            var lo = 0, hi = last  // siblings[hi]'s prefix fails
            while lo < hi {
                let mid = (lo + hi) / 2
                if decodes(text(upTo: siblings[mid].end, closers: depth)) { lo = mid + 1 } else { hi = mid }
            }
            let entry = siblings[lo]
            if let body = entry.bodyStart {
                // Does the message itself (with no fields) fail? Then its name is the problem.
                if !decodes(text(upTo: body, closers: depth + 1)) { return entry }
                return search(entry.children, depth: depth + 1) ?? entry
            }
            return entry
        }
        return search(entries, depth: 0)
    }

    /// The text with one field replaced by spaces (newlines kept, so positions stay valid).
    /// Every entry of `tree` at the same field path as `target` (names from the top level down):
    /// the same unknown field in every layer, blanked in one pass.
    func entries(atPathOf target: Entry, in tree: [Entry]) -> [Entry] {
        func path(_ entries: [Entry], _ prefix: [String]) -> [String]? {
            for e in entries {
                if e.start == target.start, e.name == target.name { return prefix + [e.name] }
                if e.start < target.start, target.end <= e.end, let p = path(e.children, prefix + [e.name]) { return p }
            }
            return nil
        }
        guard let wanted = path(tree, []) else { return [target] }
        func collect(_ entries: [Entry], _ level: Int, _ out: inout [Entry]) {
            for e in entries where e.name == wanted[level] {
                if level == wanted.count - 1 { out.append(e) } else { collect(e.children, level + 1, &out) }
            }
        }
        var out: [Entry] = []
        collect(tree, 0, &out)
        return out.isEmpty ? [target] : out
    }

    func blanking(_ entry: Entry, in text: [UInt8]) -> [UInt8] {
        var out = text
        for i in entry.start..<entry.end where out[i] != UInt8(ascii: "\n") { out[i] = 0x20 }
        return out
    }

    /// The source text of a field's value (for messages: empty).
    func valueText(_ entry: Entry) -> String {
        guard !entry.isMessage else { return "" }
        let raw = String(decoding: bytes[entry.start..<entry.end], as: UTF8.self)
        guard let colon = raw.firstIndex(of: ":") else { return "" }
        return raw[raw.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
