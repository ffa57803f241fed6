import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The bytes of the `.npy` that `NPY.write` would make of a raw float32 store,
/// read from the chunks on demand: an upload job's `.npy` output is served to clients
/// this way, so the coordinator writes the float map once (its chunk store) instead of
/// twice. Byte `i` of the view equals byte `i` of the written file.
package struct NPYStoreView: Sendable {
    package let store: MapStore
    private let header: [UInt8]
    /// The file's size in bytes.
    package let size: Int

    /// A view of `store`, which must be a finished raw float32 store with every chunk
    /// present (`NPY.copyable`); little-endian hosts only.
    package init(_ store: MapStore) throws {
        guard store.isFinished, NPY.copyable(store) else {
            throw MapStoreError(
                .invalidArgument, path: store.path, detail: "not a finished raw float32 store with every chunk")
        }
        let layout = store.layout
        self.store = store
        header = NPY.header(shape: [layout.classes, layout.height, layout.width])
        size = header.count + layout.classes * layout.height * layout.width * 4
    }

    /// Up to `count` bytes from `offset` (fewer at the end of the file).
    package func read(offset: Int, count: Int) throws -> [UInt8] {
        let end = min(size, offset + max(0, count))
        guard offset >= 0, offset < end else { return [] }
        let layout = store.layout
        let (height, width, side) = (layout.height, layout.width, layout.tileSize)
        let rowBytes = width * 4
        var files: [TileIndex: Int32] = [:]
        defer { for fd in files.values { close(fd) } }
        func file(_ tile: TileIndex) throws -> Int32 {
            if let fd = files[tile] { return fd }
            let path = store.chunkPath(tile, level: 0)
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw MapStoreError(.io, path: path, detail: "cannot open: \(errnoText())") }
            files[tile] = fd
            return fd
        }
        // Every byte is written below (or the read throws): no zero fill first.
        return try [UInt8](unsafeUninitializedCapacity: end - offset) { bytes, initialized in
            let buffer = UnsafeMutableRawBufferPointer(bytes)
            var position = offset
            while position < min(end, header.count) {
                buffer[position - offset] = header[position]
                position += 1
            }
            var scratch: [UInt8] = []
            while position < end {
                // The array rows from here to the end of this class's chunk row (or of the
                // range): one read per chunk of them, then each row's run copied into place.
                let relative = position - header.count
                let (c, y) = (relative / rowBytes / height, relative / rowBytes % height)
                let tileRow = y / side
                let bandEnd = min(end, header.count + (c * height + min((tileRow + 1) * side, height)) * rowBytes)
                let lastY = (bandEnd - 1 - header.count) / rowBytes - c * height
                for column in 0..<((width + side - 1) / side) {
                    let runStart = column * side * 4, runEnd = min((column + 1) * side, width) * 4
                    // Rows of this chunk whose run meets [position, bandEnd).
                    let rows = (y...lastY).filter { r in
                        let base = header.count + (c * height + r) * rowBytes
                        return base + runEnd > position && base + runStart < bandEnd
                    }
                    guard let first = rows.first, let last = rows.last else { continue }
                    let tile = TileIndex(row: tileRow, column: column)
                    let count = (last - first + 1) * side * 4
                    if scratch.count < count { scratch = [UInt8](repeating: 0, count: count) }
                    let from = ((c * side + first - tileRow * side) * side) * 4
                    let fd = try file(tile)
                    try scratch.withUnsafeMutableBytes { into in
                        var done = 0
                        while done < count {
                            let got = pread(fd, into.baseAddress! + done, count - done, off_t(from + done))
                            if got < 0 && errno == EINTR { continue }
                            guard got > 0 else {
                                throw MapStoreError(
                                    .truncated, path: store.chunkPath(tile, level: 0),
                                    detail: got == 0 ? "chunk shorter than its layout" : "read: \(errnoText())")
                            }
                            done += got
                        }
                    }
                    scratch.withUnsafeBytes { chunk in
                        for r in rows {
                            let base = header.count + (c * height + r) * rowBytes
                            let lo = max(position, base + runStart), hi = min(bandEnd, base + runEnd)
                            let source = (r - first) * side * 4 + (lo - base - runStart)
                            (buffer.baseAddress! + (lo - offset)).copyMemory(
                                from: chunk.baseAddress! + source, byteCount: hi - lo)
                        }
                    }
                }
                position = bandEnd
            }
            initialized = end - offset
        }
    }
}
