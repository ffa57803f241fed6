import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `.npy` straight from a raw float32 store: a chunk's rows are already the file's
/// bytes, so the file is the store's `NPYStoreView` written out piece by piece (one
/// read per chunk per piece, no decoding). On a little-endian host only.
extension NPY {
    /// Whether `store` can be viewed as a `.npy` (`NPYStoreView`): level 0 float32,
    /// uncompressed, every chunk present (fill values would need the generic path).
    static func copyable(_ store: MapStore) -> Bool {
        guard 1.littleEndian == 1, store.layout.dtype == .float32, store.layout.compression == .none else {
            return false
        }
        let grid = store.layout.tileGrid
        for row in 0..<grid.h {
            for column in 0..<grid.w
            where !FileIO.exists(store.chunkPath(TileIndex(row: row, column: column), level: 0)) {
                return false
            }
        }
        return true
    }

    /// Writes `view`'s bytes after the header into `fd`, 16 MiB at a time.
    static func write(_ view: NPYStoreView, into fd: Int32, header: Int, path: String) throws {
        var offset = header
        while offset < view.size {
            let piece = try view.read(offset: offset, count: 16 << 20)
            try piece.withUnsafeBytes { bytes in
                var done = 0
                while done < bytes.count {
                    let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw ImageIOError(.io, path: path, detail: "write failed: \(errnoText())") }
                    done += n
                }
            }
            offset += piece.count
        }
    }
}
