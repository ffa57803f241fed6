extension String {
    /// This text for a log line, an error or a terminal: control and format characters (a newline that forges a
    /// log line, an escape that reaches the terminal, bytes of a damaged file echoed into a message) become '?';
    /// at most `limit` characters, then '…'. Newlines and tabs stay when `keepingLines` (multi-line messages).
    package func printable(limit: Int = Int.max, keepingLines: Bool = false) -> String {
        var out = String(
            String.UnicodeScalarView(
                unicodeScalars.prefix(limit).map {
                    if keepingLines && ($0 == "\n" || $0 == "\t") { return $0 }
                    // (Line and paragraph separators, U+2028 and U+2029, break lines in some viewers: review 34 N4.)
                    switch $0.properties.generalCategory {
                    case .control, .format, .lineSeparator, .paragraphSeparator: return "?"
                    default: return $0
                    }
                }))
        if limit < Int.max && unicodeScalars.count > limit { out += "…" }
        return out
    }

    /// This text on one line: each line break, with the indentation after it, becomes "; " (a worker's
    /// multi-line failure, a model error's list of layers, read in a log line or `status` instead of '?'
    /// for every newline: review 31 F6); blank lines and trailing breaks go. Every line break counts (LF, CR,
    /// CR LF, VT, FF, NEL, U+2028, U+2029).
    package func joinedLines() -> String {
        guard contains(where: \.isNewline) else { return self }
        return split(whereSeparator: \.isNewline)
            .map { $0.trimmingPrefix(while: { $0 == " " || $0 == "\t" }) }
            .filter { !$0.isEmpty }
            .reduce(into: "") { text, line in
                // "layers:\n  a\n  b" reads "layers: a; b".
                if !text.isEmpty { text += text.hasSuffix(":") ? " " : "; " }
                text += line
            }
    }
}
