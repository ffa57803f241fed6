import Dispatch
import Foundation
import TesseraCore
import TesseraModel
import TesseraPlan

/// One finished tile of a map: where it lies (map pixels) and its values
/// (`classes × rect.height × rect.width`).
package struct MapTile: Sendable {
    package let rect: PixelRect
    package let values: ProbabilityMap

    package init(rect: PixelRect, values: ProbabilityMap) {
        precondition(values.height == rect.height && values.width == rect.width, "tile values do not match its rect")
        self.rect = rect
        self.values = values
    }
}

/// How many output tiles a streamed map computed, how many it skipped (no tissue),
/// and where the time went.
package struct TileCounts: Sendable, Equatable {
    package var computed = 0
    package var skipped = 0
    /// Tiles given up because `mapTiles`'s `giveUp` accepted their error (damaged input).
    package var givenUp = 0
    /// Seconds spent reading and decoding input regions, and computing on the engine.
    package var readSeconds = 0.0
    package var computeSeconds = 0.0
    package init() {}
}

extension LocalMapper {
    /// Computes the map of `image` tile by tile, in row-major tile order
    /// (`TilePlan.mapTiles`), and hands each finished tile to `emit`: nothing that
    /// grows with the image is held. Tiles for which `skip(rect)` holds are neither
    /// computed nor emitted. `progress(done, total)` counts the tasks that are
    /// computed (skipped ones are not in `total`). A tile whose computation throws an
    /// error that `giveUp(rect, error)` accepts is left out like a skipped one (counted
    /// in `givenUp`, and taken out of `progress`'s total); any other error ends the map.
    /// Before either, `retryAfter(error, failures)` may ask for the tile to be computed
    /// again after that many seconds (a read that failed on storage that may recover).
    @discardableResult
    package func mapTiles(
        _ image: any RegionSource, mode: MapMode, tile t: Int, skip: ((PixelRect) -> Bool)? = nil,
        giveUp: ((PixelRect, any Error) -> Bool)? = nil,
        retryAfter: ((any Error, Int) -> Double?)? = nil,
        progress: ((Int, Int) -> Void)? = nil, emit: (MapTile) throws -> Void
    ) throws -> TileCounts {
        guard t > 0 else { throw EngineError(.invalidTask, "the tile size must be positive, got \(t)") }
        let size = Size2(image.height, image.width)
        let tiles = TilePlan.mapTiles(mode: mode, image: size, tile: t, stride: engine.tasks.stride)
        let skipped = tiles.map { skip?($0) == true }
        var total = zip(tiles, skipped).reduce(0) { sum, pair in
            sum + (pair.1 ? 0 : TilePlan.tasks(forTile: pair.0, mode: mode, image: size, geometry: engine.tasks).count)
        }
        var done = 0
        var counts = TileCounts()
        for (i, rect) in tiles.enumerated() {
            if skipped[i] {
                counts.skipped += 1
                continue
            }
            let before = done
            let values: ProbabilityMap
            do {
                var failures = 0
                while true {
                    do {
                        values = try computeTile(rect, of: image, mode: mode, counts: &counts) {
                            done += 1
                            progress?(done, total)
                        }
                        break
                    } catch {
                        failures += 1
                        guard let wait = retryAfter?(error, failures) else { throw error }
                        done = before
                        progress?(done, total)
                        usleep(UInt32(min(60, max(0, wait)) * 1e6))
                    }
                }
            } catch  where giveUp?(rect, error) == true {
                // Not computed: out of the progress's total, like a skipped tile.
                counts.givenUp += 1
                total -= TilePlan.tasks(forTile: rect, mode: mode, image: size, geometry: engine.tasks).count
                done = before
                progress?(done, total)
                continue
            }
            try emit(MapTile(rect: rect, values: values))
            counts.computed += 1
        }
        return counts
    }

    /// The values of one map tile (`rect`, one of `TilePlan.mapTiles`) in any mode,
    /// computed from the tile's own tasks (`TilePlan.tasks(forTile:…)`) and regions
    /// read from `image` when each task runs: what a shared-storage worker computes
    /// for one task, and bit-identical to the same tile of a whole-image map.
    package func computeTile(
        _ rect: PixelRect, of image: any RegionSource, mode: MapMode, counts: inout TileCounts,
        prefetched: PrefetchedRegion? = nil, taskDone: () -> Void = {}
    ) throws -> ProbabilityMap {
        let size = Size2(image.height, image.width)
        let mapping = try ChannelMapping.resolve(
            imageChannels: image.channels, netChannels: engine.fcn.inputChannels, order: preprocessing.channelOrder)
        var assembler = TileAssembler(
            tile: rect, mode: mode, image: size, classes: engine.classes, stride: engine.tasks.stride,
            pads: engine.tasks.pads)
        for task in TilePlan.tasks(forTile: rect, mode: mode, image: size, geometry: engine.tasks) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let padded = engine.tasks.inputRect(task)
            let region =
                try prefetched.flatMap { $0.rect == padded ? $0.region : nil }
                ?? PixelRegion(source: image, paddedRect: padded, halfPatch: engine.tasks.halfPatch)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let out = try engine.run(
                task, input: region.tensor(mapping: mapping, preprocessing: preprocessing, threads: threads),
                threads: threads)
            counts.readSeconds += Double(t1 - t0) / 1e9
            counts.computeSeconds += Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
            assembler.add(task, result: UnsafeBufferPointer(out.storage), classes: out.c, rows: out.h, cols: out.w)
            taskDone()
        }
        return assembler.finish()
    }
}

/// A task's input region read ahead of time (a worker reads the next tile's while
/// the current one computes): used by `computeTile` for the task whose padded
/// rectangle it is, read again otherwise.
package struct PrefetchedRegion: Sendable {
    package let rect: PixelRect
    package let region: PixelRegion
    package init(rect: PixelRect, region: PixelRegion) {
        self.rect = rect
        self.region = region
    }
}

extension ProbabilityMap {
    /// Copies `tile` into this map at its rectangle.
    package mutating func place(_ tile: MapTile) {
        let (h, w) = (height, width), r = tile.rect
        precondition(
            tile.values.classes == classes && r.y >= 0 && r.x >= 0 && r.y + r.height <= h && r.x + r.width <= w,
            "tile \(r) does not fit a \(classes)×\(h)×\(w) map")
        data.withUnsafeMutableBufferPointer { dst in
            tile.values.data.withUnsafeBufferPointer { src in
                for c in 0..<classes {
                    for y in 0..<r.height {
                        let from = (c * r.height + y) * r.width, to = (c * h + r.y + y) * w + r.x
                        (dst.baseAddress! + to).update(from: src.baseAddress! + from, count: r.width)
                    }
                }
            }
        }
    }
}
