#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Write-then-rename: a file appears under its final name only once it is
/// complete. The body writes to a temporary name in the same directory (so
/// the rename is atomic); if it throws, the temporary file is removed and the
/// final name is left as it was.
enum AtomicFile {
    static func write(to path: String, _ body: (_ temporaryPath: String) throws -> Void) throws {
        let (directory, name) = split(path)
        let temporary = "\(directory)/.\(name).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try body(temporary)
            guard rename(temporary, path) == 0 else {
                throw ImageIOError(
                    .io, path: path, detail: "cannot rename the finished file into place: \(errnoText())")
            }
        } catch {
            unlink(temporary)
            throw error
        }
        // Make the rename itself durable; a failure here loses nothing written.
        syncDirectory(directory)
    }

    /// ("dir", "name") of a path; "." for a bare name.
    static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }
}

func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }
