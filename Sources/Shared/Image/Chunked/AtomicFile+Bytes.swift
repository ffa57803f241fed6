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
    static func write(
        _ bytes: UnsafeRawBufferPointer, to path: String, durable: Bool, within root: String? = nil
    )
        throws
    {
        try write(to: path, durable: durable, within: root) { _, put in try put(bytes, 0) }
    }

    /// Write-then-rename where `body` writes the file: `put(bytes, offset)` writes
    /// bytes at an offset (the descriptor is there for `ftruncate` and the like).
    /// `uncached` opens the file for `DirectIO` (then every `put` must be aligned:
    /// address, offset and length); where the file system refuses that, the writes
    /// are buffered. `within`: a folder above `path` (a map store) whose subfolders down to the file's are
    /// entered without following a link (`openParent`).
    static func write(
        to path: String, durable: Bool, uncached: Bool = false, within root: String? = nil,
        _ body: (_ fd: Int32, _ put: (UnsafeRawBufferPointer, Int) throws -> Void) throws -> Void
    ) throws {
        let (directory, name) = split(path)
        let folder =
            try root.map { try openParent(of: path, within: $0) } ?? open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard folder >= 0 else {
            throw MapStoreError(.io, path: path, detail: "cannot open its folder: \(errnoText())")
        }
        defer { close(folder) }
        let temporary = ".\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW
        let fd =
            uncached ? DirectIO.open(in: folder, temporary, flags) : openat(folder, temporary, flags | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw MapStoreError(.io, path: path, detail: "cannot create \(directory)/\(temporary): \(errnoText())")
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
        if failure == nil && renameat(folder, temporary, folder, name) != 0 {
            failure = MapStoreError(.io, path: path, detail: "rename: \(errnoText())")
        }
        if let failure {
            unlinkat(folder, temporary, 0)
            throw failure
        }
        if durable { _ = fsync(folder) }
    }

    /// The folder of `path` (below `root`), opened by entering each folder from `root` down without following a
    /// link: a map store lies in a folder a client controls on shared storage, and a link put in place of one of
    /// its folders had workers (and the coordinator, finishing) write chunks anywhere they may write (hostile-peer
    /// audit 54 F3). `root` itself is entered without following a link in its last component.
    static func openParent(of path: String, within root: String) throws -> Int32 {
        guard path.hasPrefix(root + "/") else {
            throw MapStoreError(.invalidArgument, path: path, detail: "not inside the store \(root)")
        }
        var fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw MapStoreError(
                .io, path: root, detail: "cannot open the store's folder (a link is not followed): \(errnoText())")
        }
        var walked = root
        for component in path.dropFirst(root.count + 1).split(separator: "/").dropLast() {
            walked += "/" + component
            let next = openat(fd, String(component), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let code = errno
            close(fd)
            guard next >= 0 else {
                throw MapStoreError(
                    .io, path: walked,
                    detail: code == ELOOP || code == ENOTDIR
                        ? "a link or a file where the store has a folder: nothing is written through it"
                        : "cannot open: \(errnoText(code))")
            }
            fd = next
        }
        return fd
    }

    static func write(_ bytes: [UInt8], to path: String, durable: Bool, within root: String? = nil) throws {
        try bytes.withUnsafeBytes { try write($0, to: path, durable: durable, within: root) }
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
