internal import CPNGIO
import TesseraCore

/// Writes a non-interlaced 8/16-bit gray or RGB PNG one row at a time, so an
/// image of any size needs one row of memory. Use it through
/// `AtomicFile.write`: an unfinished file must not keep its final name.
final class PNGRowWriter {
    let path: String
    let width: Int
    let height: Int
    let channels: Int
    let bitDepth: Int
    private var writer: OpaquePointer?
    private var message = [CChar](repeating: 0, count: cMessageSize)

    /// `compressionLevel`: zlib's 0 (none) … 9 (smallest), -1 libpng's default.
    init(path: String, width: Int, height: Int, channels: Int, bitDepth: Int, compressionLevel: Int = -1) throws {
        guard width > 0, height > 0, width <= Int(Int32.max), height <= Int(Int32.max),
            channels == 1 || channels == 3, bitDepth == 8 || bitDepth == 16
        else {
            throw ImageIOError(
                .invalidArgument, path: path,
                detail: "cannot write \(width)×\(height), \(channels) channels, \(bitDepth) bits")
        }
        self.path = path
        self.width = width
        self.height = height
        self.channels = channels
        self.bitDepth = bitDepth
        let status = tpng_writer_open(
            path, UInt32(width), UInt32(height), Int32(channels), Int32(bitDepth),
            Int32(compressionLevel), &writer, &message, message.count)
        guard status == Int32(TPNG_OK.rawValue) else {
            throw ImageIOError(status: status, path: path, message: message)
        }
    }

    deinit { tpng_writer_close(writer) }

    /// Writes the next row of 8-bit samples (`width * channels` of them).
    func write(row: UnsafeBufferPointer<UInt8>) throws {
        precondition(bitDepth == 8 && row.count == width * channels, "row does not match the PNG's layout")
        try check(tpng_writer_write_row(writer, row.baseAddress, &message, message.count))
    }

    /// Writes the next row of 16-bit samples (host byte order).
    func write(row: UnsafeBufferPointer<UInt16>) throws {
        precondition(bitDepth == 16 && row.count == width * channels, "row does not match the PNG's layout")
        try check(tpng_writer_write_row(writer, row.baseAddress, &message, message.count))
    }

    /// Ends the image, then flushes, fsyncs and closes the file.
    func finish() throws {
        try check(tpng_writer_finish(writer, &message, message.count))
    }

    private func check(_ status: Int32) throws {
        guard status == Int32(TPNG_OK.rawValue) else {
            throw ImageIOError(status: status, path: path, message: message)
        }
    }
}

/// Writes test and fixture PNGs of any kind: rows in PNG's own sample layout
/// (sub-byte samples packed MSB first, 16-bit samples big-endian), any colour
/// type and bit depth, optional palette, tRNS and Adam7 interlacing.
struct PNGRawFile {
    var width: Int
    var height: Int
    var bitDepth: Int
    /// 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA.
    var colorType: Int
    var interlaced = false
    /// Row after row, each `rowBytes` long.
    var data: [UInt8]
    /// RGB triples.
    var palette: [UInt8] = []
    /// Per-palette-entry alpha (palette images).
    var paletteAlpha: [UInt8] = []
    /// The transparent colour of a gray ({gray}) or RGB ({r, g, b}) image.
    var transparentColor: [UInt16]?

    var rowBytes: Int {
        let samples = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][colorType] ?? 1
        return (width * samples * bitDepth + 7) / 8
    }

    func write(to path: String) throws {
        precondition(data.count == rowBytes * height, "raw PNG data does not match its shape")
        var message = [CChar](repeating: 0, count: cMessageSize)
        let status: Int32
        if let color = transparentColor {
            var trnsDummy: UInt8 = 0
            status = tpng_write_raw(
                path, UInt32(width), UInt32(height), Int32(bitDepth), Int32(colorType),
                interlaced ? 1 : 0, data, rowBytes, palette, Int32(palette.count / 3),
                &trnsDummy, 1, color, &message, message.count)
        } else {
            status = tpng_write_raw(
                path, UInt32(width), UInt32(height), Int32(bitDepth), Int32(colorType),
                interlaced ? 1 : 0, data, rowBytes, palette, Int32(palette.count / 3),
                paletteAlpha, Int32(paletteAlpha.count), nil, &message, message.count)
        }
        guard status == Int32(TPNG_OK.rawValue) else {
            throw ImageIOError(status: status, path: path, message: message)
        }
    }
}

/// Writes `image` as a PNG of its own channels and bit depth, row by row, atomically.
package func writePNG(_ image: PixelImage, to path: String, compressionLevel: Int = 6) throws {
    try AtomicFile.write(to: path) { temporary in
        let writer = try PNGRowWriter(
            path: temporary, width: image.width, height: image.height,
            channels: image.channels, bitDepth: image.bitDepth,
            compressionLevel: compressionLevel)
        for y in 0..<image.height {
            try image.withUnsafeRows(y..<(y + 1)) { row in
                switch row.storage {
                case .uint8(let samples): try writer.write(row: samples)
                case .uint16(let samples): try writer.write(row: samples)
                }
            }
        }
        try writer.finish()
    }
}
