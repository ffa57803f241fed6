import Foundation
import TesseraCore

/// Walks a TIFF's chain of directories (IFDs) by their offsets alone, to tell a file cut short: libtiff
/// and OpenSlide both stop at a directory past the end of the file without an error, so a truncated slide
/// would otherwise lose its later pyramid levels (or its thumbnail) silently.
enum TIFFDirectoryChain {
    /// The note for a file whose chain leads past its end, or nil when the chain ends inside the file
    /// (or the file is not a TIFF). Reads at most `limit` directories' counts and next offsets.
    static func cutShortNote(path: String, limit: Int = 1024) -> String? {
        guard case .tiff(let big, let first)? = try? FileSniffer.kind(path),
            let size = try? FileSniffer.fileSize(path), let file = FileHandle(forReadingAtPath: path)
        else { return nil }
        defer { try? file.close() }
        guard let order = try? file.read(upToCount: 2), order.count == 2 else { return nil }
        let little = order.first == 0x49
        func read(_ offset: UInt64, _ count: Int) -> UInt64? {
            guard offset <= size, UInt64(count) <= size - offset else { return nil }
            guard (try? file.seek(toOffset: offset)) != nil, let data = try? file.read(upToCount: count),
                data.count == count
            else { return nil }
            return data.enumerated().reduce(UInt64(0)) { value, byte in
                value | UInt64(byte.element) << (8 * UInt64(little ? byte.offset : count - 1 - byte.offset))
            }
        }
        let (countSize, entrySize, offsetSize) = big ? (8, 20, 8) : (2, 12, 4)
        var offset = first, index = 0
        var seen = Set<UInt64>()
        while offset != 0, index < limit, seen.insert(offset).inserted {
            guard let count = read(offset, countSize) else {
                return cut(size: size, index: index, at: offset)
            }
            let (entries, overflow) = count.multipliedReportingOverflow(by: UInt64(entrySize))
            let next = offset &+ UInt64(countSize) &+ entries
            guard !overflow, next >= offset, let following = read(next, offsetSize) else {
                return cut(size: size, index: index, at: offset)
            }
            offset = following
            index += 1
        }
        return nil
    }

    private static func cut(size: UInt64, index: Int, at offset: UInt64) -> String {
        "the file ends at byte \(size), inside or before its directory \(index) (at byte \(offset)): it was cut "
            + "short (or its chain of directories is damaged), and what that directory and any later one held (a "
            + "pyramid level, a thumbnail, a label) is missing; only the levels before it are read"
    }
}
