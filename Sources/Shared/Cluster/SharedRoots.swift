import Foundation

/// The folders a shared-storage job may name (`--shared-root` of the coordinator and
/// of each worker): a path is allowed if, with `.`/`..` and symbolic links resolved,
/// it is one of them or lies below one, so a link cannot lead outside them.
package struct SharedRoots: Sendable {
    /// The roots, resolved.
    package let roots: [String]
    /// As given (for messages).
    package let given: [String]

    package init(_ roots: [String]) {
        given = roots
        self.roots = roots.map(Self.resolve)
    }

    /// `path` resolved, or nil if it lies outside every root.
    package func contains(_ path: String) -> String? {
        let resolved = Self.resolve(path)
        return roots.contains { resolved == $0 || resolved.hasPrefix($0 == "/" ? "/" : $0 + "/") } ? resolved : nil
    }

    /// The absolute path with `.`/`..` and symbolic links resolved (as far as it exists).
    package static func resolve(_ path: String) -> String {
        if let real = realpath(path, nil) {
            defer { free(real) }
            return String(cString: real)
        }
        return URL(fileURLWithPath: path).standardizedFileURL.path
    }
}
