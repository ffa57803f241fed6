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
        let rowsPerRead = max(1, (DirectIO.stagingBytes - 2 * DirectIO.alignment) / (side * 4))
        // A chunk is open only while its rows of one band are read (audit 52: a file per chunk of a 16 MiB
        // read, kept to its end, passed the open-file limit for maps of many small tiles).
        func open(_ tile: TileIndex) throws -> Int32 {
            let path = store.chunkPath(tile, level: 0)
            let fd = DirectIO.open(path, O_RDONLY)
            guard fd >= 0 else { throw MapStoreError(.io, path: path, detail: "cannot open: \(errnoText())") }
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
                    let fd = try open(tile)
                    defer { close(fd) }
                    // Whole chunk rows, as many as a staging buffer holds, per read.
                    var group = first
                    while group <= last {
                        let groupEnd = min(last, group + rowsPerRead - 1)
                        let from = ((c * side + group - tileRow * side) * side) * 4
                        try read(fd, tile, from: from, count: (groupEnd - group + 1) * side * 4) { chunk in
                            for r in rows where r >= group && r <= groupEnd {
                                let base = header.count + (c * height + r) * rowBytes
                                let lo = max(position, base + runStart), hi = min(bandEnd, base + runEnd)
                                let source = (r - group) * side * 4 + (lo - base - runStart)
                                (buffer.baseAddress! + (lo - offset)).copyMemory(
                                    from: chunk.baseAddress! + source, byteCount: hi - lo)
                            }
                        }
                        group = groupEnd + 1
                    }
                }
                position = bandEnd
            }
            initialized = end - offset
        }
    }

    /// Chunk bytes [from, from + count) of `tile`, read uncached (whole aligned blocks
    /// around them, through a staging buffer), handed to `body`.
    private func read(
        _ fd: Int32, _ tile: TileIndex, from: Int, count: Int, _ body: (UnsafeRawBufferPointer) -> Void
    ) throws {
        let start = DirectIO.roundDown(from)
        let wanted = from + count - start
        try DirectIO.withStaging { staging in
            guard DirectIO.roundUp(wanted) <= staging.count else {
                throw MapStoreError(
                    .invalidArgument, path: store.path,
                    detail: "a chunk row of \(store.layout.tileSize * 4) bytes is larger than a read buffer")
            }
            var done = 0
            while done < wanted {
                // Whole blocks from an aligned offset; the chunk's end may come first (a short read).
                let got = pread(fd, staging.baseAddress! + done, DirectIO.roundUp(wanted) - done, off_t(start + done))
                if got < 0 && (errno == EINTR || (errno == EINVAL && DirectIO.disable(fd))) { continue }
                guard got > 0 else {
                    throw MapStoreError(
                        .truncated, path: store.chunkPath(tile, level: 0),
                        detail: got == 0 ? "chunk shorter than its layout" : "read: \(errnoText())")
                }
                done += got
            }
            body(UnsafeRawBufferPointer(rebasing: staging[(from - start)..<(from - start + count)]))
        }
    }
}
