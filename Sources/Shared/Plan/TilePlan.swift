import TesseraCore

/// Splits one image's map into tasks (docs/ARCHITECTURE.md §4). Tiles are independent:
/// each reads only its own input region, so any split gives the same map.
package enum TilePlan {
    /// Size of the grid `fast` computes for an image: pixels `(iS, jS)`, `i = 0 … ⌈(H-1)/S⌉`.
    package static func fastGrid(image: Size2, stride: Size2) -> Size2 {
        Size2((image.h - 1 + stride.h - 1) / stride.h + 1, (image.w - 1 + stride.w - 1) / stride.w + 1)
    }

    /// The tasks for an `image`-sized map in `mode` with tiles of about `tile` map pixels.
    package static func tasks(mode: MapMode, image: Size2, tile: Int, geometry g: TaskGeometry) -> [TileTask] {
        precondition(image.h > 0 && image.w > 0 && tile > 0)
        switch mode {
        case .naive, .dense:
            return rects(Size2(image.h, image.w), tile: Size2(tile, tile)).map {
                TileTask(mode: mode, rect: $0, image: image)
            }
        case .fast:
            let grid = fastGrid(image: image, stride: g.stride)
            let cells = Size2(max(1, tile / g.stride.h), max(1, tile / g.stride.w))
            return rects(grid, tile: cells).map { TileTask(mode: .fast, rect: $0, image: image) }
        case .shift:
            // Tile origins on multiples of S, so every tile has the same S² phases.
            let t = Size2(square: roundUp(tile, shiftUnit(g.stride)))
            return rects(image, tile: t).flatMap { tasks(forTile: $0, mode: .shift, image: image, geometry: g) }
        }
    }

    package static func roundUp(_ v: Int, _ m: Int) -> Int { max(m, (v + m - 1) / m * m) }
    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
    static func lcm(_ a: Int, _ b: Int) -> Int { a / gcd(a, b) * b }

    /// Row-major tiles of at most `tile` covering `size`.
    package static func rects(_ size: Size2, tile: Size2) -> [PixelRect] {
        var out: [PixelRect] = []
        for y in stride(from: 0, to: size.h, by: tile.h) {
            for x in stride(from: 0, to: size.w, by: tile.w) {
                out.append(PixelRect(y: y, x: x, height: min(tile.h, size.h - y), width: min(tile.w, size.w - x)))
            }
        }
        return out
    }
}
