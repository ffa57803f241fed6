import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tile of a raw float32 store of one level (an upload job's map on the
/// coordinator) written straight from its values: the chunk's bytes (the values'
/// rows at their places in a side × side plane per class, zeros in an edge chunk's
/// padding) are laid out a staging buffer at a time and written uncached
/// (`DirectIO`), so the map's bytes are copied once, into a buffer that is reused,
/// and never into the page cache.
extension MapStore {
    /// Whether `write(tile:values:)` takes this path.
    var writesRawValues: Bool {
        1.littleEndian == 1 && layout.dtype == .float32 && layout.compression == .none && layout.levels == 1
            && layout.kept == nil
    }

    func writeRaw(tile: TileIndex, values: UnsafeBufferPointer<Float>) throws -> TileReceipt {
        let rect = layout.rect(of: tile)
        let (h, w, side) = (rect.height, rect.width, layout.tileSize)
        guard layout.contains(tile), values.count == layout.classes * h * w else {
            throw MapStoreError(
                .invalidArgument, path: path,
                detail: "tile \(tile) needs \(layout.classes * h * w) values "
                    + "(\(layout.classes)×\(h)×\(w)), got \(values.count)")
        }
        let source = UnsafeRawBufferPointer(values)
        let size = layout.chunkBytes(0)
        let (rowBytes, valueRowBytes) = (side * 4, w * 4)
        /// Chunk bytes [offset, offset + into.count): rows of values, zeros around them.
        func lay(_ offset: Int, into: UnsafeMutableRawBufferPointer) {
            if w == side && h == side {
                into.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + into.count)]))
                return
            }
            var row = offset / rowBytes
            while row * rowBytes < offset + into.count {
                let (c, y) = (row / side, row % side)
                let lo = max(offset, row * rowBytes), hi = min(offset + into.count, (row + 1) * rowBytes)
                let target = into.baseAddress! + (lo - offset)
                // The row's bytes [lo, hi) relative to its start: values up to valueRowBytes, then zeros.
                let (from, to) = (lo - row * rowBytes, hi - row * rowBytes)
                let copied = y < h ? max(0, min(to, valueRowBytes) - from) : 0
                if copied > 0 {
                    target.copyMemory(
                        from: source.baseAddress! + ((c * h + y) * valueRowBytes + from), byteCount: copied)
                }
                (target + copied).initializeMemory(as: UInt8.self, repeating: 0, count: hi - lo - copied)
                row += 1
            }
        }
        var crc: UInt32 = 0
        try AtomicFile.write(to: chunkPath(tile, level: 0), durable: durable, uncached: true, within: path) { fd, put in
            try DirectIO.withStaging { staging in
                var offset = 0
                while offset < size {
                    let n = min(staging.count, size - offset)
                    lay(offset, into: UnsafeMutableRawBufferPointer(rebasing: staging[0..<n]))
                    crc = CRC32.update(crc, UnsafeRawBufferPointer(rebasing: staging[0..<n]))
                    // An uncached write is whole blocks: the last one's tail is cut off below.
                    let whole = min(staging.count, DirectIO.roundUp(n))
                    (staging.baseAddress! + n).initializeMemory(as: UInt8.self, repeating: 0, count: whole - n)
                    try put(UnsafeRawBufferPointer(rebasing: staging[0..<whole]), offset)
                    offset += n
                }
            }
            if size % DirectIO.alignment != 0 {
                guard ftruncate(fd, off_t(size)) == 0 else {
                    throw MapStoreError(.io, path: path, detail: "ftruncate: \(errnoText())")
                }
            }
        }
        return TileReceipt(tile: tile, chunks: [.init(key: layout.chunkKey(tile, level: 0), size: size, crc32: crc)])
    }
}
