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
}
