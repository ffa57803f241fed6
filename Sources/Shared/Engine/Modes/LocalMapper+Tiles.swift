import Dispatch
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
    /// Seconds spent reading and decoding input regions, and computing on the engine.
    package var readSeconds = 0.0
    package var computeSeconds = 0.0
    package init() {}
}

extension LocalMapper {
    /// Computes the map of `image` tile by tile, in row-major tile order, and hands
    /// each finished tile to `emit`: nothing that grows with the image is held,
    /// except for `fast`, whose grid (1/S² of the map) is interpolated once complete.
    /// Tiles for which `skip(rect)` holds are neither computed nor emitted.
    /// `progress(done, total)` counts the tasks that are computed (skipped ones are not in `total`).
    @discardableResult
    package func mapTiles(
        _ image: any RegionSource, mode: MapMode, tile t: Int, skip: ((PixelRect) -> Bool)? = nil,
        progress: ((Int, Int) -> Void)? = nil, emit: (MapTile) throws -> Void
    ) throws -> TileCounts {
        guard t > 0 else { throw EngineError(.invalidTask, "the tile size must be positive, got \(t)") }
        let size = Size2(image.height, image.width)
        let mapping = try ChannelMapping.resolve(
            imageChannels: image.channels, netChannels: engine.fcn.inputChannels, order: preprocessing.channelOrder)
        let tasks = TilePlan.tasks(mode: mode, image: size, tile: t, geometry: engine.tasks)
        let s = engine.tasks.stride
        /// The map pixels a task's outputs cover (grid cells × S for `fast`).
        func covered(_ task: TileTask) -> PixelRect {
            guard mode == .fast else { return task.rect }
            let r = task.rect
            return PixelRect(
                y: r.y * s.h, x: r.x * s.w, height: min(r.height * s.h, size.h - r.y * s.h),
                width: min(r.width * s.w, size.w - r.x * s.w))
        }
        let skipped = tasks.map { skip?(covered($0)) == true }
        let total = skipped.lazy.filter { !$0 }.count
        var done = 0
        var counts = TileCounts()
        func compute(_ task: TileTask) throws -> Tensor {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let region = try PixelRegion(
                source: image, paddedRect: engine.tasks.inputRect(task),
                halfPatch: engine.tasks.halfPatch)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let out = try engine.run(
                task, input: region.tensor(mapping: mapping, preprocessing: preprocessing),
                threads: threads)
            counts.readSeconds += Double(t1 - t0) / 1e9
            counts.computeSeconds += Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
            done += 1
            progress?(done, total)
            return out
        }
        switch mode {
        case .naive, .dense:
            for (i, task) in tasks.enumerated() {
                if skipped[i] {
                    counts.skipped += 1
                    continue
                }
                let r = try compute(task)
                try emit(
                    MapTile(
                        rect: task.rect,
                        values: ProbabilityMap(
                            classes: r.c, height: r.h, width: r.w,
                            data: r.values)))
                counts.computed += 1
            }
        case .shift:
            // TilePlan lists each tile's S² displacements one after another.
            var i = 0
            while i < tasks.count {
                let rect = tasks[i].rect
                var j = i
                while j < tasks.count && tasks[j].rect == rect { j += 1 }
                defer { i = j }
                if skipped[i] {
                    counts.skipped += 1
                    continue
                }
                var assembler = MapAssembler(
                    mode: .shift, image: Size2(rect.height, rect.width),
                    classes: engine.classes, stride: s)
                for k in i..<j {
                    var placed = tasks[k]
                    placed.rect = PixelRect(y: 0, x: 0, height: rect.height, width: rect.width)
                    assembler.add(placed, result: try compute(tasks[k]))
                }
                try emit(MapTile(rect: rect, values: assembler.finish()))
                counts.computed += 1
            }
        case .fast:
            var assembler = MapAssembler(mode: .fast, image: size, classes: engine.classes, stride: s)
            for (i, task) in tasks.enumerated() where !skipped[i] {
                assembler.add(task, result: try compute(task))
            }
            for rect in TilePlan.rects(size, tile: Size2(t, t)) {
                if skip?(rect) == true {
                    counts.skipped += 1
                } else {
                    try emit(MapTile(rect: rect, values: assembler.interpolated(rect)))
                    counts.computed += 1
                }
            }
        }
        return counts
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
