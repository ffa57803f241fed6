import TesseraCore

/// Map tiles: the unit a streamed map is written in (one chunk of the store per
/// tile) and the unit a shared-storage task computes, whatever the mode. Each map
/// tile is computed from its own tasks only, so a worker can finish a tile alone.
extension TilePlan {
    /// The map tiles (map pixels, row-major) of an `image`-sized map with square tiles of
    /// `tile` pixels (rounded up to a multiple of `shiftUnit` for `shift`, whose tiles must
    /// start on multiples of S on both axes).
    package static func mapTiles(mode: MapMode, image: Size2, tile: Int, stride: Size2) -> [PixelRect] {
        precondition(image.h > 0 && image.w > 0 && tile > 0)
        let side = mode == .shift ? roundUp(tile, shiftUnit(stride)) : tile
        return rects(image, tile: Size2(square: side))
    }

    /// Most tasks a map is planned in: the plan holds every tile (32 bytes each) and each tile's
    /// tasks, so a tiny `--tile` over a 2^31-pixel-high image asked for terabytes (hostile-input audit:
    /// the run aborted allocating its tile list). An upload job's `shift` tile is S² tasks.
    package static let maxTiles = 1 << 22

    /// The tasks an upload or in-process map plans per map tile: the S² displaced passes of `shift`,
    /// one otherwise (a shared-storage task computes a whole tile whatever the mode).
    package static func tasksPerTile(mode: MapMode, stride: Size2) -> Int {
        mode == .shift ? stride.h * stride.w : 1
    }

    /// Why `tile` cannot map an `image`-sized map (too many tiles, or with `tasksPerTile` > 1 too many
    /// tasks), or nil.
    package static func tooManyTiles(image: Size2, tile: Int, tasksPerTile: Int = 1) -> String? {
        let t = max(1, tile), per = max(1, tasksPerTile)
        let (n, overflow) = ((image.h + t - 1) / t).multipliedReportingOverflow(by: (image.w + t - 1) / t)
        let (tasks, overflow2) = n.multipliedReportingOverflow(by: per)
        guard overflow || overflow2 || tasks > maxTiles else { return nil }
        let pixels = Double(image.h) * Double(image.w) * Double(per)
        let smallest = Int((pixels / Double(maxTiles)).squareRoot().rounded(.up))
        let count = overflow ? "too many" : "\(n)"
        if per == 1 {
            return "tiles of \(t) pixels cut the \(image.w)×\(image.h) map into \(count) tiles, more than "
                + "the \(maxTiles) Tessera plans: give a --tile of at least \(smallest)"
        }
        return "tiles of \(t) pixels cut the \(image.w)×\(image.h) map into \(count) tiles of \(per) tasks each "
            + "(shift's displaced passes), more than the \(maxTiles) tasks Tessera plans: give a --tile of at "
            + "least \(smallest)"
    }

    /// What a `shift` tile's side is a multiple of: both strides (6 for a 2×3 stride). Square tiles
    /// of a multiple of only one of them did not match the chunks of the square-tiled store (fuzz
    /// audit: a 2×3-stride net failed in `shift` with more than one tile).
    package static func shiftUnit(_ stride: Size2) -> Int { lcm(stride.h, stride.w) }

    /// The tasks that compute map tile `rect`: the tile itself (`naive`, `dense`),
    /// its S² displaced passes (`shift`), or the window of the `fast` grid whose
    /// points the tile's pixels are interpolated from (`fastWindow(for:…)`).
    package static func tasks(
        forTile rect: PixelRect, mode: MapMode, image: Size2, geometry g: TaskGeometry
    )
        -> [TileTask]
    {
        switch mode {
        case .naive, .dense:
            return [TileTask(mode: mode, rect: rect, image: image)]
        case .shift:
            var tasks: [TileTask] = []
            for dy in 0..<g.stride.h {
                for dx in 0..<g.stride.w {
                    let task = TileTask(mode: .shift, rect: rect, displacement: Size2(dy, dx), image: image)
                    let n = g.outputSize(task)
                    if n.h > 0 && n.w > 0 { tasks.append(task) }
                }
            }
            return tasks
        case .fast:
            return [TileTask(mode: .fast, rect: fastWindow(for: rect, image: image, stride: g.stride), image: image)]
        }
    }

