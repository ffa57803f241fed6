/// How a store's chunks are compressed: each level array's Zarr v2 `compressor`.
///
/// New stores use Blosc with LZ4 and byte shuffle (what bioformats2raw writes by
/// default, so OME-Zarr readers from zarr-python and napari to Bio-Formats/QuPath
/// read it). It replaced zlib level 1 because a worker compresses every tile it
/// computes: zlib managed ~30 MB/s per core on noisy float32 maps and ~130 MB/s on
/// smooth ones, so a 2048² two-class float32 tile took about a second to write while
/// a GPU computes it in tens of milliseconds; Blosc-LZ4 is 10–25× faster per core,
/// uses several threads per chunk, and stores the same maps within ~10 % of zlib's size.
package enum ChunkCompression: String, Sendable, Codable, CaseIterable {
    /// Blosc 1, LZ4 at level 5, byte shuffle of the sample type's bytes.
    case blosc = "blosc-lz4"
    /// zlib level 1: stores written before Blosc (still read, resumed and exported).
    case zlib
    /// Raw chunks: a store that only feeds other outputs and is removed after.
    case none

    /// The level arrays' `compressor` value in `.zarray`.
    var zarrCompressor: String {
        switch self {
        case .blosc:
            "{\"id\": \"blosc\", \"cname\": \"lz4\", \"clevel\": \(BloscCodec.level), \"shuffle\": 1, \"blocksize\": 0}"
        case .zlib: "{\"id\": \"zlib\", \"level\": \(ChunkCodec.level)}"
        case .none: "null"
        }
    }

    /// The stored bytes of a chunk of `raw` samples of `sampleSize` bytes each.
    func compress(_ raw: UnsafeRawBufferPointer, sampleSize: Int) throws -> [UInt8] {
        switch self {
        case .blosc: try BloscCodec.compress(raw, typeSize: sampleSize)
        case .zlib: ChunkCodec.compress(raw)
        case .none: Array(raw)
        }
    }

    /// A chunk's raw bytes, which must be exactly `expected`. Throws `.truncated` for
    /// a chunk cut short, `.corrupt` for anything else that is not such a chunk.
    func decompress(_ stored: [UInt8], expected: Int, path: String) throws -> [UInt8] {
        switch self {
        case .blosc: return try BloscCodec.decompress(stored, expected: expected, path: path)
        case .zlib: return try ChunkCodec.decompress(stored, expected: expected, path: path)
        case .none:
            guard stored.count == expected else {
                throw MapStoreError(
                    stored.count < expected ? .truncated : .corrupt, path: path,
                    detail: "a raw chunk of \(stored.count) bytes, expected \(expected)")
            }
            return stored
        }
    }
}
