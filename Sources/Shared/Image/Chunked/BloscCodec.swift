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

    static func compress(_ raw: UnsafeRawBufferPointer, typeSize: Int, threads: Int32 = threads) throws -> [UInt8] {
        guard raw.count <= maxBytes else {
            throw MapStoreError(
                .invalidArgument, path: "",
                detail: "a chunk of \(raw.count) bytes is over Blosc's \(maxBytes): use a smaller --tile")
        }
        let bound = raw.count + Int(BLOSC_MAX_OVERHEAD)
        var failure: Int32 = 0
        var out = [UInt8](unsafeUninitializedCapacity: bound) { out, initialized in
            let n = blosc_compress_ctx(
                level, 1 /* BLOSC_SHUFFLE */, max(1, typeSize), raw.count, raw.baseAddress, out.baseAddress, bound,
                "lz4", 0, threads)
            if n > 0 { initialized = Int(n) } else { failure = n; initialized = 0 }
        }
        // With room for the overhead Blosc stores data it cannot shrink as is: 0 never comes.
        guard failure == 0 else {
            throw MapStoreError(.invalidArgument, path: "", detail: "blosc_compress_ctx failed (\(failure))")
        }
        orderBlocks(&out)
        return out
    }

    /// Puts a frame's compressed blocks in block order. Blosc's threads append each block where the output
    /// stands when it is done, so the same chunk compressed twice gave other bytes (the same values): a
    /// straggler's copy of a tile then failed its receipt's CRC-32, and two runs' zarrs differed. The frame's
    /// layout (c-blosc's README_HEADER): a 16-byte header (flags at 2, nbytes at 4, blocksize at 8, cbytes at 12,
    /// little-endian), then one 32-bit start per block, then the blocks, each from its start to the next one's.
    /// A frame it does not read so (stored uncompressed, or anything unexpected) is left as it is.
    static func orderBlocks(_ frame: inout [UInt8]) {
        func int32(_ at: Int) -> Int {
            Int(
                UInt32(frame[at]) | UInt32(frame[at + 1]) << 8 | UInt32(frame[at + 2]) << 16 | UInt32(frame[at + 3])
                    << 24)
        }
        guard frame.count >= 16, frame[2] & 0x02 == 0 /* BLOSC_MEMCPYED */ else { return }
        let (nbytes, blocksize, cbytes) = (int32(4), int32(8), int32(12))
        guard blocksize > 0, cbytes == frame.count else { return }
        let blocks = (nbytes + blocksize - 1) / blocksize
        let first = 16 + 4 * blocks
        guard blocks > 1, first <= cbytes else { return }
        let starts = (0..<blocks).map { int32(16 + 4 * $0) }
        guard starts != starts.sorted() else { return }  // in order already
        let byPosition = starts.indices.sorted { starts[$0] < starts[$1] }
        guard starts[byPosition[0]] == first, Set(starts).count == blocks, starts.allSatisfy({ $0 < cbytes }) else {
            return
        }
        var ends = [Int](repeating: cbytes, count: blocks)
        for (k, block) in byPosition.enumerated() where k + 1 < blocks { ends[block] = starts[byPosition[k + 1]] }
        var ordered = [UInt8](frame[..<first])
        ordered.reserveCapacity(frame.count)
        for block in 0..<blocks {
            let start = ordered.count
            ordered.replaceSubrange(
                16 + 4 * block..<20 + 4 * block, with: withUnsafeBytes(of: UInt32(start).littleEndian, Array.init))
            ordered += frame[starts[block]..<ends[block]]
        }
        frame = ordered
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