    /// The grid points (grid coordinates) that `fast` interpolates map tile `rect`
    /// from: each pixel p lies between grid points ⌊p/S⌋ and ⌊p/S⌋+1 (clamped to the grid).
    package static func fastWindow(for rect: PixelRect, image: Size2, stride s: Size2) -> PixelRect {
        let grid = fastGrid(image: image, stride: s)
        let y0 = rect.y / s.h, x0 = rect.x / s.w
        let y1 = min((rect.y + rect.height - 1) / s.h + 1, grid.h - 1)
        let x1 = min((rect.x + rect.width - 1) / s.w + 1, grid.w - 1)
        return PixelRect(y: y0, x: x0, height: y1 - y0 + 1, width: x1 - x0 + 1)
    }
}

/// The tile and pyramid levels of a chunked map (docs/ARCHITECTURE.md §10).
package enum MapPyramid {
    /// Levels until the smallest is about 256 pixels on its longer side (at most 8),
    /// with the tile divisible by 2^(levels−1) and by the stride (so `shift` tiles are
    /// chunks). A `fixedTile` (given by the user) is kept and the levels fit it.
    package static func fit(tile: Int, image: Size2, stride: Size2, fixedTile: Bool) -> (tile: Int, levels: Int) {
        var levels = 1
        while levels < 8 && (max(image.h, image.w) >> (levels - 1)) > 256 { levels += 1 }
        let s = TilePlan.shiftUnit(stride)
        if fixedTile { return (tile, min(levels, 1 + tile.trailingZeroBitCount)) }
        while levels > 1 {
            let step = lcm(1 << (levels - 1), s)
            if tile >= step { return (tile / step * step, levels) }
            levels -= 1
        }
        return (multiple(tile, of: s), 1)
    }

    /// A note when a user's `tile` gives fewer pyramid levels than the image wants
    /// (levels need the tile divisible by 2^(levels−1)), naming a tile that gives them.
    package static func levelNote(tile: Int, image: Size2, stride: Size2) -> String? {
        let wanted = fit(tile: 1 << 12, image: image, stride: stride, fixedTile: false).levels
        let got = fit(tile: tile, image: image, stride: stride, fixedTile: true).levels
        guard got < wanted else { return nil }
        let step = lcm(1 << (wanted - 1), TilePlan.shiftUnit(stride))
        let better = max(step, (tile + step / 2) / step * step)
        return
            "--tile \(tile) allows \(got) pyramid level\(got == 1 ? "" : "s") of the \(wanted) this image would have "
            + "(the tile must divide by 2^(levels−1)): --tile \(better) gives them all"
    }

    static func lcm(_ a: Int, _ b: Int) -> Int { TilePlan.lcm(a, b) }
    /// `value` rounded down to a multiple of `m` (at least `m`).
    package static func multiple(_ value: Int, of m: Int) -> Int { max(m, value / m * m) }
}

/// Assembles one map tile from the results of `TilePlan.tasks(forTile:…)`.
package struct TileAssembler: Sendable {
    package let rect: PixelRect
    private var assembler: MapAssembler
    private let mode: MapMode

    /// `pads`: whether the net pads (`TaskGeometry.pads`), which decides the grid points `fast`
    /// interpolates from at the far edges.
    package init(tile rect: PixelRect, mode: MapMode, image: Size2, classes: Int, stride: Size2, pads: Bool) {
        self.rect = rect
        self.mode = mode
        if mode == .fast {
            assembler = MapAssembler(
                fastWindow: TilePlan.fastWindow(for: rect, image: image, stride: stride), image: image,
                classes: classes, stride: stride, pads: pads)
        } else {
            assembler = MapAssembler(
                mode: mode, image: Size2(rect.height, rect.width), classes: classes, stride: stride, pads: pads)
        }
    }

    /// Places one of the tile's task results (`classes × rows × cols`, C order).
    package mutating func add(_ task: TileTask, result: UnsafeBufferPointer<Float>, classes: Int, rows: Int, cols: Int)
    {
        var placed = task
        if mode != .fast {
            // Shift and dense tasks are placed in the tile's own frame.
            placed.rect = PixelRect(
                y: task.rect.y - rect.y, x: task.rect.x - rect.x, height: task.rect.height, width: task.rect.width)
        }
        assembler.add(placed, result: result, classes: classes, rows: rows, cols: cols)
    }

    /// The tile's values (`classes × rect.height × rect.width`).
    package func finish() -> ProbabilityMap {
        mode == .fast ? assembler.interpolated(rect) : assembler.finish()
    }
}
