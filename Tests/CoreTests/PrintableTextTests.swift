import Testing

@testable import TesseraCore

/// A peer's or a file's text made safe for a log line, an error or a terminal.
@Suite("Printable text")
struct PrintableTextTests {
    @Test("Control characters become '?', line breaks only when asked to keep them; the limit adds '…'")
    func printable() {
        #expect("a\u{1B}[31mb\u{7}".printable() == "a?[31mb?")
        #expect("a\u{2028}b\u{2029}c".printable(keepingLines: true) == "a?b?c")
        #expect("one\ntwo\tx".printable() == "one?two?x")
        #expect("one\ntwo\tx".printable(keepingLines: true) == "one\ntwo\tx")
        #expect("abcdef".printable(limit: 3) == "abc…" && "abc".printable(limit: 3) == "abc")
    }

    /// Review 31 F6: a worker's multi-line failure read '?' for each newline in the log and `status`.
    @Test("Line breaks join with '; ' (after a colon, a space), indentation and blank lines go")
    func joinedLines() {
        #expect("plain".joinedLines() == "plain")
        #expect(
            "model error in m.caffemodel:\n  layer 'fc6': no weights\n\n  layer 'fc7': no bias\n".joinedLines()
                == "model error in m.caffemodel: layer 'fc6': no weights; layer 'fc7': no bias")
        #expect("a\r\nb\rc\n\td".joinedLines() == "a; b; c; d")
        #expect("a\u{2028}b\u{85}c\u{0B}d\u{0C}e\u{2029}".joinedLines() == "a; b; c; d; e")
        #expect("\n\n".joinedLines().isEmpty)
        // Joined first, then made printable: an escape is still caught, no line is forged.
        #expect(
            "ok\n2026-01-01 critical \u{1B}[31mforged".joinedLines().printable()
                == "ok; 2026-01-01 critical ?[31mforged")
    }
}
