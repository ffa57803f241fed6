import CZlib
import TesseraCore

/// Chunk bytes ⇄ the v2 "zlib" codec (RFC 1950 streams, what numcodecs' Zlib
/// reads): the chunks of stores written before Blosc (`ChunkCompression`), and the
/// TIFF export's deflate. Level 1: several times faster than the default 6 for
/// little size difference on smooth probability maps.
enum ChunkCodec {
    static let level: Int32 = 1

    static func compress(_ raw: UnsafeRawBufferPointer, level: Int32 = level) -> [UInt8] {
        let bound = Int(compressBound(uLong(raw.count)))
        return [UInt8](unsafeUninitializedCapacity: bound) { out, initialized in
            var length = uLongf(bound)
            let status = compress2(
                out.baseAddress, &length, raw.baseAddress?.assumingMemoryBound(to: Bytef.self),
                uLong(raw.count), level)
            // Only Z_MEM_ERROR can happen with a compressBound-sized buffer.
            precondition(status == Z_OK, "zlib compress2 failed with status \(status)")
            initialized = Int(length)
        }
    }

    /// Decompresses a chunk that must hold exactly `expected` bytes. Throws
    /// `.truncated` when the stream ends early, `.corrupt` on bad data or a size mismatch.
    static func decompress(_ compressed: [UInt8], expected: Int, path: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: expected)
        var length = uLongf(expected)
        let status = out.withUnsafeMutableBytes { o in
            compressed.withUnsafeBytes { c in
                uncompress(
                    o.baseAddress?.assumingMemoryBound(to: Bytef.self), &length,
                    c.baseAddress?.assumingMemoryBound(to: Bytef.self), uLong(c.count))
            }
        }
        if status == Z_OK && Int(length) == expected { return out }
        if status == Z_OK {
            throw MapStoreError(.corrupt, path: path, detail: "decodes to \(length) bytes, a chunk has \(expected)")
        }
        // uncompress says Z_DATA_ERROR both for bad and for incomplete input: tell them apart.
        let truncated = compressed.isEmpty || isTruncated(compressed)
        throw MapStoreError(
            truncated ? .truncated : .corrupt, path: path,
            detail: truncated
                ? "the zlib stream ends early (\(compressed.count) bytes)"
                : "zlib error \(status): not a chunk of \(expected) bytes")
    }

    /// Whether inflating `compressed` runs out of input before the stream ends
    /// (truncation), rather than producing too much output.
    private static func isTruncated(_ compressed: [UInt8]) -> Bool {
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return false }
        defer { inflateEnd(&stream) }
        var sink = [UInt8](repeating: 0, count: 1 << 16)
        var input = compressed
        return input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            while true {
                let status: Int32 = sink.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress
                    stream.avail_out = uInt(outBuf.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                if status == Z_STREAM_END { return false }
                if status != Z_OK { return status == Z_BUF_ERROR && stream.avail_in == 0 }
                if stream.avail_in == 0 && stream.avail_out != 0 { return true }
            }
        }
    }
}
