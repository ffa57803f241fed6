import Foundation
import TesseraCore

/// The files written for one probability map.
package enum OutputKind: String, CaseIterable, Sendable, Hashable, Comparable {
    /// `<stem>.prob-<class>.png`: one gray PNG per requested class, probability × 255 (or × 65535).
    case prob
    /// `<stem>.labels.png`: the argmax class index per pixel, raw (0, 1, 2, …; 8-bit, 16-bit above 256 classes);
    /// a one-class map: 1 where its probability is above 0.5.
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
    package static let all: [OutputKind] = [.prob, .labels, .overlay, .npy]

    /// The outputs written from the chunked map store rather than from rows.
    package var isChunked: Bool { self == .zarr || self == .tiff }

    package static func < (lhs: OutputKind, rhs: OutputKind) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// A command-line value that does not parse (`--outputs`, `--bit-depth`, `--classes`).
package struct OutputOptionError: Error, Equatable, Sendable, CustomStringConvertible {
    package let description: String
}

/// What `writeOutputs` writes, and where.
package struct OutputOptions: Sendable, Equatable {
    /// Every output by default.
    package static let defaultKinds: Set<OutputKind> = Set(OutputKind.all)

    package var kinds: Set<OutputKind>
    /// Bit depth of the probability PNGs: 8 (default) or 16.
    package var bitDepth: Int
    /// Classes written as probability PNGs; nil: `defaultClasses(classCount:)`.
    package var classes: [Int]?
    /// The class shown by the overlay; nil: `defaultOverlayClass(classCount:)`.
    package var overlayClass: Int?
    /// Opacity of the colour map where the probability is 1 (it scales with the probability).
    package var overlayOpacity: Float
    /// zlib level for the PNGs: 0 … 9, -1 for libpng's default.
    package var compressionLevel: Int
    package var directory: String
    /// File names start with this (usually the input's name without `.png`).
    package var stem: String

    package init(
        directory: String, stem: String, kinds: Set<OutputKind> = OutputOptions.defaultKinds,
        bitDepth: Int = 8, classes: [Int]? = nil, overlayClass: Int? = nil, overlayOpacity: Float = 0.6,
        compressionLevel: Int = 6
    ) {
        self.directory = Self.folder(directory)
        self.stem = stem
        self.kinds = kinds
        self.bitDepth = bitDepth
        self.classes = classes
        self.overlayClass = overlayClass
        self.overlayOpacity = overlayOpacity
        self.compressionLevel = compressionLevel
    }

    /// All classes except 0 (background) when there are exactly 2, else all.
    package static func defaultClasses(classCount: Int) -> [Int] {
        classCount == 2 ? [1] : Array(0..<classCount)
    }

    /// Class 1 when there are two or more classes (the first non-background class), else 0.
    package static func defaultOverlayClass(classCount: Int) -> Int { classCount >= 2 ? 1 : 0 }

    /// "prob,labels,overlay,npy,zarr,tiff" (any subset, any order; "all" for the PNG and .npy ones).
    package static func parseKinds(_ text: String) throws -> Set<OutputKind> {
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
    package static func parseBitDepth(_ text: String) throws -> Int {
        guard let depth = Int(text), depth == 8 || depth == 16 else {
            throw OutputOptionError(description: "bit depth '\(text)' must be 8 or 16")
        }
        return depth
    }

    /// "1,2" → [1, 2].
    package static func parseClasses(_ text: String) throws -> [Int] {
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
    package static func stem(forInput path: String) -> String {
        let name = AtomicFile.split(path).1
        for ext in imageExtensions where name.lowercased().hasSuffix(ext) && name.count > ext.count {
            return String(name.dropLast(ext.count))
        }
        return name
    }

    /// The stem of image `image` of an input (`--image`): image 1's is the input's stem, as
    /// before images could be chosen; another's adds `.image-N`, so the maps of two images of
    /// one file in one folder do not replace each other.
    package static func stem(forInput path: String, image: Int) -> String {
        image == 1 ? stem(forInput: path) : "\(stem(forInput: path)).image-\(image)"
    }

    /// The image a stem names: N for `….image-N`, else 1.
    package static func imageNumber(ofStem stem: String) -> Int {
        guard let dot = stem.range(of: ".image-", options: .backwards),
            let n = Int(stem[dot.upperBound...]), n > 1
        else { return 1 }
        return n
    }

    /// Throws, naming both, if two inputs have the same stem: their outputs in one
    /// folder would overwrite each other (`a/x.png` and `b/x.png`, or `x.png` and `x.tif`).
    package static func checkDistinctStems(_ paths: [String]) throws {
        var seen: [String: String] = [:]
        for path in paths {
            let stem = stem(forInput: path)
            if let other = seen[stem] {
                throw OutputOptionError(
                    description: "\(other) and \(path) would both write \(stem).* into the same --out folder: "
                        + "map them in separate runs with different --out folders, or rename one")
            }
            seen[stem] = path
        }
    }

    /// The longest stem (bytes) whose outputs' temporary names (`.STEM.prob-N.png.partial-PID-RANDOM`, up
    /// to 44 bytes more) fit the 255 bytes of a file name.
    package static let maxStemBytes = 200

    /// Throws, naming it, if an input's stem is too long for its outputs' temporary names: it failed with
    /// "File name too long" once mapped (a cluster job after computing the map; paths audit 41 F4).
    package static func checkStemLengths(_ paths: [String], image: Int = 1) throws {
        for path in paths {
            let stem = stem(forInput: path, image: image)
            guard stem.utf8.count > maxStemBytes else { continue }
            throw OutputOptionError(
                description: "\(path): its name is \(stem.utf8.count) bytes without the extension; its outputs' "
                    + "names, with the temporary ones written first, need it to be at most \(maxStemBytes) (a file "
                    + "name holds 255): rename it, or map a link with a shorter name")
        }
    }

    /// Throws, naming both, if an input image lies in `out` under the name of an output of one of the
    /// inputs (`out/x.prob-1.png` beside `x.png`): it was overwritten before it was read, and its map made
    /// from the other image's output, without a word (paths audit 41 F1).
    package static func checkInputsAreNotOutputs(_ paths: [String], out: String, image: Int = 1) throws {
        guard let outFolder = realPath(out) else { return }  // not there yet: nothing is in it
        let stems = paths.map { (stem(forInput: $0, image: image), $0) }
        for path in paths {
            let folder = parentPath(path)
            guard realPath(folder.isEmpty ? "." : folder) == outFolder else { continue }
            let name = String(path.split(separator: "/").last ?? "")
            for (stem, input) in stems {
                let fixed = ["npy", "labels.png", "overlay.png", "map.tiff"].map { "\(stem).\($0)" }
                guard fixed.contains(name) || (name.hasPrefix("\(stem).prob-") && name.hasSuffix(".png")) else {
                    continue
                }
                throw OutputOptionError(
                    description: "\(path) is in --out \(out) under the name of an output of \(input): it would be "
                        + "overwritten before it is read; move it, or give another --out")
            }
        }
    }

    /// The canonical absolute path of an existing file or folder, or nil.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    package func probabilityPath(forClass index: Int) -> String { "\(directory)/\(stem).prob-\(index).png" }
    package var labelsPath: String { "\(directory)/\(stem).labels.png" }
    package var overlayPath: String { "\(directory)/\(stem).overlay.png" }
    package var npyPath: String { "\(directory)/\(stem).npy" }
    package var zarrPath: String { "\(directory)/\(stem).zarr" }
    package var tiffPath: String { "\(directory)/\(stem).map.tiff" }

    /// The probability classes to write for a map of `classCount` classes.
    package func resolvedClasses(classCount: Int) -> [Int] { classes ?? Self.defaultClasses(classCount: classCount) }

    /// `path` without trailing slashes (`--out out/` wrote `out//ihc.npy` in messages: user review); "/" stays.
    package static func folder(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        return String(p)
    }

    package func resolvedOverlayClass(classCount: Int) -> Int {
        overlayClass ?? Self.defaultOverlayClass(classCount: classCount)
    }

    /// The single-file outputs of an image named `stem` in `directory` that are there (regular files or links):
    /// its probability PNGs of any class, labels, overlay, `.npy` and TIFF. When a new zarr replaces an earlier
    /// map of that name, they are that map's: the README promises they are removed (docs audit 49 F1: those of
    /// kinds the new run did not write stayed, up to 1.0 off, and a shared job's `export`ed TIFF stayed beside
    /// its new map). Only then: files of these names beside no map may be anyone's (review).
    package static func existingOutputs(directory: String, stem: String) -> [String] {
        let fixed = ["labels.png", "overlay.png", "npy", "map.tiff"].map { "\(stem).\($0)" }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { name in
            if fixed.contains(name) { return true }
            guard name.hasPrefix("\(stem).prob-"), name.hasSuffix(".png") else { return false }
            let number = name.dropFirst(stem.count + 6).dropLast(4)
            return !number.isEmpty && number.allSatisfy(\.isASCII) && number.allSatisfy(\.isNumber)
        }
        return names.sorted().map { "\(directory)/\($0)" }.filter(isFileOrLink)
    }

    /// Whether `path` is a regular file or a symbolic link (not followed): what may be removed as an earlier
    /// output. A folder of an output's name is the user's (verification audit 40).
    package static func isFileOrLink(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT == S_IFREG || info.st_mode & S_IFMT == S_IFLNK)
    }

    /// The single-file outputs asked for (not the zarr), the probability PNGs of `probabilityClasses`.
    package func singleFiles(probabilityClasses: [Int]) -> [String] {
        var files: [String] = []
        if kinds.contains(.prob) { files += probabilityClasses.map(probabilityPath(forClass:)) }
        if kinds.contains(.labels) { files.append(labelsPath) }
        if kinds.contains(.overlay) { files.append(overlayPath) }
        if kinds.contains(.npy) { files.append(npyPath) }
        if kinds.contains(.tiff) { files.append(tiffPath) }
        return files
    }

    /// An output file that a folder stands in the way of (its rename would fail once the whole map is
    /// computed: user review), or nil.
    package func folderInTheWay(classCount: Int) -> String? {
        singleFiles(probabilityClasses: resolvedClasses(classCount: classCount)).first { path in
            var folder: ObjCBool = false
            return FileManager.default.fileExists(atPath: path, isDirectory: &folder) && folder.boolValue
        }
    }
}
