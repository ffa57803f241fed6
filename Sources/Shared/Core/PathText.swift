/// The folder part of `path`, as `NSString.deletingLastPathComponent` gives it ("a/b" → "a", "/a" → "/",
/// "a" → "", "./o" → "."): that traps (SIGILL) in this Foundation for a one-character relative path such as
/// "o" or "o/", which `submit --out o` met (verification audit 40 N2), as would a slide named "a".
package func parentPath(_ path: String) -> String {
    var p = Substring(path)
    while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
    guard let slash = p.lastIndex(of: "/") else { return "" }
    var parent = p[..<slash]
    while parent.hasSuffix("/") { parent = parent.dropLast() }
    return parent.isEmpty ? "/" : String(parent)
}
