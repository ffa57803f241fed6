import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tile of a raw float32 store of one level (an upload job's map on the
/// coordinator) written straight from its values: the chunk is the values' rows at
/// their places in a side × side plane per class, so no chunk-sized copy is made;
/// the padding of an edge chunk is a hole in the file (reads give zeros, as the
/// encoded chunk has) and is only fed to the CRC.
extension MapStore {
    /// Whether `write(tile:values:)` takes this path.
    var writesRawValues: Bool {
        1.littleEndian == 1 && layout.dtype == .float32 && !layout.compressed && layout.levels == 1
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
        let bytes = UnsafeRawBufferPointer(values)
        var crc: UInt32 = 0
        for c in 0..<layout.classes {
            if w == side {
                crc = ChunkCodec.crc(
                    crc, UnsafeRawBufferPointer(rebasing: bytes[(c * h * w * 4)..<((c + 1) * h * w * 4)]))
            } else {
                for y in 0..<h {
                    let row = (c * h + y) * w * 4
                    crc = ChunkCodec.crc(crc, UnsafeRawBufferPointer(rebasing: bytes[row..<(row + w * 4)]))
                    crc = ChunkCodec.crc(crc, zeros: (side - w) * 4)
                }
            }
            crc = ChunkCodec.crc(crc, zeros: (side - h) * side * 4)
        }
        let key = layout.chunkKey(tile, level: 0)
        let size = layout.chunkBytes(0)
        try AtomicFile.write(to: chunkPath(tile, level: 0), durable: durable) { fd, put in
            for c in 0..<layout.classes {
                if w == side {
                    try put(
                        UnsafeRawBufferPointer(rebasing: bytes[(c * h * w * 4)..<((c + 1) * h * w * 4)]),
                        c * side * side * 4)
                } else {
                    for y in 0..<h {
                        let row = (c * h + y) * w * 4
                        try put(
                            UnsafeRawBufferPointer(rebasing: bytes[row..<(row + w * 4)]), ((c * side + y) * side) * 4)
                    }
                }
            }
            guard ftruncate(fd, off_t(size)) == 0 else {
                throw MapStoreError(.io, path: path, detail: "ftruncate: \(errnoText())")
            }
        }
        return TileReceipt(tile: tile, chunks: [.init(key: key, size: size, crc32: crc)])
    }
}
