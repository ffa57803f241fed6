import Foundation
import TesseraCluster
import TesseraCore

/// Reads of the coordinator's own files (outputs served to clients, stored uploads)
/// with one `pread` per piece: Foundation's `FileHandle.read(upToCount:)` reads 4 KiB
/// per system call, 4 096 calls for one 16 MiB download piece.
enum StoredFile {
    /// Up to `maxBytes` from `offset` of `path`, and the file's size; nil if the file is missing.
    static func read(
        _ path: String, offset: UInt64, maxBytes: Int
    ) throws(ClusterError) -> (total: UInt64, bytes: [UInt8])? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw ClusterError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw ClusterError("cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        let total = UInt64(st.st_size)
        guard offset <= total else { return (total, []) }
        let count = Int(min(UInt64(max(0, maxBytes)), total - offset))
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var done = 0
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    failure = n < 0 ? errno : EIO
                    break
                }
                done += n
            }
            initialized = done
        }
        guard failure == 0 else {
            throw ClusterError("cannot read \(path): \(String(cString: strerror(failure)))")
        }
        return (total, bytes)
    }

    /// The size and CRC-32 of a stored file, read 16 MiB at a time (a raw upload can be gigabytes).
    static func check(_ path: String) throws(ClusterError) -> (bytes: Int, crc: UInt32) {
        var (bytes, crc) = (0, UInt32(0))
        while true {
            guard let (_, piece) = try read(path, offset: UInt64(bytes), maxBytes: 16 << 20) else {
                throw ClusterError("\(path) is missing")
            }
            if piece.isEmpty { return (bytes, crc) }
            crc = piece.withUnsafeBytes { CRC32.update(crc, $0) }
            bytes += piece.count
        }
    }
}
