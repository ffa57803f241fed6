import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `.npy` straight from a raw float32 store: a chunk's rows are already the file's
/// bytes, so each run goes from the chunk file to its place in the `.npy` inside
/// the kernel (`copy_file_range`) — no buffer in this process, and a chunk's
/// padding is never read. On a little-endian host only.
extension NPY {
    /// Whether `store` can be written by `copy(_:into:at:)`: level 0 float32,
    /// uncompressed, every chunk present (fill values would need the generic path).
    static func copyable(_ store: MapStore) -> Bool {
        #if os(Linux)
        guard 1.littleEndian == 1, store.layout.dtype == .float32, !store.layout.compressed else { return false }
        let grid = store.layout.tileGrid
        for row in 0..<grid.h {
            for column in 0..<grid.w
            where !FileIO.exists(store.chunkPath(TileIndex(row: row, column: column), level: 0)) {
                return false
            }
        }
        return true
        #else
        return false
        #endif
    }

    /// Copies every chunk's rows of `store` into `fd` after a `header`-byte header
    /// ((C, H, W) float32 C order). Falls back to read + write for a chunk whose file
    /// system cannot copy between the two files.
    static func copy(_ store: MapStore, into fd: Int32, header: Int, path: String) throws {
        let layout = store.layout
        let (height, width, side) = (layout.height, layout.width, layout.tileSize)
        var buffer: [UInt8] = []
        let grid = layout.tileGrid
        for row in 0..<grid.h {
            for column in 0..<grid.w {
                let tile = TileIndex(row: row, column: column)
                let rect = layout.rect(of: tile)
                let chunkPath = store.chunkPath(tile, level: 0)
                let src = open(chunkPath, O_RDONLY | O_CLOEXEC)
                guard src >= 0 else { throw MapStoreError(.io, path: chunkPath, detail: "cannot open: \(errnoText())") }
                defer { close(src) }
                var st = stat()
                guard fstat(src, &st) == 0, Int(st.st_size) == layout.chunkBytes(0) else {
                    throw MapStoreError(
                        .truncated, path: chunkPath,
                        detail: "a raw chunk of \(st.st_size) bytes, expected \(layout.chunkBytes(0))")
                }
                let run = rect.width * 4
                for c in 0..<layout.classes {
                    for y in 0..<rect.height {
                        let from = ((c * side + y) * side) * 4
                        let to = header + ((c * height + rect.y + y) * width + rect.x) * 4
                        try copyRun(src, from, fd, to, run, &buffer, chunkPath, path)
                    }
                }
            }
        }
    }

    private static func copyRun(
        _ src: Int32, _ from: Int, _ dst: Int32, _ to: Int, _ count: Int, _ buffer: inout [UInt8],
        _ chunkPath: String, _ path: String
    ) throws {
        var done = 0
        #if os(Linux)
        if buffer.isEmpty {
            while done < count {
                var inOff = off_t(from + done), outOff = off_t(to + done)
                let n = copyFileRange(src, &inOff, dst, &outOff, count - done, 0)
                if n > 0 {
                    done += n
                    continue
                }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP].contains(errno) { break }  // copy by hand
                throw ImageIOError(
                    .io, path: path, detail: "copying from \(chunkPath): \(n == 0 ? "short chunk" : errnoText())")
            }
            if done == count { return }
            buffer = [UInt8](repeating: 0, count: 1 << 20)  // from now on, through memory
        }
        #endif
        while done < count {
            let part = min(count - done, buffer.count)
            let n = buffer.withUnsafeMutableBytes { pread(src, $0.baseAddress!, part, off_t(from + done)) }
            guard n > 0 else {
                if n < 0 && errno == EINTR { continue }
                throw ImageIOError(
                    .io, path: path, detail: "reading \(chunkPath): \(n == 0 ? "short chunk" : errnoText())")
            }
            var written = 0
            while written < n {
                let m = buffer.withUnsafeBytes {
                    pwrite(dst, $0.baseAddress! + written, n - written, off_t(to + done + written))
                }
                guard m > 0 else {
                    if m < 0 && errno == EINTR { continue }
                    throw ImageIOError(.io, path: path, detail: "write failed: \(errnoText())")
                }
                written += m
            }
            done += n
        }
    }
}

#if os(Linux)
/// glibc's `copy_file_range` (2.27 on), which the Glibc module leaves out (it needs `_GNU_SOURCE`).
@_silgen_name("copy_file_range")
private func copyFileRange(
    _ fdIn: Int32, _ offIn: UnsafeMutablePointer<off_t>?, _ fdOut: Int32, _ offOut: UnsafeMutablePointer<off_t>?,
    _ length: Int, _ flags: UInt32
) -> Int
#endif
