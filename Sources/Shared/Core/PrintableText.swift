extension String {
    /// This text for a log line, an error or a terminal: control and format characters (a newline that forges a
    /// log line, an escape that reaches the terminal, bytes of a damaged file echoed into a message) become '?';
    /// at most `limit` characters, then '…'. Newlines and tabs stay when `keepingLines` (multi-line messages).
    package func printable(limit: Int = Int.max, keepingLines: Bool = false) -> String {
        var out = String(
            String.UnicodeScalarView(
                unicodeScalars.prefix(limit).map {
                    if keepingLines && ($0 == "\n" || $0 == "\t") { return $0 }
                    let category = $0.properties.generalCategory
                    return category == .control || category == .format ? "?" : $0
                }))
        if limit < Int.max && unicodeScalars.count > limit { out += "…" }
        return out
    }
}
