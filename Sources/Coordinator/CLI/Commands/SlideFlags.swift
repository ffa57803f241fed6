import ArgumentParser
import CLISupport
import TesseraCluster
import TesseraImage

/// What `run` and `submit --shared` share for slides: the image of a multi-image file,
/// the pyramid level, tissue detection and the chunked map's sample type and classes.
struct SlideFlags: ParsableArguments {
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Image of a multi-image TIFF to map, from 1 (an OME-TIFF's scenes, a TIFF's separate pages).",
            discussion: "Default 1. `inspect-image` lists a file's images.", valueName: "N"))
    var image: Int?
    // The values are taken whatever they look like (`.unconditional`): `--level -1` gets
    // "must be 0 or more", not ArgumentParser's "Missing value for '--level <N>'".
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("Pyramid level of a slide to map (0: full resolution).", valueName: "N"))
    var level: Int?
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Map the slide level closest to this many microns per pixel (within 20 %).",
            valueName: "X"))
    var mpp: Double?
    @Flag(
        help: ArgumentHelp(
            "Compute only tiles with tissue (Otsu on saturation of a low-resolution view, and what is darker "
                + "than the glass; on brightness when its background is dark, as in fluorescence).",
            discussion: "Skipped tiles are not computed and read as the store's fill value "
                + "(NaN for float maps and the .npy, 0 for integer ones; 0 in PNGs)."))
    var tissue = false
    @Option(
        help: ArgumentHelp(
            "Sample type of the zarr and tiff outputs: float32 (exact), float16, uint8 or uint16 "
                + "(probability × 255 or × 65535, rounded)."))
    var dtype: MapDType = .float32
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Keep only these classes in the map (zarr, tiff, npy and probability PNGs), e.g. 1.",
            discussion: "Workers drop the other classes before writing, so a one-class uint8 map of a two-class "
                + "net writes 8× fewer bytes than the full float32 map. Labels and overlays need every class.",
            valueName: "LIST"))
    var keepClasses: String?
    @Option(
        help: ArgumentHelp(
            "What a map tile whose input is damaged (a tile of the image that does not decode) does: fail (the "
                + "job fails, naming it) or skip (the map is made, such tiles are left empty and listed).",
            discussion: "Skipped tiles read as the fill value, like --tissue's. A damaged image tile touches the "
                + "map tiles whose input region (with the net's margin) overlaps it.",
            valueName: "fail|skip"))
    var corruptTiles: CorruptTiles = .fail

    enum CorruptTiles: String, ExpressibleByArgument, CaseIterable { case fail, skip }

    /// `--keep-classes` as the ascending classes kept, checked against the net's class count.
    func keptClasses(netClasses: Int) throws -> [Int]? {
        guard let keepClasses else { return nil }
        let kept = try JobOptions.keptClasses(keepClasses)
        if let bad = kept.first(where: { $0 >= netClasses }) {
            throw CommandError("--keep-classes: class \(bad) does not exist (the net has \(netClasses) classes)")
        }
        return kept == Array(0..<netClasses) ? nil : kept
    }

    func validate() throws {
        if let keepClasses {
            // A malformed list is the command line's error (exit status 64, with the usage).
            do { _ = try JobOptions.keptClasses(keepClasses) } catch {
                throw ValidationError("--keep-classes: \(error)")
            }
        }
        if level != nil && mpp != nil { throw ValidationError("give --level or --mpp, not both") }
        if let level, level < 0 { throw ValidationError("--level must be 0 or more") }
        if let image, image < 1 { throw ValidationError("--image must be 1 or more (images are numbered from 1)") }
        if let mpp, !(mpp > 0 && mpp.isFinite) { throw ValidationError("--mpp must be a positive number") }
    }
}
