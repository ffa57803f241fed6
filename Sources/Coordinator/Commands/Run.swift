import ArgumentParser
import Foundation
import Logging
import Shared

/// `tessera-coordinator run`: maps images on this machine.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute the probability maps of PNG images with a Caffe patch classifier.",
        discussion: """
            Modes: dense (exact, one pass of the dilated net: the default), shift (exact, S² strided \
            passes interlaced), fast (one strided pass, interpolated between grid points every S \
            pixels), naive (the classifier on every patch; a reference for small images). \
            dense, shift and naive give the same map to ~1e-5.

            Example:
              tessera-coordinator run --model models/demo/deploy.prototxt \\
                --weights models/demo/nuclei32.caffemodel --mean 180,140,190 --scale 0.015625 \\
                --mode dense --out out examples/ihc.png
            """
    )

    @OptionGroup var model: ModelOptions
    @OptionGroup var preprocessing: PreprocessingOptions
    @OptionGroup var output: OutputFlags

    @Option(help: "naive, fast, shift or dense.") var mode: MapMode = .dense
    @Option(help: "Tile size in map pixels (default: the largest that fits --memory-budget).") var tile: Int?
    @Option(help: "Memory budget for one tile's activations, in MiB.") var memoryBudget = 768
    @Option(help: "Threads (default: all cores).") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Flag(help: "Accept a net that cannot be exact (padding, partial pooling windows): the map is approximate.")
    var allowPadding = false
    @Option(help: "Refuse images with more pixels than this, before decoding them.")
    var maxPixels = PNGReader.defaultMaxPixels
    @Argument(help: ArgumentHelp("PNG images to map.", valueName: "image")) var images: [String]

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one PNG image") }
        if let tile, tile <= 0 || tile > 1 << 20 { throw ValidationError("--tile must be between 1 and 1048576") }
        guard threads >= 1, threads <= 1024 else { throw ValidationError("--threads must be between 1 and 1024") }
        guard memoryBudget >= 16 else { throw ValidationError("--memory-budget must be at least 16 MiB") }
    }

    func run() throws {
        let logger = Logger(label: "tessera.run")
        let (loaded, prep) = try loadModel(model, preprocessing, logger: logger)
        try loaded.requireExact(allowApproximate: allowPadding)
        let engine = try MapEngine(model: loaded, allowPadding: allowPadding)
        let blas = try BLAS.get()
        logger.info("BLAS kernel \(blas.coreName) (\(blas.coreChoice))")
        let mapper = LocalMapper(engine: engine, preprocessing: prep, threads: threads,
                                 memoryBudget: memoryBudget << 20)
        try FileManager.default.createDirectory(atPath: output.out, withIntermediateDirectories: true)
        let progress = Progress(stream: stderr)
        for path in images {
            let image = try PNGReader.read(path: path, maxPixels: maxPixels)
            if image.channels == 1 && loaded.net.inputChannels == 3 {
                logger.info("gray image expanded to 3 channels", metadata: ["image": "\(path)"])
            }
            let start = Date()
            let t = try tile ?? mapper.defaultTile(mode: mode, image: Size2(image.height, image.width))
            logger.info("mapping", metadata: ["image": "\(path)", "size": "\(image.width)×\(image.height)",
                                              "mode": "\(mode.rawValue)", "tile": "\(t)"])
            let map = try mapper.map(image, mode: mode, tile: t) { done, total in
                progress.update(label: OutputOptions.stem(forInput: path), done: done, total: total,
                                pixels: image.width * image.height, since: start)
            }
            progress.finish()
            let written = try writeOutputs(map: map, image: image, options: output.options(forImage: path), logger: logger)
            logger.info("done", metadata: ["image": "\(path)",
                                           "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(start)))",
                                           "files": "\(written.count)"])
        }
    }
}

extension MapMode: ExpressibleByArgument {}
