import Foundation
import TesseraCore
import TesseraModel
import TesseraPlan

/// Computes a whole map in this process: plans tiles, cuts each tile's input
/// out of the image, runs it on the engine and assembles the result. The
/// distributed coordinator does the same with workers in between.
package struct LocalMapper: Sendable {
    package let engine: MapEngine
    package let preprocessing: Preprocessing
    /// Threads used inside each tile (bands of output rows, pixels, channels).
    package var threads: Int
    /// Memory budget for one tile's activations, in bytes (sets the default tile size).
    package var memoryBudget: Int

    package init(
        engine: MapEngine, preprocessing: Preprocessing,
        threads: Int = ProcessInfo.processInfo.activeProcessorCount,
        memoryBudget: Int = 768 << 20
    ) {
        self.engine = engine
        self.preprocessing = preprocessing
        self.threads = threads
        self.memoryBudget = memoryBudget
    }

    /// The map of `image` in `mode`, in tiles of `tile` map pixels (default: the
    /// largest that fits `memoryBudget`). `progress(done, total)` after each tile.
    package func map(
        _ image: any RegionSource, mode: MapMode, tile: Int? = nil,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> ProbabilityMap {
        let size = Size2(image.height, image.width)
        let t = try tile ?? defaultTile(mode: mode, image: size)
        guard t > 0 else { throw EngineError(.invalidTask, "the tile size must be positive, got \(t)") }
        var map = ProbabilityMap(classes: engine.classes, height: size.h, width: size.w)
        try mapTiles(image, mode: mode, tile: t, progress: progress) { map.place($0) }
        return map
    }

    /// The largest square tile (in map pixels, a multiple of the stride) whose
    /// activations fit the memory budget, capped at the image size.
    package func defaultTile(mode: MapMode, image: Size2) throws -> Int {
        try engine.plan.defaultTile(mode: mode, image: image, memoryBudget: memoryBudget)
    }
}
