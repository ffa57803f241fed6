import Foundation
import TesseraCore

/// An image kept on disk as raw samples, row by row (`height × width × channels`,
/// UInt8, or UInt16 in host order), read a rectangle at a time with `pread`: what an
/// upload job's coordinator cuts task inputs from, so that memory does not grow
/// with the image. `transcode` and `decoded` write one from a PNG with one row in memory,
/// interlaced or not (`PNGReader.decode(path:into:)`).
package final class RawPixelFile: RegionSource, @unchecked Sendable {
    package let name: String
    package let width: Int
    package let height: Int
    package let channels: Int
    package let bitDepth: Int
    /// What the PNG reader warned of as it decoded the image (`decoded`), set before the file is shared.
    package var notes: [String] = []
    private let fd: Int32

    /// Opens a raw file written by `transcode` (its shape is not stored in it).
    package convenience init(
        path: String, width: Int, height: Int, channels: Int, bitDepth: Int, name: String? = nil
    ) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ImageIOError(.io, path: path, detail: "cannot open: \(String(cString: strerror(errno)))")
        }
        try self.init(
            fd: fd, width: width, height: height, channels: channels, bitDepth: bitDepth, name: name ?? path,
            path: path)
    }

    /// Takes over `fd` (closed on failure too), which must hold the image's samples.
    private init(fd: Int32, width: Int, height: Int, channels: Int, bitDepth: Int, name: String, path: String) throws {
        let expected = width * height * channels * (bitDepth / 8)
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == expected else {
            close(fd)
            throw ImageIOError(
                .truncated, path: path,
                detail: "\(info.st_size) bytes, a \(width)×\(height)×\(channels) image needs \(expected)")
        }
        self.fd = fd
        self.name = name
        self.width = width
        self.height = height
        self.channels = channels
        self.bitDepth = bitDepth
    }

    deinit { close(fd) }

    /// A PNG decoded into a file of the folder `folder` that has no name (`O_TMPFILE`; where the file system
    /// lacks it, one unlinked as soon as it is created): nothing is left behind however the process ends, and
    /// the disk space goes with the last reference. `name` is what errors call the image. Errors about the folder
    /// (missing, full, read-only) have its path; the PNG's own have the PNG's.
    package static func decoded(
        png: String, inFolder folder: String, name: String? = nil, maxPixels: Int = PNGReader.defaultMaxPixels,
        warn: (String) -> Void = { _ in }
    ) throws -> RawPixelFile {
        let fd = try unnamedFile(in: folder)
        let header: PNGHeader
        do {
            header = try PNGReader.decode(path: png, maxPixels: maxPixels, into: fd, fileName: folder, warn: warn)
        } catch {
            close(fd)
            throw error
        }
        return try RawPixelFile(
            fd: fd, width: header.width, height: header.height, channels: header.channels,
            bitDepth: header.bitDepth, name: name ?? png, path: folder)
    }

    /// Nil when `folder` can take a decoded image of `bytes` and 256 MiB to spare (`decodeRoom`: on a tmpfs, what
    /// memory may take), or cannot be asked (creating the file there then says why); else the room it has.
    package static func folderTakes(_ bytes: Int, _ folder: String) -> Int? {
        guard let room = decodeRoom(folder).map({ Int(clamping: $0) }) else { return nil }
        return room >= bytes + (256 << 20) ? nil : room
    }

    /// A new file of `folder` that has no name (`O_TMPFILE`; where the file system lacks it, one unlinked as soon
    /// as it is created), open for reading and writing. Errors name the folder.
    package static func unnamedFile(in folder: String) throws -> Int32 {
        var fd = open(folder, O_DIRECTORY | 0o20_000_000 | O_RDWR | O_CLOEXEC, 0o600)  // O_TMPFILE
        if fd < 0 && [EOPNOTSUPP, EISDIR, EINVAL].contains(errno) {
            let path = "\(folder)/.tessera-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).raw"
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 { unlink(path) }
        }
        guard fd >= 0 else {
            throw ImageIOError(
                .io, path: folder, detail: "cannot create a file there: \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// Decodes the PNG at `png` into a raw file at `raw` (written, then renamed into
    /// place) with one row in memory (`PNGReader.decode(path:into:)`); returns the PNG's header.
    @discardableResult
    package static func transcode(
        png: String, to raw: String, maxPixels: Int = PNGReader.defaultMaxPixels, warn: (String) -> Void = { _ in }
    ) throws
        -> PNGHeader
    {
        let temporary = raw + ".partial-\(getpid())"
        let out = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)  // read too: Adam7 merges rows
        guard out >= 0 else {
            throw ImageIOError(.io, path: raw, detail: "cannot create: \(String(cString: strerror(errno)))")
        }
        var closed = false
        defer {
            if !closed { close(out) }
            unlink(temporary)
        }
        let header = try PNGReader.decode(path: png, maxPixels: maxPixels, into: out, fileName: raw, warn: warn)
        closed = true
        guard close(out) == 0, rename(temporary, raw) == 0 else {
            throw ImageIOError(.io, path: raw, detail: "cannot finish: \(String(cString: strerror(errno)))")
        }
        return header
    }

    /// The raw samples of `rect` (inside the image) as an image of its own.
    package func read(_ rect: PixelRect) throws -> PixelImage {
        precondition(
            rect.y >= 0 && rect.x >= 0 && rect.height > 0 && rect.width > 0 && rect.y + rect.height <= height
                && rect.x + rect.width <= width, "region \(rect) outside a \(height)×\(width) image")
        let bytesPerSample = bitDepth / 8
        let rowBytes = rect.width * channels * bytesPerSample
        var bytes = [UInt8](repeating: 0, count: rect.height * rowBytes)
        try bytes.withUnsafeMutableBytes { dst in
            for row in 0..<rect.height {
                let at = off_t(((rect.y + row) * width + rect.x) * channels * bytesPerSample)
                var done = 0
                while done < rowBytes {
                    let n = pread(fd, dst.baseAddress! + row * rowBytes + done, rowBytes - done, at + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else {
                        throw ImageIOError(
                            .truncated, path: name,
                            detail: "cannot read row \(rect.y + row): "
                                + (n == 0 ? "end of file" : String(cString: strerror(errno))))
                    }
                    done += n
                }
            }
        }
        if bytesPerSample == 1 {
            return PixelImage(width: rect.width, height: rect.height, channels: channels, samples: .uint8(bytes))
        }
        let samples = bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
        return PixelImage(width: rect.width, height: rect.height, channels: channels, samples: .uint16(samples))
    }

    package func readRegion(_ rect: PixelRect) throws -> PixelRegion {
        try read(rect).readRegion(PixelRect(y: 0, x: 0, height: rect.height, width: rect.width))
    }
}
