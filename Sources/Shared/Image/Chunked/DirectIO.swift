import Foundation
import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Uncached file I/O (`O_DIRECT`) for a store whose bytes are written once and read
/// back once, long after (the coordinator's store of an upload job's map): the data
/// goes between the process's buffers and the disk without a page-cache copy. On a
/// virtual machine whose free memory is handed back to the host, every fresh page of
/// cache costs a host fault: buffered writes of a 134 MB map cost the coordinator
/// about 0.45 s of CPU there, uncached ones 0.005 s. It also keeps a 3 GB map from
/// pushing everything else out of the page cache.
///
/// Transfers go through aligned staging buffers kept for reuse (`withStaging`), so the
/// buffers' pages are touched once per process, not once per chunk. A file system
/// that refuses `O_DIRECT` (tmpfs on older kernels, some FUSE mounts) gets buffered I/O
/// instead: `open` retries without the flag, and `disable` turns it off on a
/// descriptor whose transfer was refused.
enum DirectIO {
    /// Offsets, lengths and buffer addresses of uncached transfers are multiples of this.
    static let alignment = 4096
    /// Bytes per staging buffer (and so per write or read call).
    static let stagingBytes = 4 << 20

    /// Linux's `O_DIRECT` (Glibc's Swift module leaves it out: it needs `_GNU_SOURCE`).
    /// Other systems get buffered I/O.
    #if os(Linux) && arch(x86_64)
    private static let flag: Int32 = 0o40000
    #elseif os(Linux) && arch(arm64)
    private static let flag: Int32 = 0o200000
    #else
    private static let flag: Int32 = 0
    #endif

    /// `open` with `O_DIRECT` where the file system allows it, else without.
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Int32 {
        let fd = posixOpen(path, flags | flag | O_CLOEXEC, mode)
        if fd < 0 && errno == EINVAL { return posixOpen(path, flags | O_CLOEXEC, mode) }
        return fd
    }

    /// `openat` (relative to the folder `directory`) with `O_DIRECT` where the file system allows it, else without.
    static func open(in directory: Int32, _ name: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Int32 {
        let fd = openat(directory, name, flags | flag | O_CLOEXEC, mode)
        if fd < 0 && errno == EINVAL { return openat(directory, name, flags | O_CLOEXEC, mode) }
        return fd
    }

    /// Turns `O_DIRECT` off on `fd` after a transfer it refused (`EINVAL`); false if it was not on.
    static func disable(_ fd: Int32) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, flags & flag != 0 else { return false }
        return fcntl(fd, F_SETFL, flags & ~flag) == 0
    }

    static func roundUp(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
    static func roundDown(_ n: Int) -> Int { n / alignment * alignment }

    /// Runs `body` with a staging buffer of `stagingBytes` bytes, aligned for uncached
    /// transfers; a few are kept between calls.
    static func withStaging<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        let buffer = pool.take()
        defer { pool.give(buffer) }
        return try body(UnsafeMutableRawBufferPointer(start: buffer.base, count: stagingBytes))
    }

    private static let pool = StagingPool()
}

// Unqualified here: inside `DirectIO`, `open` names its own method.
private func posixOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }

/// One aligned staging buffer (freed when dropped from the pool).
private final class StagingBuffer: @unchecked Sendable {
    // Safe: the pool hands a buffer to one caller at a time.
    let base: UnsafeMutableRawPointer

    init() {
        var pointer: UnsafeMutableRawPointer?
        guard posix_memalign(&pointer, DirectIO.alignment, DirectIO.stagingBytes) == 0, let pointer else {
            fatalError("out of memory for a \(DirectIO.stagingBytes)-byte staging buffer")
        }
        base = pointer
    }

    deinit { free(base) }
}

/// The staging buffers not in use: at most `kept` stay (one per thread doing uncached
/// transfers at once, in practice the store queue and a reader).
private final class StagingPool: @unchecked Sendable {
    // Safe: `free` is touched only under `lock`.
    private let lock = NSLock()
    private var free: [StagingBuffer] = []
    private let kept = 4

    func take() -> StagingBuffer {
        lock.lock()
        defer { lock.unlock() }
        return free.popLast() ?? StagingBuffer()
    }

    func give(_ buffer: StagingBuffer) {
        lock.lock()
        defer { lock.unlock() }
        if free.count < kept { free.append(buffer) }
    }
}
