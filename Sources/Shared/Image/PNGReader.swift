internal import CPNGIO
import Foundation
import TesseraCore

/// What a PNG's header says, and what `PNGReader.read` will deliver.
package struct PNGHeader: Sendable, Equatable {
    package let width: Int
    package let height: Int
    /// IHDR's bit depth: 1, 2, 4, 8 or 16.
    package let fileBitDepth: Int
    /// IHDR's colour type: 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA.
    package let fileColorType: Int
    package let interlaced: Bool
    /// Channels delivered: 1 (gray, gray+alpha) or 3 (RGB, RGBA, palette).
    package let channels: Int
    /// Bit depth delivered: 8 (files of 1–8 bits) or 16.
    package let bitDepth: Int
    /// The file has an alpha channel or a tRNS chunk, which reading drops (not composited).
    package var hadAlpha: Bool { fileColorType & 4 != 0 || hadTransparency }
    /// Bytes of one decoded row, and of the whole decoded image.
    package var rowBytes: Int { width * channels * bitDepth / 8 }
    package var sampleBytes: Int { rowBytes * height }
    let hadTransparency: Bool
}

/// Reads PNG files with libpng, row by row, straight into a compact buffer.
///
/// Supported: every colour type (gray, gray+alpha, RGB, RGBA, palette), every
/// bit depth PNG allows (1, 2, 4 and 8-bit samples arrive as 8-bit — 1/2/4-bit
/// gray is scaled to 0…255 by libpng — 16-bit stays 16-bit), Adam7 interlacing.
/// Alpha and tRNS transparency are dropped, not composited.
package enum PNGReader {
    /// The version of libpng this program runs with.
    package static var libraryVersion: String { String(cString: tpng_library_version()) }

    /// Default pixel limit: 1.5 × 10⁹ pixels (4.5 GB of RGB 8-bit samples).
    package static let defaultMaxPixels = 1_500_000_000

    /// The header of `path`, checked against `maxPixels`; reads no image data.
    package static func header(path: String, maxPixels: Int = defaultMaxPixels) throws -> PNGHeader {
        let (reader, header) = try open(path: path, maxPixels: maxPixels)
        tpng_reader_close(reader)
        return header
    }

    /// Decodes `path`. The pixel limit is checked against the header before
    /// any image memory is allocated; the samples are decoded row by row (all
    /// passes for interlaced files) into the one buffer the image keeps.
    package static func read(path: String, maxPixels: Int = defaultMaxPixels) throws -> PixelImage {
        try readNoted(path: path, maxPixels: maxPixels).image
    }

    /// `read`, and what libpng warned of the image data: more data than the header's rows (hostile-input
    /// audit: a header cut to 17 of 96 rows mapped 17 rows without a word), a bad CRC it tolerated.
    /// Warnings about ancillary chunks (colour profiles) are not the image's and are left out.
    package static func readNoted(
        path: String, maxPixels: Int = defaultMaxPixels
    ) throws -> (image: PixelImage, notes: [String]) {
        let (reader, header) = try open(path: path, maxPixels: maxPixels)
        defer { tpng_reader_close(reader) }
        let count = header.width * header.height * header.channels
        try checkRoomToDecodeWhole(header, path: path)
        let rowBytes = header.rowBytes
        var message = [CChar](repeating: 0, count: cMessageSize)
        func readInto(_ base: UnsafeMutableRawPointer?) throws {
            let status = tpng_reader_read_image(reader, base, rowBytes, &message, message.count)
            if status != Int32(TPNG_OK.rawValue) {
                throw ImageIOError(status: status, path: path, message: message)
            }
        }
        let samples: PixelImage.Samples
        if header.bitDepth == 8 {
            samples = .uint8(
                try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                    try readInto(buffer.baseAddress)
                    initialized = count
                })
        } else {
            samples = .uint16(
                try [UInt16](unsafeUninitializedCapacity: count) { buffer, initialized in
                    try readInto(buffer.baseAddress)
                    initialized = count
                })
        }
        return (
            PixelImage(width: header.width, height: header.height, channels: header.channels, samples: samples),
            imageNotes(reader, header)
        )
    }

    /// A PNG decoded whole is refused before allocating when its samples alone pass what this process may use
    /// (hostile-input audit: a 23 MB file declaring 30000² RGB 16-bit aborted allocating 5.4 GB; review: an
    /// interlaced one read by `readBands` aborted the coordinator).
    static func checkRoomToDecodeWhole(_ header: PNGHeader, path: String) throws {
        let bytes = header.sampleBytes
        let room = SystemMemory.room
        guard bytes <= room / 4 * 3 else {
            throw ImageIOError(
                .outOfMemory, path: path,
                detail:
                    "decoding its \(header.width)×\(header.height) pixels"
                    + (header.interlaced ? " (interlaced: decoded whole)" : "")
                    + " needs \(SystemMemory.text(bytes)) and this process may use \(SystemMemory.text(room)) in all: "
                    + "convert it to a tiled TIFF, which is read tile by tile "
                    + "(e.g. `vips tiffsave in.png out.tif --tile --pyramid`)")
        }
    }

    /// What libpng warned of the image data of `reader`, once it has read the image (`readNoted`).
    static func imageNotes(_ reader: OpaquePointer, _ header: PNGHeader) -> [String] {
        var warnings = [CChar](repeating: 0, count: 1024)
        tpng_reader_warnings(reader, &warnings, warnings.count)
        let text = String(decoding: warnings.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.localizedCaseInsensitiveContains("data") || $0.contains("IDAT") || $0.contains("CRC") }
            .map { "damaged? libpng: \($0) (the \(header.width)×\(header.height) pixels of the header were read)" }
    }

    /// Decodes `path` a band of rows at a time (at most `bandBytes` per band) and hands each band's raw samples
    /// (UInt8, or UInt16 in host order) to `body`, top to bottom. An interlaced PNG, whose rows come whole only
    /// after its last pass, is decoded first into a file without a name in `temporaryFolder` (one row in memory:
    /// `decode(path:into:)`), then read back a band at a time; in memory only when that folder lacks the room (it
    /// was held whole, and handed over as one band: an upload sent it as one part over the message limit).
    /// Returns the header; `warn` gets what libpng warned of the image data once it is read (`readNoted`: the
    /// embedded run's and `submit`'s uploads dropped it).
    @discardableResult
    package static func readBands(
        path: String, maxPixels: Int = defaultMaxPixels, bandBytes: Int = 32 << 20,
        temporaryFolder: String = FileManager.default.temporaryDirectory.path,
        warn: (String) -> Void = { _ in }, _ body: ([UInt8]) throws -> Void
    ) throws -> PNGHeader {
        let (reader, header) = try open(path: path, maxPixels: maxPixels)
        defer { tpng_reader_close(reader) }
        let rowBytes = header.rowBytes
        let band = max(1, bandBytes / max(1, rowBytes))
        var message = [CChar](repeating: 0, count: cMessageSize)
        func check(_ status: Int32) throws {
            if status != Int32(TPNG_OK.rawValue) { throw ImageIOError(status: status, path: path, message: message) }
        }
        if header.interlaced {
            if let rows = try InterlacedRows(reader, header, path: path, folder: temporaryFolder) {
                try rows.bands(of: band, body)
                imageNotes(reader, header).forEach(warn)
                return header
            }
            try checkRoomToDecodeWhole(header, path: path)
            var all = [UInt8](repeating: 0, count: rowBytes * header.height)
            try all.withUnsafeMutableBytes {
                try check(tpng_reader_read_image(reader, $0.baseAddress, rowBytes, &message, message.count))
            }
            for start in stride(from: 0, to: header.height, by: band) {
                try body(Array(all[start * rowBytes..<min(header.height, start + band) * rowBytes]))
            }
            imageNotes(reader, header).forEach(warn)
            return header
        }
        var row = 0
        while row < header.height {
            let count = min(band, header.height - row)
            var bytes = [UInt8](repeating: 0, count: rowBytes * count)
            try bytes.withUnsafeMutableBytes {
                try check(
                    tpng_reader_read_rows(reader, $0.baseAddress, UInt32(count), rowBytes, &message, message.count))
            }
            try body(bytes)
            row += count
        }
        try check(tpng_reader_finish(reader, &message, message.count))
        imageNotes(reader, header).forEach(warn)
        return header
    }

    static func open(path: String, maxPixels: Int) throws -> (OpaquePointer, PNGHeader) {
        guard maxPixels > 0 else {
            throw ImageIOError(.invalidArgument, path: path, detail: "the pixel limit must be positive")
        }
        var message = [CChar](repeating: 0, count: cMessageSize)
        var reader: OpaquePointer?
        var info = tpng_info()
        let status = tpng_reader_open(path, UInt64(maxPixels), &reader, &info, &message, message.count)
        guard status == Int32(TPNG_OK.rawValue), let reader else {
            throw ImageIOError(status: status, path: path, message: message)
        }
        let header = PNGHeader(
            width: Int(info.width), height: Int(info.height),
            fileBitDepth: Int(info.file_bit_depth), fileColorType: Int(info.file_color_type),
            interlaced: info.interlaced != 0, channels: Int(info.channels),
            bitDepth: Int(info.bit_depth), hadTransparency: info.has_trns != 0)
        return (reader, header)
    }
}
