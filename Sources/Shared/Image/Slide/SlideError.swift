import TesseraCore

/// A slide or TIFF file could not be opened or read. `kind` says what went wrong (callers can
/// `catch let error as SlideError where error.kind == .truncated`), `path` names the file, `level` and
/// `tile` say where when it applies, `detail` is the reason in words (libtiff's or OpenSlide's message, or ours).
package struct SlideError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file's data for this region is damaged (a tile that does not decode, or lies past the
    /// end of the file): reading it again gives the same error, on any machine. Errors about the
    /// whole file (an empty file) and failed reads (`readFailed`: the storage) are not.
    package var isCorruptData: Bool { kind == .corruptTile || (kind == .truncated && tile != nil) }

    package enum Kind: Equatable, Sendable, CustomStringConvertible {
        case notFound
        /// Neither a TIFF nor a format OpenSlide recognises.
        case notTIFF
        /// The file ends before data it declares (a directory or a tile past the end of the file).
        case truncated
        /// A tile or strip failed to decode, or its decoder complained (corrupt JPEG data).
        case corruptTile
        /// The directory structure is damaged (unreadable directory, impossible sizes).
        case corruptFile
        /// Reading the file's bytes failed (an I/O error or a short read): the storage, not the data.
        case readFailed
        case unsupportedCompression(Int)
        case unsupportedSampleFormat(String)
        case unsupportedPhotometric(Int)
        /// Another layout this reader does not handle (a tile or strip decoding to more than 256 MiB).
        case unsupportedLayout
        case noSuchLevel(Int)
        /// The file holds no image of this number (`--image`, from 1), or holds it elsewhere.
        case noSuchImage(Int)
        /// No level's resolution is within the tolerance of the requested µm/px (or the file has no µm/px).
        case noLevelNearMPP(Double)
        /// OpenSlide failed to open or read (its sticky error state).
        case openSlide
        /// The caller asked for something invalid (a rectangle outside the image, level and mpp together).
        case invalidArgument

        /// The case name ("corruptTile", "noSuchLevel", …): stable, for logs and machine-readable output.
        package var code: String {
            switch self {
            case .notFound: return "notFound"
            case .notTIFF: return "notTIFF"
            case .truncated: return "truncated"
            case .corruptTile: return "corruptTile"
            case .corruptFile: return "corruptFile"
            case .readFailed: return "readFailed"
            case .unsupportedCompression: return "unsupportedCompression"
            case .unsupportedSampleFormat: return "unsupportedSampleFormat"
            case .unsupportedPhotometric: return "unsupportedPhotometric"
            case .unsupportedLayout: return "unsupportedLayout"
            case .noSuchLevel: return "noSuchLevel"
            case .noSuchImage: return "noSuchImage"
            case .noLevelNearMPP: return "noLevelNearMPP"
            case .openSlide: return "openSlide"
            case .invalidArgument: return "invalidArgument"
            }
        }

        package var description: String {
            switch self {
            case .notFound: return "file not found"
            case .notTIFF: return "not a PNG, a TIFF or a slide format OpenSlide recognises"
            case .truncated: return "truncated file"
            case .corruptTile: return "corrupt tile"
            case .corruptFile: return "corrupt file"
            case .readFailed: return "read failed"
            case .unsupportedCompression(let code):
                return "unsupported compression \(TIFFNames.compression(code)) (\(code))"
            case .unsupportedSampleFormat(let format): return "unsupported sample format (\(format))"
            case .unsupportedPhotometric(let code):
                return "unsupported photometric interpretation \(TIFFNames.photometric(code)) (\(code))"
            case .unsupportedLayout: return "unsupported layout"
            case .noSuchLevel(let level): return "no level \(level)"
            case .noSuchImage(let image): return "no image \(image)"
            case .noLevelNearMPP(let mpp): return "no level near \(mpp) µm/px"
            case .openSlide: return "OpenSlide error"
            case .invalidArgument: return "invalid argument"
            }
        }
    }

    /// Where in the file an error happened: a tile (or strip) index and the pixel rectangle it covers in its level.
    package struct TileLocation: Equatable, Sendable, CustomStringConvertible {
        package let index: Int
        package let rect: PixelRect
        package let isStrip: Bool
        package var description: String { "\(isStrip ? "strip" : "tile") \(index) \(rect)" }
    }

    package let kind: Kind
    package let path: String
    /// The image of a multi-image file (`--image`), when it is not the first.
    package private(set) var image: Int?
    package let level: Int?
    package let tile: TileLocation?
    package let detail: String

    package init(
        _ kind: Kind, path: String, image: Int? = nil, level: Int? = nil, tile: TileLocation? = nil, detail: String
    ) {
        self.kind = kind
        self.path = path
        self.image = image.flatMap { $0 == 1 ? nil : $0 }
        self.level = level
        self.tile = tile
        self.detail = detail
    }

    /// This error with `text` after its detail.
    package func adding(_ text: String) -> SlideError {
        SlideError(kind, path: path, image: image, level: level, tile: tile, detail: detail + text)
    }

    /// This error, said of image `image` of its file (image 1 is not named: most files hold one).
    package func inImage(_ image: Int) -> SlideError {
        var error = self
        if image != 1 { error.image = image }
        return error
    }

    package var description: String {
        var text = "\(path): \(kind)"
        if let image, kind != .noSuchImage(image) { text += ", image \(image)" }
        if let level, kind != .noSuchLevel(level) { text += ", level \(level)" }
        if let tile { text += ", \(tile)" }
        return detail.isEmpty ? text : text + ": " + detail
    }
}
