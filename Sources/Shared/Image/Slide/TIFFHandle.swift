import CSlideIO
import TesseraCore

/// Where a pyramid level's directory lives: in the main IFD chain, or as a SubIFD of directory 0.
enum TIFFDirectoryLocation: Hashable, Sendable {
    case directory(Int)
    case subIFD(UInt64)
}

/// One open libtiff handle. Not thread-safe (libtiff handles keep the current directory and decoder state):
/// `TIFFRegionSource` hands each handle to one thread at a time through `HandlePool`.
final class TIFFHandle {
    let path: String
    private let raw: OpaquePointer

    /// libtiff's warnings for files other libraries open (OpenSlide) are dropped, not printed raw to
    /// stderr outside the log (hostile-input audit); what they said is in `TIFFStructure`'s damage notes.
    static let quietGlobalWarnings: Void = tsl_tiff_quiet_global_warnings()

    init(path: String) throws {
        self.path = path
        var message = [CChar](repeating: 0, count: cMessageSize)
        var handle: OpaquePointer?
        let status = tsl_tiff_open(path, &handle, &message, message.count)
        guard status == Int32(TSL_OK.rawValue), let handle else {
            throw Self.openFailure(path: path, message: cMessage(message))
        }
        raw = handle
    }

    deinit { tsl_tiff_close(raw) }

    /// Why libtiff could not open `path`: a first directory past the end of the file is a truncated file (libtiff
    /// and tiffcp write the directory after the pixels); anything else is a damaged one.
    private static func openFailure(path: String, message: String) -> SlideError {
        let size = (try? FileSniffer.fileSize(path)) ?? 0
        switch try? FileSniffer.kind(path) {
        case .tiff(let big, let firstIFD)? where firstIFD + (big ? 8 : 2) > size:
            return SlideError(
                .truncated, path: path,
                detail: "the first directory is at byte \(firstIFD),"
                    + " past the end of the file (\(size) bytes)")
        case .tiff(_, let firstIFD)? where firstIFD < 8:
            return SlideError(
                .corruptFile, path: path,
                detail: "the header points at no directory (offset \(firstIFD))")
        case .tiff?:
            return SlideError(.corruptFile, path: path, detail: "libtiff cannot open it: \(message)")
        default:
            return SlideError(.notTIFF, path: path, detail: "no TIFF or BigTIFF header")
        }
    }

    var directoryCount: Int { Int(tsl_tiff_directory_count(raw)) }

    /// Makes `location` current and describes it.
    func select(_ location: TIFFDirectoryLocation, level: Int? = nil) throws -> tsl_dir_info {
        var message = [CChar](repeating: 0, count: cMessageSize)
        var info = tsl_dir_info()
        let status: Int32
        switch location {
        case .directory(let index):
            status = tsl_tiff_select_directory(raw, Int32(index), &info, &message, message.count)
        case .subIFD(let offset): status = tsl_tiff_select_subifd(raw, offset, &info, &message, message.count)
        }
        guard status == Int32(TSL_OK.rawValue) else {
            throw SlideError(
                .corruptFile, path: path, level: level,
                detail: "cannot read the directory (\(location)): \(cMessage(message))")
        }
        return info
    }

    /// What libtiff could not read of the current directory (an IO error reading a tag of a truncated
    /// file), or nil when it read it whole (warnings of unknown or private tags do not count).
    func directoryWarnings() -> String? {
        var message = [CChar](repeating: 0, count: cMessageSize)
        guard tsl_tiff_io_problem(raw, &message, message.count) > 0 else { return nil }
        return cMessage(message)
    }

    /// Why tile or strip `index` of the current directory cannot be read, from its offset and byte count
    /// alone (nil when they look sound): no location, no data stored (0 bytes: OpenSlide reads such a
    /// tile as transparent background), an offset inside the header, or bytes past the end of the file.
    func storedBytesProblem(_ index: Int, fileSize: UInt64) -> (kind: SlideError.Kind, detail: String)? {
        guard let (offset, byteCount) = chunkLocation(index) else {
            return (.corruptFile, "the directory has no offset or byte count for it")
        }
        guard byteCount > 0 else { return (.corruptTile, "its byte count is 0 (no data stored)") }
        // The first 8 bytes (16 in a BigTIFF) are the header: no image data starts there. libtiff reads a
        // TileOffsets tag of the wrong count as all zeros, and the header was decoded as pixels
        // (hostile-input audit: an uncompressed file mapped without an error).
        guard offset >= 8 else {
            return (.corruptFile, "its data offset is \(offset), inside the file's header (the offsets are damaged)")
        }
        guard offset <= fileSize, byteCount <= fileSize - offset else {
            return (
                .truncated,
                "its \(byteCount) bytes at byte \(offset) run past the end of the file (\(fileSize) bytes)"
            )
        }
        return nil
    }

    /// Of the current directory's `count` tiles or strips, those whose bytes run past `fileSize`
    /// (a truncated copy): how many, and the first one's index and offset.
    func chunksPastEnd(count: Int, fileSize: UInt64) -> (count: Int, first: Int, offset: UInt64)? {
        var past = 0
        var first: (Int, UInt64)?
        for index in 0..<count {
            guard let (offset, bytes) = chunkLocation(index), bytes > 0 else { continue }
            let (end, overflow) = offset.addingReportingOverflow(bytes)
            if overflow || end > fileSize {
                past += 1
                if first == nil { first = (index, offset) }
            }
        }
        return first.map { (past, $0.0, $0.1) }
    }

    /// SubIFD offsets of the current directory (at most 64).
    func subIFDOffsets() -> [UInt64] {
        var offsets = [UInt64](repeating: 0, count: 64)
        let count = Int(tsl_tiff_subifd_offsets(raw, &offsets, Int32(offsets.count)))
        return Array(offsets.prefix(min(count, offsets.count)))
    }

    /// The current directory's ImageDescription (first 64 KiB).
    func imageDescription() -> String? {
        var buffer = [CChar](repeating: 0, count: 65536)
        guard tsl_tiff_description(raw, &buffer, buffer.count) != 0 else { return nil }
        return cMessage(buffer)
    }

    func chunkLocation(_ index: Int) -> (offset: UInt64, byteCount: UInt64)? {
        var offset: UInt64 = 0
        var count: UInt64 = 0
        guard tsl_tiff_chunk_location(raw, UInt32(index), &offset, &count) == Int32(TSL_OK.rawValue) else { return nil }
        return (offset, count)
    }

    /// Decodes tile/strip `index` into `buffer`; returns the bytes decoded, or nil with the reason in `failure`.
    func readChunk(_ index: Int, into buffer: UnsafeMutableRawBufferPointer, failure: inout String) -> Int? {
        var message = [CChar](repeating: 0, count: cMessageSize)
        let got = tsl_tiff_read_chunk(raw, UInt32(index), buffer.baseAddress, buffer.count, &message, message.count)
        if got < 0 {
            failure = cMessage(message)
            return nil
        }
        return Int(got)
    }
}
