import Testing

@testable import TesseraCore
@testable import TesseraPlan

/// How many pyramid levels a map gets: the tile must divide by 2^(levels−1).
@Suite("Map pyramid levels and tiles")
struct MapPyramidTests {
    @Test("A default tile is fitted to the pyramid; a user's tile keeps its size, and a note names a better one")
    func levels() {
        let slide = Size2(30000, 30000), one = Size2(1, 1)
        // What `submit --shared` used to send as it was: 724 = 4 × 181 gave 3 levels.
        #expect(MapPyramid.fit(tile: 724, image: slide, stride: one, fixedTile: true).levels == 3)
        let fitted = MapPyramid.fit(tile: 724, image: slide, stride: one, fixedTile: false)
        #expect(fitted.levels == 8 && fitted.tile % 128 == 0 && fitted.tile <= 724, "\(fitted)")
        let note = MapPyramid.levelNote(tile: 1001, image: slide, stride: one)
        #expect(note?.contains("--tile 1001 allows 1 pyramid level of the 8") == true, "\(note ?? "nil")")
        #expect(note?.contains("--tile 1024 gives them all") == true, "\(note ?? "nil")")
        #expect(MapPyramid.levelNote(tile: 1024, image: slide, stride: one) == nil)
        #expect(MapPyramid.levelNote(tile: 1001, image: Size2(200, 200), stride: one) == nil, "one level is all it has")
        // With a stride, the better tile is a multiple of it as well.
        let strided = MapPyramid.levelNote(tile: 1000, image: slide, stride: Size2(3, 3))
        #expect(strided?.contains("--tile 1152 gives them all") == true, "\(strided ?? "nil")")
    }

    @Test(
        "A 2×3-stride net's shift tiles are square and a multiple of both strides (fuzz audit: 4×3 tiles missed the store)"
    )
    func anisotropicShiftTiles() {
        let image = Size2(25, 31), stride = Size2(2, 3)
        #expect(TilePlan.shiftUnit(stride) == 6 && TilePlan.shiftUnit(Size2(4, 4)) == 4)
        for tile in [3, 4, 7, 12] {
            let tiles = TilePlan.mapTiles(mode: .shift, image: image, tile: tile, stride: stride)
            let side = TilePlan.roundUp(tile, 6)
            #expect(tiles.allSatisfy { $0.y % side == 0 && $0.x % side == 0 }, "tile \(tile)")
            #expect(
                tiles.allSatisfy { $0.height == min(side, image.h - $0.y) && $0.width == min(side, image.w - $0.x) })
            #expect(tiles.reduce(0) { $0 + $1.height * $1.width } == image.h * image.w)
        }
        let fitted = MapPyramid.fit(tile: 1000, image: Size2(3000, 3000), stride: stride, fixedTile: false)
        #expect(fitted.tile % 6 == 0 && fitted.tile % (1 << (fitted.levels - 1)) == 0, "\(fitted)")
    }
}

/// Hostile-input audit: a 2^31-pixel-high TIFF with `--tile 16` planned 6.9·10¹⁰ tiles and aborted.
@Suite("Tile counts")
struct TileCountTests {
    @Test("A tile giving more than maxTiles tiles is refused with the smallest tile that works")
    func tooManyTiles() {
        let huge = Size2(2_147_483_647, 8192)
        let why = TilePlan.tooManyTiles(image: huge, tile: 16)
        #expect(why?.contains("give a --tile of at least 2048") == true, "\(why ?? "nil")")
        #expect(TilePlan.tooManyTiles(image: huge, tile: 2048) == nil)
        #expect(TilePlan.tooManyTiles(image: Size2(150_000, 150_000), tile: 256) == nil)
        #expect(TilePlan.tooManyTiles(image: Size2(Int.max / 2, Int.max / 2), tile: 1)?.contains("too many") == true)
    }

    /// `shift` plans S² tasks a tile: a 16-stride net with 64-pixel tiles on a 60 000² slide is 225 million tasks.
    @Test("shift counts its S² tasks per tile against the bound")
    func shiftTasks() {
        let slide = Size2(60_000, 60_000)
        #expect(TilePlan.tasksPerTile(mode: .shift, stride: Size2(16, 16)) == 256)
        #expect(TilePlan.tasksPerTile(mode: .dense, stride: Size2(16, 16)) == 1)
        #expect(TilePlan.tooManyTiles(image: slide, tile: 64) == nil)
        let why = TilePlan.tooManyTiles(image: slide, tile: 64, tasksPerTile: 256)
        #expect(why?.contains("879844 tiles of 256 tasks each") == true, "\(why ?? "nil")")
        #expect(why?.contains("give a --tile of at least 469") == true, "\(why ?? "nil")")
        #expect(TilePlan.tooManyTiles(image: slide, tile: 469, tasksPerTile: 256) == nil)
        #expect(TilePlan.tooManyTiles(image: slide, tile: 468, tasksPerTile: 256) != nil)
    }
}
