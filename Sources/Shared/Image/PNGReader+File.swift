internal import CPNGIO
import Foundation
import TesseraCore

extension PNGReader {
    /// Decodes the PNG at `path` into the file `fd`, its rows one after another from offset 0 (the file is
    /// sized to the samples first), with one row in memory whatever the image: an interlaced one too, whose
    /// Adam7 passes are merged in the file (memory audit: such a PNG was held whole). `fileName` names the file
    /// in errors writing it (a full folder); the PNG's own errors name `path`. Returns the header; `warn` gets
    /// what libpng warned of the image data.
    @discardableResult
    package static func decode(
        path: String, maxPixels: Int = defaultMaxPixels, into fd: Int32, fileName: String,
        warn: (String) -> Void = { _ in }
    ) throws -> PNGHeader {
        let (reader, header) = try open(path: path, maxPixels: maxPixels)
        defer { tpng_reader_close(reader) }
        try decode(reader, header, path: path, into: fd, fileName: fileName)
        imageNotes(reader, header).forEach(warn)
        return header
    }

    /// `decode(path:…)` on a reader just opened.
    static func decode(
        _ reader: OpaquePointer, _ header: PNGHeader, path: String, into fd: Int32, fileName: String
    ) throws {
        var message = [CChar](repeating: 0, count: cMessageSize)
        let status = tpng_reader_read_image_fd(reader, fd, header.rowBytes, &message, message.count)
        guard status == Int32(TPNG_OK.rawValue) else {
            throw ImageIOError(
                status: status, path: status == Int32(TPNG_ERR_OUTPUT.rawValue) ? fileName : path, message: message)
        }
    }
}

/// An interlaced PNG's rows decoded into a file without a name (`RawPixelFile.unnamedFile`), read back a band
/// at a time (`PNGReader.readBands`). The disk space goes when it does.
struct InterlacedRows: ~Copyable {
    private let fd: Int32
    private let rowBytes: Int
    private let height: Int
    private let folder: String

    /// Decodes the image open in `reader` into `folder`; nil, with nothing read, when the folder cannot take
    /// its samples (`RawPixelFile.folderTakes`).
    init?(_ reader: OpaquePointer, _ header: PNGHeader, path: String, folder: String) throws {
        guard RawPixelFile.folderTakes(header.sampleBytes, folder) == nil,
            let fd = try? RawPixelFile.unnamedFile(in: folder)
        else { return nil }
        do {
            try PNGReader.decode(reader, header, path: path, into: fd, fileName: folder)
        } catch {
            close(fd)
            throw error
        }
        (self.fd, rowBytes, height, self.folder) = (fd, header.rowBytes, header.height, folder)
    }

    deinit { close(fd) }

    /// Hands the rows to `body`, `band` rows at a time, top to bottom.
    func bands(of band: Int, _ body: ([UInt8]) throws -> Void) throws {
        for start in stride(from: 0, to: height, by: band) {
            let count = min(band, height - start) * rowBytes
            var bytes = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let n = bytes.withUnsafeMutableBytes {
                    pread(fd, $0.baseAddress! + done, count - done, off_t(start * rowBytes + done))
                }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    throw ImageIOError(
                        .io, path: folder,
                        detail: "cannot read back the decoded rows: "
                            + (n < 0 ? String(cString: strerror(errno)) : "the file was cut"))
                }
                done += n
            }
            try body(bytes)
        }
    }
}
