import TesseraCore
/// The files written for one probability map.
public enum OutputKind: String, CaseIterable, Sendable, Hashable, Comparable {
    /// `<stem>.prob-<class>.png`: one gray PNG per requested class, probability × 255 (or × 65535).
    case prob
    /// `<stem>.labels.png`: the argmax class index per pixel, raw (0, 1, 2, …; 8-bit, 16-bit above 256 classes).
    case labels
    /// `<stem>.overlay.png`: the input image with one class's probability blended over it as a colour map.
    case overlay
    /// `<stem>.npy`: the float32 map, shape (C, H, W), NumPy `.npy` v1.0.
    case npy
    /// `<stem>.zarr`: the map as an OME-Zarr multiscale pyramid, chunked on the tile grid (any size).
    case zarr
    /// `<stem>.map.tiff`: the map as a pyramidal tiled BigTIFF (any size).
    case tiff

    /// What `all` means: the PNG and `.npy` outputs (chunked outputs are asked for by name).
    public static let all: [OutputKind] = [.prob, .labels, .overlay, .npy]

    /// The outputs written from the chunked map store rather than from rows.
    public var isChunked: Bool { self == .zarr || self == .tiff }

    public static func < (lhs: OutputKind, rhs: OutputKind) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// A command-line value that does not parse (`--outputs`, `--bit-depth`, `--classes`).
public struct OutputOptionError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
}

/// What `writeOutputs` writes, and where.
public struct OutputOptions: Sendable, Equatable {
    /// Every output by default.
    public static let defaultKinds: Set<OutputKind> = Set(OutputKind.all)

    public var kinds: Set<OutputKind>
    /// Bit depth of the probability PNGs: 8 (default) or 16.
    public var bitDepth: Int
    /// Classes written as probability PNGs; nil: `defaultClasses(classCount:)`.
    public var classes: [Int]?
    /// The class shown by the overlay; nil: `defaultOverlayClass(classCount:)`.
    public var overlayClass: Int?
    /// Opacity of the colour map where the probability is 1 (it scales with the probability).
    public var overlayOpacity: Float
    /// zlib level for the PNGs: 0 … 9, -1 for libpng's default.
    public var compressionLevel: Int
    public var directory: String
    /// File names start with this (usually the input's name without `.png`).
    public var stem: String

    public init(directory: String, stem: String, kinds: Set<OutputKind> = OutputOptions.defaultKinds,
                bitDepth: Int = 8, classes: [Int]? = nil, overlayClass: Int? = nil, overlayOpacity: Float = 0.6,
                compressionLevel: Int = 6) {
        self.directory = directory
        self.stem = stem
        self.kinds = kinds
        self.bitDepth = bitDepth
        self.classes = classes
        self.overlayClass = overlayClass
        self.overlayOpacity = overlayOpacity
        self.compressionLevel = compressionLevel
    }

    /// All classes except 0 (background) when there are exactly 2, else all.
    public static func defaultClasses(classCount: Int) -> [Int] {
        classCount == 2 ? [1] : Array(0..<classCount)
    }

    /// Class 1 when there are two or more classes (the first non-background class), else 0.
    public static func defaultOverlayClass(classCount: Int) -> Int { classCount >= 2 ? 1 : 0 }

    /// "prob,labels,overlay,npy,zarr,tiff" (any subset, any order; "all" for the PNG and .npy ones).
    public static func parseKinds(_ text: String) throws -> Set<OutputKind> {
        var kinds: Set<OutputKind> = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let name = part.lowercased().filter { $0 != " " }
            if name == "all" {
                kinds.formUnion(OutputKind.all)
            } else if let kind = OutputKind(rawValue: name) {
                kinds.insert(kind)
            } else {
                let valid = OutputKind.allCases.map(\.rawValue).joined(separator: ", ")
                throw OutputOptionError(description: "unknown output '\(part)' (valid: \(valid), all)")
            }
        }
        return kinds
    }

    /// "8" or "16".
    public static func parseBitDepth(_ text: String) throws -> Int {
        guard let depth = Int(text), depth == 8 || depth == 16 else {
            throw OutputOptionError(description: "bit depth '\(text)' must be 8 or 16")
        }
        return depth
    }

    /// "1,2" → [1, 2].
    public static func parseClasses(_ text: String) throws -> [Int] {
        try text.split(separator: ",").map { part in
            guard let index = Int(part.filter { $0 != " " }), index >= 0 else {
                throw OutputOptionError(description: "class '\(part)' is not a class index")
            }
            return index
        }
    }

    /// Extensions dropped from an input's name to make its stem.
    static let imageExtensions = [".png", ".tiff", ".tif", ".btf", ".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".bif"]

    /// The stem of an input path: its file name without a final image extension
    /// (`.png`, `.tif`, `.svs`, … in any case).
    public static func stem(forInput path: String) -> String {
        let name = AtomicFile.split(path).1
        for ext in imageExtensions where name.lowercased().hasSuffix(ext) && name.count > ext.count {
            return String(name.dropLast(ext.count))
        }
        return name
    }

    public func probabilityPath(forClass index: Int) -> String { "\(directory)/\(stem).prob-\(index).png" }
    public var labelsPath: String { "\(directory)/\(stem).labels.png" }
    public var overlayPath: String { "\(directory)/\(stem).overlay.png" }
    public var npyPath: String { "\(directory)/\(stem).npy" }
    public var zarrPath: String { "\(directory)/\(stem).zarr" }
    public var tiffPath: String { "\(directory)/\(stem).map.tiff" }

    /// The probability classes to write for a map of `classCount` classes.
    public func resolvedClasses(classCount: Int) -> [Int] { classes ?? Self.defaultClasses(classCount: classCount) }

    public func resolvedOverlayClass(classCount: Int) -> Int {
        overlayClass ?? Self.defaultOverlayClass(classCount: classCount)
    }
}
