import TesseraCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A map store or export could not be created, read, written or verified.
/// `kind` says what went wrong (callers match on it, e.g. `.missingChunk` to
/// recompute a tile on resume), `path` names the store, chunk or file, `detail`
/// is the reason in words (strerror, zlib's or libtiff's message, or ours).
package struct MapStoreError: Error, Equatable, Sendable, CustomStringConvertible {
    package enum Kind: String, Sendable, Equatable, CaseIterable {
        case invalidArgument = "invalid argument"
        case notAStore = "not a Tessera map store"
        case alreadyExists = "already exists"
        case notFinished = "store not finished"
        case missingChunk = "missing chunk"
        case truncated = "truncated chunk"
        case corrupt = "corrupt chunk"
        case checksumMismatch = "checksum mismatch"
        case io = "I/O error"
        case tiff = "TIFF error"
    }

    package let kind: Kind
    package let path: String
    package let detail: String

    package init(_ kind: Kind, path: String, detail: String) {
        self.kind = kind
        self.path = path
        self.detail = detail
    }

    /// A layout refused before any store exists has no path: "Error: : invalid argument" read as a bug.
    package var description: String { (path.isEmpty ? "" : "\(path): ") + "\(kind.rawValue): \(detail)" }
}
