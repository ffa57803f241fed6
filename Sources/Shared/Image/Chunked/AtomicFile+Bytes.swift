import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Write-then-rename of bytes already in memory (store chunks and metadata): the
/// temporary name `.NAME.tmp-PID-RANDOM` lies in the same folder (so the rename
/// is atomic); zarr readers ignore such names, and a crash leaves at worst one
/// of them. With `durable`, the data is fsynced before the rename and the folder
/// after it, so the file survives a power cut once this returns.
extension AtomicFile {
    static func write(_ bytes: UnsafeRawBufferPointer, to path: String, durable: Bool) throws {
        try write(to: path, durable: durable) { _, put in try put(bytes, 0) }
    }

    /// Write-then-rename where `body` writes the file: `put(bytes, offset)` writes
    /// bytes at an offset (the descriptor is there for `ftruncate` and the like).
    /// `uncached` opens the file for `DirectIO` (then every `put` must be aligned:
    /// address, offset and length); where the file system refuses that, the writes
    /// are buffered.
    static func write(
        to path: String, durable: Bool, uncached: Bool = false,
        _ body: (_ fd: Int32, _ put: (UnsafeRawBufferPointer, Int) throws -> Void) throws -> Void
    ) throws {
        let (directory, name) = split(path)
        let temporary = "\(directory)/.\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let flags = O_WRONLY | O_CREAT | O_TRUNC
        let fd = uncached ? DirectIO.open(temporary, flags) : open(temporary, flags | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw MapStoreError(.io, path: path, detail: "cannot create \(temporary): \(errnoText())")
        }
        func put(_ bytes: UnsafeRawBufferPointer, _ at: Int) throws {
            var offset = 0
            while offset < bytes.count {
                let n = pwrite(fd, bytes.baseAddress! + offset, bytes.count - offset, off_t(at + offset))
                if n < 0 {
                    if errno == EINTR || (errno == EINVAL && uncached && DirectIO.disable(fd)) { continue }
                    throw MapStoreError(.io, path: path, detail: "write: \(errnoText())")
                }
                offset += n
            }
        }
        var failure: (any Error)?
        do {
            try body(fd, put)
        } catch {
            failure = error
        }
        if failure == nil && durable && fsync(fd) != 0 {
            failure = MapStoreError(.io, path: path, detail: "fsync: \(errnoText())")
        }
        if close(fd) != 0 && failure == nil {
            failure = MapStoreError(.io, path: path, detail: "close: \(errnoText())")
        }
        if failure == nil && rename(temporary, path) != 0 {
            failure = MapStoreError(.io, path: path, detail: "rename: \(errnoText())")
        }
        if let failure {
            unlink(temporary)
            throw failure
        }
        if durable { syncDirectory(directory) }
    }

    static func write(_ bytes: [UInt8], to path: String, durable: Bool) throws {
        try bytes.withUnsafeBytes { try write($0, to: path, durable: durable) }
    }

    static func write(_ text: String, to path: String, durable: Bool) throws {
        try write(Array(text.utf8), to: path, durable: durable)
    }

    /// Makes a folder's entries durable (best effort: some file systems cannot sync folders).
    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}
