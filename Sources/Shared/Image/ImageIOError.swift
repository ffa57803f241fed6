internal import CPNGIO

/// An image or map file could not be read or written. `kind` says what went
/// wrong (callers can `catch let error as ImageIOError where error.kind == .truncated`),
/// `path` names the file, `detail` is the reason in words (libpng's message,
/// strerror, or ours).
package struct ImageIOError: Error, Equatable, Sendable, CustomStringConvertible {
    package enum Kind: String, Sendable, Equatable, CaseIterable {
        case cannotOpen = "cannot open"
        case notPNG = "not a PNG file"
        case truncated = "truncated file"
        case crcError = "CRC error"
        case invalidDimensions = "invalid dimensions"
        case unsupportedBitDepth = "unsupported bit depth"
        case invalidHeader = "invalid PNG header"
        case tooLarge = "image too large"
        case corrupt = "corrupt image data"
        case io = "I/O error"
        case outOfMemory = "out of memory"
        case notNPY = "not a NumPy .npy file"
        case unsupportedNPY = "unsupported .npy content"
        case mismatch = "inputs do not match"
        case invalidArgument = "invalid argument"
    }

    package let kind: Kind
    package let path: String
    package let detail: String

    package init(_ kind: Kind, path: String, detail: String) {
        self.kind = kind
        self.path = path
        self.detail = detail
    }

    package var description: String { "\(path): \(kind.rawValue): \(detail)" }

    /// Maps a CPNGIO status code (not `TPNG_OK`) to an error.
    init(status: Int32, path: String, message: [CChar]) {
        let kind: Kind
        switch status {
        case Int32(TPNG_ERR_OPEN.rawValue): kind = .cannotOpen
        case Int32(TPNG_ERR_NOT_PNG.rawValue): kind = .notPNG
        case Int32(TPNG_ERR_TRUNCATED.rawValue): kind = .truncated
        case Int32(TPNG_ERR_CRC.rawValue): kind = .crcError
        case Int32(TPNG_ERR_DIMENSIONS.rawValue): kind = .invalidDimensions
        case Int32(TPNG_ERR_BIT_DEPTH.rawValue): kind = .unsupportedBitDepth
        case Int32(TPNG_ERR_HEADER.rawValue): kind = .invalidHeader
        case Int32(TPNG_ERR_TOO_LARGE.rawValue): kind = .tooLarge
        case Int32(TPNG_ERR_IO.rawValue), Int32(TPNG_ERR_OUTPUT.rawValue): kind = .io
        case Int32(TPNG_ERR_NOMEM.rawValue): kind = .outOfMemory
        case Int32(TPNG_ERR_ARGUMENT.rawValue), Int32(TPNG_ERR_STATE.rawValue): kind = .invalidArgument
        default: kind = .corrupt
        }
        self.init(kind, path: path, detail: cMessage(message))
    }
}

/// A C message buffer as a String, up to its first NUL or its end (never reads past it).
func cMessage(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Size of the message buffers handed to CPNGIO and CSlideIO.
let cMessageSize = 512
