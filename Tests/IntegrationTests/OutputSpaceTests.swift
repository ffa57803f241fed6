import Foundation
import Testing

@testable import Coordinator
@testable import TesseraImage

/// What `run` reckons a map's outputs need on disk, and what it does with too little.
@Suite("Output space")
struct OutputSpaceTests {
    @Test("The .npy is the exact need; PNGs, the pyramid and the map store count towards the most")
    func arithmetic() throws {
        let options = OutputOptions(directory: "maps", stem: "slide", kinds: [.npy, .zarr, .prob, .labels, .overlay])
        let need = OutputSpace(height: 1000, width: 500, classes: 2, dtype: .float16, options: options)
        let values: UInt64 = 1000 * 500 * 2
        #expect(need.exact == 128 + 4 * values)
        // The float16 pyramid (4/3 of level 0), one prob PNG (class 1 of 2), labels, a 3-channel overlay.
        #expect(need.atMost == need.exact + values * 2 * 4 / 3 + 500_000 + 500_000 + 1_500_000)
        let zarrOnly = OutputSpace(
            height: 1000, width: 500, classes: 2, dtype: .uint8,
            options: OutputOptions(directory: "maps", stem: "slide", kinds: [.zarr]))
        #expect(zarrOnly.exact == 0 && zarrOnly.atMost == values * 4 / 3 && zarrOnly.temporary == 0)
        // Without zarr the map passes through a temporary float32 store in --out (user audit: a .npy that
        // fitted alone failed after the whole map was computed).
        let npyOnly = OutputSpace(
            height: 1000, width: 500, classes: 2, dtype: .uint8,
            options: OutputOptions(directory: "maps", stem: "slide", kinds: [.npy]))
        #expect(npyOnly.exact == 128 + 4 * values && npyOnly.temporary == 4 * values)
        #expect(throws: OutputSpaceError.self) { try npyOnly.check(free: 6 * values, image: "a", out: "maps") }
        // A TIFF without zarr: the temporary store holds the float32 pyramid; the TIFF, the --dtype one.
        let tiffOnly = OutputSpace(
            height: 1000, width: 500, classes: 2, dtype: .uint8,
            options: OutputOptions(directory: "maps", stem: "slide", kinds: [.tiff]))
        #expect(tiffOnly.temporary == 4 * values * 4 / 3 && tiffOnly.atMost == values * 4 / 3)
        // Images one after another: outputs add up, one temporary store at a time.
        let two = npyOnly + zarrOnly
        #expect(two.exact == npyOnly.exact && two.atMost == npyOnly.atMost + zarrOnly.atMost)
        #expect(two.temporary == npyOnly.temporary)
    }

    @Test("Sizes that round to the same words are given in bytes")
    func closeSizes() {
        #expect(OutputSpace.texts(8_388_736, 8_388_608) == ("8388736 bytes", "8388608 bytes"))
        #expect(OutputSpace.texts(20 << 20, 8 << 20) == ("20 MiB", "8 MiB"))
        // Under a MiB in KiB (user audit: a disk with 200 KiB free read "0 MiB free").
        #expect(OutputSpace.texts(4 << 20, 200 << 10) == ("4 MiB", "200 KiB"))
        // A slide error names its level once.
        let e = SlideError(.noSuchLevel(1), path: "s.tif", image: 3, level: 1, detail: "the file has 1 level(s)")
        #expect(e.description == "s.tif: no level 1, image 3: the file has 1 level(s)", "\(e)")
    }

    @Test("Too little for the .npy is an error naming both sizes; too little uncompressed is a warning")
    func verdicts() throws {
        let need = OutputSpace(
            height: 4096, width: 4096, classes: 2, dtype: .float32,
            options: OutputOptions(directory: "maps", stem: "slide", kinds: [.npy, .zarr]))
        let error = #expect(throws: OutputSpaceError.self) {
            _ = try need.check(free: 100 << 20, image: "slide.svs", out: "maps")
        }
        #expect(error?.description.contains("needs 128 MiB") == true && error?.description.contains("100 MiB") == true)
        let warning = try need.check(free: 200 << 20, image: "slide.svs", out: "maps")
        #expect(warning?.contains("up to") == true && warning?.contains("200 MiB free") == true, "\(warning ?? "")")
        #expect(try need.check(free: 1 << 30, image: "slide.svs", out: "maps") == nil)
    }
}
