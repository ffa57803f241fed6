import Foundation

/// A warning for each of `folders` (given as `option`) that is not a folder now: a mistyped mount point was
/// found only when jobs were refused or waited (docs/CLI audit 36 F11). A warning, not a refusal: a network
/// mount may come up after the service starts.
package func missingFolderWarnings(_ folders: [String], option: String) -> [String] {
    folders.compactMap { folder in
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) {
            return isFolder.boolValue ? nil : "\(option) \(folder) is a file, not a folder"
        }
        return "\(option) \(folder) does not exist (yet?): jobs under it are refused or wait until it does"
    }
}
