import ArgumentParser
import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage

/// `tessera-coordinator export`: the other outputs of a finished map store (what a
/// shared-storage job writes), read band by band: never the whole map in memory.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a pyramidal TIFF, PNGs or .npy from a finished OME-Zarr map (a shared-storage job's output).",
        discussion: """
            The overlay needs the mapped image (--image). It is drawn over the image and level the map \
            records (.zattrs tessera.source, written by this release); for an older map, give the mapped \
            --level, and a map named STEM.image-N.zarr (`run --image N`) is drawn over image N of the file.

            Example:
              tessera-coordinator export maps/slide.zarr --outputs tiff --out maps
            """
    )

    @Argument(help: ArgumentHelp("The map store (a folder ending in .zarr).", valueName: "map")) var map: String
    @OptionGroup var output: OutputFlags
    @Option(help: ArgumentHelp("The mapped image, for the overlay.", valueName: "path")) var image: String?
    @Option(
        help: ArgumentHelp(
            "The pyramid level of --image that was mapped (default: the level the map records, else 0).",
            valueName: "N"))
    var level: Int?
    @Option(
        help: ArgumentHelp(
            "Sample type of the TIFF: float16, uint8 or uint16 from a float32 map's exact values (default: the map's).",
            discussion: "Map once in float32, then write a smaller TIFF for a viewer without mapping again.",
            valueName: "type"))
    var dtype: MapDType?

    func run() throws {
        guard output.outputs != nil else { throw ValidationError("give --outputs (tiff, prob, labels, overlay, npy)") }
        let logger = Logger(label: "tessera.export")
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: map, isDirectory: &isFolder), !isFolder.boolValue {
            // (It read "MAP/.zattrs: … Not a directory": audit 44 D7.)
            throw ClusterError("\(map) is a file, not a map store: give the .zarr folder a job or run wrote")
        }
        let store = try MapStore.open(at: map)
        guard store.isFinished else {
            throw ClusterError("\(map) is not a finished map (its job is still running, or failed)")
        }
        try output.checkBeforeMapping(
            classes: store.layout.netClasses, kept: store.layout.kept,
            kinds: output.outputs.map(OutputOptions.parseKinds), keptByMap: true)
        // The folder's own name: `export .` took "." for the stem and wrote `..prob-1.png` (paths audit 41 F7).
        let stem = (URL(fileURLWithPath: map).standardizedFileURL.lastPathComponent as NSString).deletingPathExtension
        let options = try output.options(forImage: stem + ".png")
        if options.kinds.contains(.zarr) { throw ValidationError("the map is the zarr output already") }
        if let dtype, dtype != store.layout.dtype {
            guard options.kinds.contains(.tiff) else {
                throw ValidationError("--dtype \(dtype.rawValue) sets the TIFF's samples: add tiff to --outputs")
            }
            guard store.layout.dtype == .float32 else {
                throw ClusterError(
                    "--dtype \(dtype.rawValue): the map holds \(store.layout.dtype.rawValue) samples; only a float32 "
                        + "map's exact values are converted (export it without --dtype)")
            }
        }
        var source: (any RegionSource)?
        if options.kinds.contains(.overlay) {
            guard let image else { throw ValidationError("the overlay needs --image (the mapped image)") }
            // The map records the file, image and level it was computed from (`tessera.source`); older
            // maps name image N `<stem>.image-N` (`OutputOptions.stem(forInput:image:)`).
            let recorded = store.layout.source
            let number = recorded?.image ?? OutputOptions.imageNumber(ofStem: stem)
            if number != 1 { logger.info("the map is of image \(number) of its file: the overlay reads that image") }
            if let recorded, recorded.file != (image as NSString).lastPathComponent {
                let given = (image as NSString).lastPathComponent
                logger.warning(
                    "the map was computed from \(recorded.file), not \(given): the overlay draws it over --image all the same"
                )
            }
            let level = self.level ?? recorded?.level
            if let level, self.level == nil, level != 0 {
                logger.info("the map is of level \(level) of its image (tessera.source): the overlay reads that level")
            }
            let opened: ImageInput.Opened
            do {
                opened = try ImageInput.open(path: image, image: number, level: level, rowsInOrder: true)
            } catch let error as SlideError {
                // The image and level came from the map, not from the command line (docs/CLI audit 36 F15: the
                // error blamed a --level never given).
                let fromMap: Bool
                switch error.kind {
                case .noSuchLevel: fromMap = self.level == nil
                case .noSuchImage: fromMap = true
                default: fromMap = false
                }
                guard fromMap, let recorded else { throw error }
                throw ClusterError(
                    "the map records image \(recorded.image), level \(recorded.level) of \(recorded.file) "
                        + "(tessera.source), which \(image) does not have (\(error.detail)): give the image the map "
                        + "was computed from")
            }
            guard opened.source.height == store.layout.height, opened.source.width == store.layout.width else {
                // Name the level that fits, when one does.
                let fitting = (0..<opened.levelCount).first { l in
                    guard l != opened.level, let o = try? ImageInput.open(path: image, image: number, level: l) else {
                        return false
                    }
                    return o.source.height == store.layout.height && o.source.width == store.layout.width
                }
                throw ClusterError(
                    "\(image) at \(opened.levelDescription) is \(opened.source.width)×\(opened.source.height), "
                        + "the map is \(store.layout.width)×\(store.layout.height)"
                        + (fitting.map { ": give --level \($0)" } ?? ""))
            }
            source = opened.source
        }
        // Left by an export or run killed before it could clean up (SIGKILL, a power loss).
        let stale = RunInterruption.removeStaleTemporaries(
            in: options.directory, stems: [options.stem], finishedStores: false)
        if !stale.isEmpty {
            logger.notice(
                "removed unfinished outputs an interrupted earlier process left: \(stale.joined(separator: ", "))")
        }
        // A .npy that cannot fit is refused before it is written (audit 55 F13: a slide's tens of gigabytes were
        // read and written until the disk was full), as `run` refuses it; after the leftovers went (review 32 R2).
        if let free = freeBytes(options.directory) {
            var need = OutputSpace(
                height: store.layout.height, width: store.layout.width, classes: store.layout.classes,
                dtype: dtype ?? store.layout.dtype, options: options)
            need.temporary = 0
            let remedy = "free some space, or give another --out"
            if let warning = try need.check(free: free, image: store.path, out: options.directory, remedy: remedy) {
                logger.warning("\(warning)")
            }
        }
        // Ctrl-C or SIGTERM: this export's unfinished files go (they were left, hidden, before: 1.4 GB for a
        // slide's .npy) and it exits 130 or 143 at once; finished outputs stay.
        let interruption = RunInterruption(
            out: options.directory, images: [options.stem + ".png"], image: 1, removeOutputs: true,
            message: "interrupted: removing this export's unfinished outputs")
        defer { withExtendedLifetime(interruption) {} }
        for path in try ChunkedMapOutput.export(
            store, image: source, options: options, tiffDType: dtype, logger: logger)
        {
            print(path)
        }
    }
}
