import TesseraCore

/// Puts task results together into the full map: copies tiles (naive, dense),
/// interlaces displaced passes (shift), or fills the grid and interpolates (fast).
package struct MapAssembler: Sendable {
    package let mode: MapMode
    package let image: Size2
    package let stride: Size2
    /// The map, or for `fast` the grid of exact values (or the window of it that
    /// `origin` starts) until `finish()`.
    private var target: ProbabilityMap
    /// `fast` only: the grid point `target[_, 0, 0]` holds (zero unless a window).
    private let origin: Size2
    /// `fast` only: the whole image's grid.
    private let grid: Size2
    /// `fast` only: the grid points interpolation reads. The last grid row or column can lie past the
    /// image (`(H−1)` not a multiple of S); for a net that pads it is outside the whole-image pass
    /// that defines the map, computed from padding alone (−inf through a MaxPool's padding: fuzz
    /// audit, NaN in the last columns), so its neighbours take the last grid point inside the image.
    private let interpolatedGrid: Size2

    package init(mode: MapMode, image: Size2, classes: Int, stride: Size2, pads: Bool) {
        self.mode = mode
        self.image = image
        self.stride = stride
        grid = mode == .fast ? TilePlan.fastGrid(image: image, stride: stride) : image
        interpolatedGrid = Self.interpolatedGrid(grid, image: image, stride: stride, pads: pads)
        origin = .zero
        target = ProbabilityMap(classes: classes, height: grid.h, width: grid.w)
    }

    private static func interpolatedGrid(_ grid: Size2, image: Size2, stride: Size2, pads: Bool) -> Size2 {
        guard pads else { return grid }
        return Size2(min(grid.h, (image.h - 1) / stride.h + 1), min(grid.w, (image.w - 1) / stride.w + 1))
    }

    /// A `fast` assembler for the grid points of `window` only (grid coordinates,
    /// within the whole image's grid): enough to interpolate the map tiles whose
    /// grid points it holds (`TilePlan.tasks(forTile:…)`), with the same arithmetic
    /// as a whole-grid assembler, so the values are bit-identical.
    package init(fastWindow window: PixelRect, image: Size2, classes: Int, stride: Size2, pads: Bool) {
        mode = .fast
        self.image = image
        self.stride = stride
        grid = TilePlan.fastGrid(image: image, stride: stride)
        interpolatedGrid = Self.interpolatedGrid(grid, image: image, stride: stride, pads: pads)
        origin = Size2(window.y, window.x)
        target = ProbabilityMap(classes: classes, height: window.height, width: window.width)
    }

    /// Places one task's result: `classes × rows × cols` values (`outputSize(task)`), C order.
    package mutating func add(_ task: TileTask, result: UnsafeBufferPointer<Float>, classes: Int, rows: Int, cols: Int)
    {
        precondition(classes == target.classes, "result has \(classes) classes, map has \(target.classes)")
        precondition(result.count >= classes * rows * cols, "result holds fewer values than its shape")
        let (h, w) = (target.height, target.width)
        target.data.withUnsafeMutableBufferPointer { map in
            for c in 0..<classes {
                let src = result.baseAddress! + c * rows * cols
                let dst = map.baseAddress! + c * h * w
                if mode == .shift {
                    let (sy, sx) = (stride.h, stride.w)
                    let y0 = task.rect.y + task.displacement.h, x0 = task.rect.x + task.displacement.w
                    for i in 0..<rows {
                        let row = dst + (y0 + i * sy) * w + x0
                        for j in 0..<cols { row[j * sx] = src[i * cols + j] }
                    }
                } else {
                    let (y0, x0) = (task.rect.y - origin.h, task.rect.x - origin.w)
                    precondition(y0 >= 0 && x0 >= 0 && y0 + rows <= h && x0 + cols <= w, "task outside the window")
                    for i in 0..<rows {
                        (dst + (y0 + i) * w + x0).update(from: src + i * cols, count: cols)
                    }
                }
            }
        }
    }

    /// The same from an array (a result that came over the wire or from the store).
    package mutating func add(_ task: TileTask, result: [Float], classes: Int, rows: Int, cols: Int) {
        result.withUnsafeBufferPointer { add(task, result: $0, classes: classes, rows: rows, cols: cols) }
    }

    /// The finished map; for `fast`, the grid bilinearly interpolated to every
    /// pixel in grid coordinates (pixel y sits at grid position y / S), exact at grid points.
    package func finish() -> ProbabilityMap {
        guard mode == .fast else { return target }
        return interpolated(PixelRect(y: 0, x: 0, height: image.h, width: image.w))
    }

    /// For `fast`, once every grid task is in: the interpolated values of `rect`
    /// (map pixels) only, with the same arithmetic as `finish()`, so a large map can
    /// be written tile by tile.
    package func interpolated(_ rect: PixelRect) -> ProbabilityMap {
        precondition(mode == .fast, "only fast maps are interpolated")
        var map = ProbabilityMap(classes: target.classes, height: rect.height, width: rect.width)
        func axis(_ range: Range<Int>, _ s: Int, _ g: Int, _ o: Int, _ n: Int) -> [(Int, Int, Float)] {
            range.map { p in
                let i0 = p / s
                let t = Float(p % s) / Float(s)
                let i1 = min(i0 + 1, g - 1)
                precondition(i0 >= o && i1 - o < n, "the fast window does not hold the grid points of \(rect)")
                return (i0 - o, i1 - o, t)
            }
        }
        let ys = axis(rect.y..<(rect.y + rect.height), stride.h, interpolatedGrid.h, origin.h, target.height)
        let xs = axis(rect.x..<(rect.x + rect.width), stride.w, interpolatedGrid.w, origin.w, target.width)
        for c in 0..<target.classes {
            for (y, (i0, i1, ty)) in ys.enumerated() {
                for (x, (j0, j1, tx)) in xs.enumerated() {
                    let top = target[c, i0, j0] * (1 - tx) + target[c, i0, j1] * tx
                    let bottom = target[c, i1, j0] * (1 - tx) + target[c, i1, j1] * tx
                    map[c, y, x] = ty == 0 ? top : top * (1 - ty) + bottom * ty
                }
            }
        }
        return map
    }
}
