import CBlosc
import Foundation

/// Chunk bytes ⇄ Blosc 1 frames (what numcodecs' `Blosc` reads): LZ4, byte shuffle.
/// The context functions keep no global state, so any thread may call these at once.
enum BloscCodec {
    static let level: Int32 = 5
    /// Threads per chunk: a worker compresses one tile's chunks at a time, while its
    /// compute thread (on the GPU, mostly idle host cores) goes on with the next tile.
    static let threads = Int32(max(1, min(8, ProcessInfo.processInfo.activeProcessorCount)))
    /// The largest chunk one frame holds (Blosc 1 sizes are 32-bit).
    static let maxBytes = Int(Int32.max) - Int(BLOSC_MAX_OVERHEAD)

    static func compress(_ raw: UnsafeRawBufferPointer, typeSize: Int) throws -> [UInt8] {
        guard raw.count <= maxBytes else {
            throw MapStoreError(
                .invalidArgument, path: "",
                detail: "a chunk of \(raw.count) bytes is over Blosc's \(maxBytes): use a smaller --tile")
        }
        let bound = raw.count + Int(BLOSC_MAX_OVERHEAD)
        var failure: Int32 = 0
        let out = [UInt8](unsafeUninitializedCapacity: bound) { out, initialized in
            let n = blosc_compress_ctx(
                level, 1 /* BLOSC_SHUFFLE */, max(1, typeSize), raw.count, raw.baseAddress, out.baseAddress, bound,
                "lz4", 0, threads)
            if n > 0 { initialized = Int(n) } else { failure = n; initialized = 0 }
        }
        // With room for the overhead Blosc stores data it cannot shrink as is: 0 never comes.
        guard failure == 0 else {
            throw MapStoreError(.invalidArgument, path: "", detail: "blosc_compress_ctx failed (\(failure))")
        }
        return out
    }

    /// Decompresses a frame that must hold exactly `expected` bytes, checking its header
    /// against the file's size first (a hostile header cannot make it read or write
    /// outside the buffers).
    static func decompress(_ stored: [UInt8], expected: Int, path: String) throws -> [UInt8] {
        guard stored.count >= Int(BLOSC_MIN_HEADER_LENGTH) else {
            throw MapStoreError(.truncated, path: path, detail: "\(stored.count) bytes: shorter than a Blosc header")
        }
        var nbytes = 0, cbytes = 0, blocksize = 0
        stored.withUnsafeBytes { blosc_cbuffer_sizes($0.baseAddress, &nbytes, &cbytes, &blocksize) }
        if cbytes > stored.count {
            throw MapStoreError(
                .truncated, path: path, detail: "the Blosc frame needs \(cbytes) bytes, the file has \(stored.count)")
        }
        guard cbytes == stored.count, nbytes == expected else {
            throw MapStoreError(
                .corrupt, path: path,
                detail: "a Blosc frame of \(cbytes) bytes holding \(nbytes), not a chunk of \(expected) bytes "
                    + "in a \(stored.count)-byte file")
        }
        var valid = 0
        guard stored.withUnsafeBytes({ blosc_cbuffer_validate($0.baseAddress, stored.count, &valid) }) == 0,
            valid == expected
        else {
            throw MapStoreError(.corrupt, path: path, detail: "not a valid Blosc frame")
        }
        var out = [UInt8](repeating: 0, count: expected)
        let n = out.withUnsafeMutableBytes { o in
            stored.withUnsafeBytes { blosc_decompress_ctx($0.baseAddress, o.baseAddress, expected, threads) }
        }
        guard n == expected else {
            throw MapStoreError(.corrupt, path: path, detail: "Blosc error \(n): not a chunk of \(expected) bytes")
        }
        return out
    }
}
