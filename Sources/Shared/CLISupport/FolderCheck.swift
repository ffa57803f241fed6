import Foundation

/// A warning for each of `folders` (given as `option`) that is not a folder now: a mistyped mount point was
/// found only when jobs were refused or waited (docs/CLI audit 36 F11). A warning, not a refusal: a network
/// mount may come up after the service starts.
package func missingFolderWarnings(_ folders: [String], option: String) -> [String] {
    folders.compactMap { folder in
        var info = stat()
        if stat(folder, &info) == 0 {
            return info.st_mode & S_IFMT == S_IFDIR ? nil : "\(option) \(folder) is a file, not a folder"
        }
        // "a/" where a is a file: stat says "not a directory", which is the answer (paths audit 41 F13).
        if errno == ENOTDIR { return "\(option) \(folder): a file stands on its path, not a folder" }
        return "\(option) \(folder) does not exist (yet?): jobs under it are refused or wait until it does"
    }
}
