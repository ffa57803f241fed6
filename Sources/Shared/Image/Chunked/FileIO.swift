import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads and folder helpers.
enum FileIO {
    /// The file's bytes, or nil if it does not exist. Other failures throw `.io`.
    static func read(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw MapStoreError(.io, path: path, detail: "cannot open: \(errnoText())")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MapStoreError(.io, path: path, detail: "fstat: \(errnoText())") }
        let size = Int(st.st_size)
        return try [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            var offset = 0
            while offset < size {
                let n = posixRead(fd, buffer.baseAddress! + offset, size - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw MapStoreError(.io, path: path, detail: "read: \(errnoText())")
                }
                if n == 0 { break }
                offset += n
            }
            initialized = offset
        }
    }

    /// The size of a file, or nil if it does not exist.
    static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Creates `path` and its missing parents (mode 0755); existing folders are fine.
    static func makeDirectories(_ path: String) throws {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        guard errno == ENOENT else { throw MapStoreError(.io, path: path, detail: "mkdir: \(errnoText())") }
        try makeDirectories(AtomicFile.split(path).0)
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw MapStoreError(.io, path: path, detail: "mkdir: \(errnoText())")
        }
    }

    /// Names in a folder (without "." and ".."), or nil if it does not exist.
    static func list(_ path: String) -> [String]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

// Unqualified here: inside `FileIO`, `read` names its own method.
private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }
