import Foundation
import TesseraCore

/// What a file's first bytes say it is.
enum FileKind: Equatable {
    case tiff(bigTIFF: Bool, firstIFD: UInt64)
    case png
    case other
}

/// Reads the first 16 bytes of a file: the TIFF/BigTIFF header or the PNG signature.
enum FileSniffer {
    static func fileSize(_ path: String) throws -> UInt64 {
        // stat follows links: the file an image path leads to. Why it fails is said: an unreadable file, a
        // folder without search permission, a link loop or an over-long path were all "file not found"
        // (paths audit 41 F5).
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            guard code == ENOENT || code == ENOTDIR else {
                throw SlideError(
                    .readFailed, path: path,
                    detail: "cannot reach the file: \(String(cString: strerror(code)))"
                        + (code == EACCES ? " (this user may not read it, or may not enter a folder on its path)" : ""))
            }
            // A byte that is not UTF-8 in a name given on the command line reaches this program replaced.
            throw SlideError(
                .notFound, path: path,
                detail: path.contains("\u{FFFD}")
                    ? "no such file (its name holds a byte that is not UTF-8, which cannot be passed here: rename it)"
                    : "no such file")
        }
        let type = info.st_mode & S_IFMT
        guard type != S_IFDIR else { throw SlideError(.notTIFF, path: path, detail: "a directory, not a file") }
        // A FIFO, a socket or a device (/dev/zero) has no size to read an image by: not "an empty file".
        guard type == S_IFREG else {
            let what =
                type == S_IFCHR || type == S_IFBLK
                ? "a device" : type == S_IFSOCK ? "a socket" : "a FIFO or another special file"
            throw SlideError(.invalidArgument, path: path, detail: "\(what), not a regular file: give an image file")
        }
        return UInt64(max(0, info.st_size))
    }

    static func kind(_ path: String) throws -> FileKind {
        guard try fileSize(path) > 0 else {
            throw SlideError(.truncated, path: path, detail: "the file is empty (0 bytes)")
        }
        guard let file = FileHandle(forReadingAtPath: path) else {
            throw SlideError(
                .readFailed, path: path, detail: "cannot open the file for reading: \(String(cString: strerror(errno)))"
            )
        }
        defer { try? file.close() }
        let head = [UInt8]((try? file.read(upToCount: 16)) ?? Data())
        if head.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        guard head.count >= 8 else { return .other }
        let little: Bool
        switch (head[0], head[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return .other
        }
        func value(_ at: Int, _ count: Int) -> UInt64 {
            var result: UInt64 = 0
            for i in 0..<count {
                let byte = UInt64(head[at + (little ? count - 1 - i : i)])
                result = result << 8 | byte
            }
            return result
        }
        switch value(2, 2) {
        case 42: return .tiff(bigTIFF: false, firstIFD: value(4, 4))
        case 43 where head.count >= 16: return .tiff(bigTIFF: true, firstIFD: value(8, 8))
        default: return .other
        }
    }
}
