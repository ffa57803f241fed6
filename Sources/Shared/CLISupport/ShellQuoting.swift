import Foundation

/// `text` as one word of a shell command line: unchanged when it holds only letters, digits and `@%+=:,./_-`,
/// which no shell treats specially, else in single quotes (a `'` inside becomes `'\''`). For commands printed
/// for the user to paste.
package func shellQuoted(_ text: String) -> String {
    let plain =
        !text.isEmpty
        && text.unicodeScalars.allSatisfy { c in
            (c.isASCII && (CharacterSet.alphanumerics.contains(c))) || "@%+=:,./_-".unicodeScalars.contains(c)
        }
    return plain ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
