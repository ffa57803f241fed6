import TesseraCluster
import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TesseraPlan
@testable import TesseraWire
@testable import TestSupport

/// Operator audit: an upload job's --tile too large for a task message was refused only once the whole
/// image had been uploaded. `submit` now checks the first tile's tasks before it sends a pixel.
@Suite("Upload task limits")
struct UploadTaskLimitsTests {
    @Test("a tile whose input region passes the per-task limit is refused naming both, a smaller one passes")
    func inputRegion() throws {
        let plan = try ModelPlan(classifier: TestNets.seedLike)
        let g = plan.tasks
        let image = Size2(20_000, 20_000)
        let why = UploadTaskLimits.problem(
            mode: .dense, image: image, tile: 8192, geometry: g, classes: plan.classes, maxResultBytes: nil)
        #expect(why?.contains("--tile 8192 is too large for an upload job") == true, "\(why ?? "nil")")
        #expect(why?.contains("\(WireLimits.default.maxPixelsPerTask) pixels a task may send") == true)
        #expect(
            UploadTaskLimits.problem(
                mode: .dense, image: image, tile: 4096, geometry: g, classes: plan.classes, maxResultBytes: nil)
                == nil)
        // The first tile is the largest: an image smaller than the tile is one small task.
        #expect(
            UploadTaskLimits.problem(
                mode: .dense, image: Size2(500, 500), tile: 8192, geometry: g, classes: plan.classes,
                maxResultBytes: nil) == nil)
    }

    @Test(
        "a result past the worker-message limit is refused when the limit is known, in every mode",
        arguments: MapMode.allCases)
    func resultBytes(_ mode: MapMode) throws {
        let plan = try ModelPlan(classifier: TestNets.seedLike)
        let image = Size2(3000, 3000)
        let tile = 1024
        let tasks = TilePlan.tasks(
            forTile: PixelRect(y: 0, x: 0, height: tile, width: tile), mode: mode, image: image, geometry: plan.tasks)
        let largest = tasks.map { plan.tasks.outputSize($0) }.map { $0.h * $0.w }.max()!
        let bytes = largest * plan.classes * 4 + 256
        let problem = { (limit: Int?) in
            UploadTaskLimits.problem(
                mode: mode, image: image, tile: tile, geometry: plan.tasks, classes: plan.classes,
                maxResultBytes: limit)
        }
        #expect(problem(bytes) == nil)
        #expect(problem(nil) == nil)
        #expect(problem(bytes - 1)?.contains("exceeds the worker endpoint's limit") == true, "\(mode)")
    }
}
