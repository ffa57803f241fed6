import ArgumentParser
import CoordinatorService
import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraPlan
import TesseraWire

/// What `run` and `submit` share to describe one image's job.
struct JobFlags: ParsableArguments {
    @Option(help: "naive, fast, shift or dense.") var mode: MapMode = .dense
    // `.unconditional`: `--tile -5` is a bad value, not a missing one (docs/CLI audit 36 F8).
    @Option(parsing: .unconditional, help: "Tile size in map pixels (default: the largest that fits --memory-budget).")
    var tile: Int?
    @Option(
        help: ArgumentHelp(
            "Memory budget for one tile's activations, in MiB (default: 768 for PNG images, "
                + "256 for slides, whose smaller tiles also skip background more closely).",
            valueName: "MiB"))
    var memoryBudget: Int?

    /// The budget in bytes for an image (slides get smaller tiles by default).
    func memoryBudgetBytes(slide: Bool = false) -> Int { (memoryBudget ?? (slide ? 256 : 768)) << 20 }
    @Flag(
        help: ArgumentHelp(
            "Accept a net that cannot be exact (padding, partial pooling windows) in dense, shift and fast.",
            discussion: "The map is then the net's pass over the whole mirror-padded image, padded "
                + "at its edges only: an approximation of the classifier, but the same in dense, "
                + "shift and fast, tiled or not. naive needs no flag: it is the classifier itself."))
    var allowPadding = false
    @Option(help: .hidden) var randomWeights: UInt64?

    /// A note when `--tile` cuts `image` into so many tiny tiles that overhead dominates (user audit: `--tile 1`
    /// made 1.17 million tasks at "0.00 Mpx/s", without a word).
    /// What an `image`-sized map with `plan` should be warned of before it starts: a tiny --tile, an image
    /// smaller than the patch.
    func sizeNotes(image: Size2, plan: ModelPlan) -> [String] {
        [smallTileNote(image: image), plan.smallImageNote(image: image)].compactMap { $0 }
    }

    func smallTileNote(image: Size2) -> String? {
        guard let tile, tile < 64 else { return nil }
        let tasks = ((image.h + tile - 1) / tile) * ((image.w + tile - 1) / tile)
        guard tasks > 10_000 else { return nil }
        return "--tile \(tile) cuts the \(image.w)×\(image.h) image into \(tasks) tiles: each is a task with its own "
            + "halo, messages and chunk files, so the run will spend its time on that overhead (without --tile, "
            + "the tile is the largest that fits --memory-budget, usually 256 to 1024)"
    }

    func validate() throws {
        if let tile, tile <= 0 || tile > 1 << 15 { throw ValidationError("--tile must be between 1 and 32768") }
        // At most 1 PiB: a larger value overflowed into a negative budget ("raise --memory-budget", audit 27).
        if let memoryBudget, memoryBudget < 16 || memoryBudget > 1 << 30 {
            throw ValidationError("--memory-budget must be between 16 and 1073741824 MiB")
        }
    }

    /// `naive` needs no `--allow-padding`: it runs the classifier itself on each pixel's patch,
    /// the one map every mode approximates, exact whether the net pads or not (user audits).
    func engineSettings(_ model: ModelOptions) -> EngineSettings {
        EngineSettings(
            patchSize: model.patchSize, allowPadding: allowPadding || mode == .naive, randomWeightsSeed: randomWeights)
    }

    func jobOptions(_ model: ModelOptions, _ output: OutputFlags, outputDirectory: String?) -> JobOptions {
        var o = JobOptions()
        o.outputs = output.outputs ?? "all"
        o.bitDepth = output.bitDepth
        o.classes = output.classes
        o.overlayClass = output.overlayClass
        o.engine = engineSettings(model)
        o.outputDirectory = outputDirectory
        // Retried submits (a coordinator restart, a lost reply) name the same job.
        o.token = UUID().uuidString
        return o
    }
}

/// The worker binary: `--worker-binary`, `$TESSERA_WORKER_BINARY`, or next to this executable.
func locateWorkerBinary(_ explicit: String?) -> String {
    if let explicit { return explicit }
    if let env = ProcessInfo.processInfo.environment["TESSERA_WORKER_BINARY"], !env.isEmpty { return env }
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return (parentPath(me) as NSString).appendingPathComponent("tessera-worker")
}
