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
        #expect(zarrOnly.exact == 0 && zarrOnly.atMost == values * 4 / 3)
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
