import TesseraCore

/// What writing a tile produced: one record per pyramid level. A worker sends
/// this to the coordinator instead of the values; on resume, `MapStore.verify`
/// checks the chunk files against it.
package struct TileReceipt: Sendable, Equatable, Codable {
    package struct Chunk: Sendable, Equatable, Codable {
        /// Path relative to the store (`MapLayout.chunkKey`: level/0/row/column on a
        /// tile level, level/.tiles/row/column above).
        package let key: String
        /// Bytes in the (compressed) chunk file.
        package let size: Int
        /// CRC-32 (zlib's) of the chunk file.
        package let crc32: UInt32
        package init(key: String, size: Int, crc32: UInt32) {
            self.key = key
            self.size = size
            self.crc32 = crc32
        }
    }

    package let tile: TileIndex
    /// Level 0 first.
    package let chunks: [Chunk]
    package init(tile: TileIndex, chunks: [Chunk]) {
        self.tile = tile
        self.chunks = chunks
    }
}

/// A tile encoded for a store but not yet written: the compressed chunk of each
/// level. `MapStore.encode` is pure, so a worker without the store's file system
/// can encode and ship this; `MapStore.write(_:)` puts it in place.
package struct EncodedTile: Sendable {
    package let tile: TileIndex
    /// Compressed chunk bytes, level 0 first.
    package let chunks: [[UInt8]]
    package let receipt: TileReceipt
}
