import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads and folder helpers.
package enum FileIO {
    /// What `read` takes by default: a store's metadata (`.zattrs`, `.zarray`) and records are a few KiB.
    package static let metadataLimit = 16 << 20

    /// The bytes of the regular file at `path`, or nil if it does not exist. Files in a map store sit in a folder
    /// a client may control (shared storage): a FIFO or device there, or a file over `limit` bytes, throws
    /// (`.io`, `.corrupt`) without blocking or allocating (hostile-peer audit 54: a FIFO `.zattrs` froze the
    /// coordinator's loop and every worker that opened the store; a sparse 1 TiB one aborted the coordinator).
    package static func read(_ path: String, limit: Int = metadataLimit) throws -> [UInt8]? {
        // Non-blocking: opening a FIFO without a writer would wait for one.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw MapStoreError(.io, path: path, detail: "cannot open: \(errnoText())")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MapStoreError(.io, path: path, detail: "fstat: \(errnoText())") }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw MapStoreError(
                .io, path: path,
                detail: st.st_mode & S_IFMT == S_IFDIR
                    ? "a folder, not a file" : "not a regular file (a FIFO, socket or device): it is not read")
        }
        let size = Int(st.st_size)
        guard size <= limit else {
            throw MapStoreError(.corrupt, path: path, detail: "\(size) bytes, more than such a file holds (\(limit))")
        }
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

    /// The most a chunk of `raw` bytes can take compressed (Blosc's and zlib's overheads are far below this).
    package static func chunkLimit(raw: Int) -> Int { raw + raw / 16 + 4096 }

    /// `read`'s bytes as UTF-8 text; nil when it does not exist or cannot be read.
    package static func text(_ path: String, limit: Int = metadataLimit) -> String? {
        (try? read(path, limit: limit)).flatMap { $0 }.map { String(decoding: $0, as: UTF8.self) }
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
