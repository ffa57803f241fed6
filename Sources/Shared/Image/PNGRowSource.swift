internal import CPNGIO
import Foundation
import TesseraCore

/// A non-interlaced PNG read top to bottom without holding it: each `readRegion` decodes the rows it needs
/// from where the last stopped (rows above that start the file again). For readers that go down the image a
/// band at a time (the overlay): memory is one band, not the image. `ImageInput.open(…, rowsInOrder: true)`
/// gives one.
package final class PNGRowSource: RegionSource, @unchecked Sendable {
    package let name: String
    package let width: Int
    package let height: Int
    package let channels: Int
    package let bitDepth: Int
    private let maxPixels: Int
    private let header: PNGHeader
    /// The file's inode, size and modification time when opened: a restart reads the same file.
    private let identity: FileIdentity?
    private let lock = NSLock()
    /// The open reader and the next row it decodes.
    private var reader: OpaquePointer?
    private var nextRow = 0

    /// Opens `path` (not decoded); nil for an interlaced PNG, whose rows cannot be decoded one band at a time.
    package init?(path: String, maxPixels: Int = PNGReader.defaultMaxPixels) throws {
        let (reader, header) = try PNGReader.open(path: path, maxPixels: maxPixels)
        guard !header.interlaced else {
            tpng_reader_close(reader)
            return nil
        }
        self.reader = reader
        self.header = header
        identity = FileIdentity(path: path)
        self.maxPixels = maxPixels
        name = path
        width = header.width
        height = header.height
        channels = header.channels
        bitDepth = header.bitDepth
    }

    deinit { tpng_reader_close(reader) }

    package func readRegion(_ rect: PixelRect) throws -> PixelRegion {
        precondition(
            rect.y >= 0 && rect.x >= 0 && rect.y + rect.height <= height && rect.x + rect.width <= width,
            "region outside the image")
        lock.lock()
        defer { lock.unlock() }
        if rect.y < nextRow { try restart() }
        let rowBytes = width * channels * bitDepth / 8
        var rows = [UInt8](repeating: 0, count: rowBytes * max(1, rect.height))
        // Rows above the region: decoded into the region's buffer and dropped, a band at a time.
        while nextRow < rect.y { try decode(min(rect.y - nextRow, max(1, rect.height)), into: &rows) }
        try decode(rect.height, into: &rows)
        var samples = [Float](repeating: 0, count: rect.height * rect.width * channels)
        let first = rect.x * channels, count = rect.width * channels
        rows.withUnsafeBytes { raw in
            for y in 0..<rect.height {
                let out = y * count
                if bitDepth == 16 {
                    let row = y * rowBytes + first * 2
                    for i in 0..<count {
                        samples[out + i] = Float(raw.loadUnaligned(fromByteOffset: row + 2 * i, as: UInt16.self))
                    }
                } else {
                    for i in 0..<count { samples[out + i] = Float(raw[y * rowBytes + first + i]) }
                }
            }
        }
        return PixelRegion(height: rect.height, width: rect.width, channels: channels, samples: samples)
    }

    /// Decodes the next `count` rows into the start of `rows`.
    private func decode(_ count: Int, into rows: inout [UInt8]) throws {
        guard count > 0 else { return }
        var message = [CChar](repeating: 0, count: cMessageSize)
        let rowBytes = width * channels * bitDepth / 8
        let status = rows.withUnsafeMutableBytes {
            tpng_reader_read_rows(reader, $0.baseAddress, UInt32(count), rowBytes, &message, message.count)
        }
        guard status == Int32(TPNG_OK.rawValue) else {
            throw ImageIOError(status: status, path: name, message: message)
        }
        nextRow += count
    }

    /// Opens the file again at its first row; it must still be the PNG it was.
    private func restart() throws {
        let (fresh, again) = try PNGReader.open(path: name, maxPixels: maxPixels)
        guard again == header, FileIdentity(path: name) == identity else {
            tpng_reader_close(fresh)
            throw ImageIOError(.mismatch, path: name, detail: "the PNG changed while it was read")
        }
        tpng_reader_close(reader)
        reader = fresh
        nextRow = 0
    }
}
