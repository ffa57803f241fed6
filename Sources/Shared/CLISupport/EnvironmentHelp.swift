import Foundation

/// Adds each option's variable to a rendered `--help` screen, under its description:
///
///       --worker-endpoint <worker-endpoint>
///                               Where workers connect (ROUTER). (default: tcp://127.0.0.1:5555)
///                               (env: TESSERA_WORKER_ENDPOINT)
///
/// and an ENVIRONMENT section explaining the rules.
extension EnvironmentTable {
    package func annotateHelp(_ help: String, subcommand: String?) -> String {
        let options = options[subcommand] ?? []
        guard !options.isEmpty else { return help }
        var lines = help.components(separatedBy: "\n")
        // Options are listed after USAGE; an example command in the overview above it
        // may also start a line with `--flag`, and is left as written.
        var i = (lines.firstIndex { $0.hasPrefix("USAGE:") } ?? lines.count - 1) + 1
        while i < lines.count {
            let line = lines[i]
            let indent = line.prefix { $0 == " " }.count
            let body = line.dropFirst(indent)
            guard indent > 0, body.hasPrefix("-"),
                let option = options.first(where: { Self.label(of: body).contains("--\($0.flag)") })
            else { i += 1; continue }
            // The block ends at the next line that is not a continuation of the description.
            var end = i + 1
            while end < lines.count, lines[end].prefix(while: { $0 == " " }).count > indent,
                !lines[end].trimmingCharacters(in: .whitespaces).isEmpty
            { end += 1 }
            let column = end > i + 1 ? lines[i + 1].prefix { $0 == " " }.count : Self.descriptionColumn(of: line)
            lines.insert(
                String(repeating: " ", count: column)
                    + "(env: \(option.variable))\(option.repeats ? " values separated by :" : "")", at: end)
            i = end + 1
        }
        var text = lines.joined(separator: "\n")
        while text.hasSuffix("\n") { text.removeLast() }
        return text + """


            ENVIRONMENT:
              Each option can also be set by the variable shown with it (env: …). The command
              line wins over the environment; an empty variable counts as unset; flags take
              1, true, 0 or false; a repeatable option's variable takes its values separated
              by : (as PATH).

            """
    }

    /// The option's names and value placeholder: the line up to two spaces in a row.
    static func label(of body: Substring) -> [String] {
        let end = body.range(of: "  ")?.lowerBound ?? body.endIndex
        return body[..<end].split(whereSeparator: { $0 == " " || $0 == "," || $0 == "/" }).map(String.init)
    }

    /// Where the description starts on an option's first line (26 if it has none).
    static func descriptionColumn(of line: String) -> Int {
        let indent = line.prefix { $0 == " " }.count
        let body = line.dropFirst(indent)
        guard let gap = body.range(of: "  ") else { return 26 }
        let after = body[gap.upperBound...]
        let spaces = after.prefix { $0 == " " }.count
        return indent + body.distance(from: body.startIndex, to: gap.upperBound) + spaces
    }
}
