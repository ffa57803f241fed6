import ArgumentParser
import CLISupport
import Foundation
import TesseraCore
import TesseraImage

/// `--out`, `--outputs`, `--bit-depth`, `--classes`, `--overlay-class`: what is written
/// for each image. Shared by `run` and `submit`.
struct OutputFlags: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Folder for the outputs (created when missing).", valueName: "dir"))
    var out: String

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Outputs to write, comma-separated: prob (one PNG per class), labels (argmax PNG), "
                + "overlay (map over the image), npy (float32 (C,H,W) map; with zarr, the zarr dtype's values), all (those four), "
                + "zarr (OME-Zarr pyramid), tiff (pyramidal tiled TIFF). Default for run: all for PNG inputs (npy,prob with "
                + "--keep-classes), zarr for slides. submit: an upload job writes the first four (default as run's), "
                + "a shared-storage job "
                + "(--shared) the zarr map only (export writes the others from it). export needs the list.",
            valueName: "list"))
    var outputs: String?

    @Option(name: .long, help: "Bit depth of the probability PNGs: 8 or 16.")
    var bitDepth = 8

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Classes written as probability PNGs, e.g. 1 or 0,2 (default: all but 0 for two classes, else all).",
            valueName: "list"))
    var classes: String?

    @Option(name: .long, help: "Class shown by the overlay (default: 1; 0 for a one-class net).")
    var overlayClass: Int?

    func validate() throws {
        do {
            _ = try OutputOptions.parseKinds(outputs ?? "all")
            _ = try OutputOptions.parseBitDepth(String(bitDepth))
            if let classes { _ = try OutputOptions.parseClasses(classes) }
        } catch let e as OutputOptionError {
            throw ValidationError(e.description)
        }
    }

    /// The options for one input image (a slide's default output is its OME-Zarr map;
    /// a PNG's is every output, or with `keeping` some classes only, the `.npy` and
    /// probability PNGs: labels and overlays need every class).
    /// `image`: the image of a multi-image file (`--image`), which names the outputs.
    func options(
        forImage path: String, image: Int = 1, isPNG: Bool = true, keeping: Bool = false
    ) throws
        -> OutputOptions
    {
        try OutputOptions(
            directory: out, stem: OutputOptions.stem(forInput: path, image: image),
            kinds: OutputOptions.parseKinds(outputsOrDefault(isPNG: isPNG, keeping: keeping)),
            bitDepth: bitDepth, classes: classes.map(OutputOptions.parseClasses), overlayClass: overlayClass)
    }

    /// `--outputs`, or the default: a slide's OME-Zarr map; a PNG's every output, or with `keeping` some classes
    /// only, the `.npy` and probability PNGs (`run` and an upload job alike: docs audit 49 F2).
    func outputsOrDefault(isPNG: Bool, keeping: Bool) -> String {
        outputs ?? (isPNG ? (keeping ? "npy,prob" : "all") : "zarr")
    }

    /// A note when `--keep-classes` changes the default outputs of a PNG (labels and overlays need every class),
    /// which went unsaid (user review).
    func keptDefaultNote(kept: [Int]?, isPNG: Bool) -> String? {
        guard let kept, outputs == nil, isPNG else { return nil }
        return "--keep-classes \(kept.map(String.init).joined(separator: ",")): writing npy and prob only (labels and "
            + "overlays need every class)"
    }

    /// What can be checked before any tile is computed: the output folder exists (or
    /// is created) and is writable, and the classes asked for exist in a net of
    /// `classes` classes. A job must not run for hours and then fail on these.
    /// `keptByMap`: the kept classes are the existing map's (`export`), not this command's `--keep-classes`.
    /// `folder`: whether `--out` is written by this command (not by `submit` without `--wait`, whose
    /// outputs stay on the coordinator until fetched).
    func checkBeforeMapping(
        classes count: Int, kept: [Int]? = nil, kinds: Set<OutputKind>? = nil, keptByMap: Bool = false,
        folder: Bool = true, upload: Bool = false
    ) throws {
        if folder {
            try Self.prepareFolder(out)
        } else {
            // Not written now, but where `fetch --out` will go: a path that can never be a folder is refused.
            var isFolder: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: out, isDirectory: &isFolder)
            if exists && !isFolder.boolValue {
                throw CommandError("--out \(out): a file, not a folder")
            }
            if !exists, case let why = Self.whyNotCreatable(out), why.hasSuffix("is a file, not a folder") {
                throw CommandError("--out \(out): cannot create the folder: \(why)")
            }
        }
        let valid = 0..<count
        let has = count == 1 ? "the net has 1 class (0)" : "the net has \(count) classes (0…\(count - 1))"
        if let list = requestedClasses, let bad = list.first(where: { !valid.contains($0) }) {
            throw CommandError("--classes \(bad): \(has)")
        }
        if let overlayClass, !valid.contains(overlayClass) {
            throw CommandError("--overlay-class \(overlayClass): \(has)")
        }
        guard let kept else { return }
        let keeps =
            keptByMap
            ? "the map holds only classes \(kept) (it was made with --keep-classes)"
            : "--keep-classes keeps only classes \(kept)"
        if let kinds, !kinds.isDisjoint(with: [.labels, .overlay]) {
            throw CommandError(
                "\(keeps): labels and overlays need every class "
                    // (An upload job writes neither zarr nor TIFF: audit 44 D7.)
                    + "(choose --outputs among \(upload ? "npy, prob" : keptByMap ? "tiff, npy, prob" : "zarr, tiff, npy, prob"))"
            )
        }
        if let list = requestedClasses, let bad = list.first(where: { !kept.contains($0) }) {
            throw CommandError("--classes \(bad): \(keeps)")
        }
    }

    private var requestedClasses: [Int]? { classes.flatMap { try? OutputOptions.parseClasses($0) } }
}

extension OutputFlags {
    /// Makes `out` (the `--out` folder) if it is missing and checks that it can be written, naming the option
    /// when it cannot (`fetch` too: a file there gave a raw Foundation error, user review).
    static func prepareFolder(_ out: String) throws {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: out, isDirectory: &isFolder), !isFolder.boolValue {
            throw CommandError("--out \(out): a file, not a folder")
        }
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        } catch {
            throw CommandError("--out \(out): cannot create the folder: \(whyNotCreatable(out))")
        }
        let probe = "\(out)/.tessera-write-check-\(getpid())"
        guard FileManager.default.createFile(atPath: probe, contents: Data()) else {
            throw CommandError("--out \(out): the folder is not writable")
        }
        try? FileManager.default.removeItem(atPath: probe)
    }

    /// Why `path` cannot be created as a folder: its nearest existing ancestor is a
    /// file, or is not writable.
    static func whyNotCreatable(_ path: String) -> String {
        var ancestor = parentPath(path)
        while !ancestor.isEmpty && ancestor != "/" && !FileManager.default.fileExists(atPath: ancestor) {
            ancestor = parentPath(ancestor)
        }
        let existing = ancestor.isEmpty ? "." : ancestor
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: existing, isDirectory: &isFolder), !isFolder.boolValue {
            return "\(existing) is a file, not a folder"
        }
        return access(existing, W_OK) == 0 ? "the file system refused it" : "\(existing) is not writable"
    }
}
