import ArgumentParser
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
                + "overlay (map over the image), npy (float32 (C,H,W) map), all (those four), "
                + "zarr (OME-Zarr pyramid), tiff (pyramidal tiled TIFF). Default: all for PNG inputs, zarr for slides.",
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

    @Option(name: .long, help: "Class shown by the overlay (default: 1).")
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

    /// The options for one input image (a slide's default output is its OME-Zarr map).
    func options(forImage path: String, isPNG: Bool = true) throws -> OutputOptions {
        try OutputOptions(
            directory: out, stem: OutputOptions.stem(forInput: path),
            kinds: OutputOptions.parseKinds(outputs ?? (isPNG ? "all" : "zarr")),
            bitDepth: bitDepth, classes: classes.map(OutputOptions.parseClasses), overlayClass: overlayClass)
    }
}
