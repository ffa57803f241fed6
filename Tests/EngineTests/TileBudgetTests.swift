import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// Found by a user audit: a small ONNX file whose single patch needs 7.9 GB of activations
/// ran `dense` with one-pixel tiles at ten times the 768 MiB budget, for minutes.
@Suite("The default tile respects the memory budget, or says it cannot")
struct TileBudgetTests {
    @Test(
        "A net whose smallest tile needs more than --memory-budget is refused, naming both sizes",
        arguments: MapMode.allCases)
    func smallestTileOverBudget(_ mode: MapMode) throws {
        let plan = try ModelPlan(classifier: TestNets.seedLike)
        let s = max(plan.tasks.stride.h, plan.tasks.stride.w)
        let smallest = try plan.activationBytes(mode: mode == .naive ? .fast : mode, tile: s)
        let image = Size2(200, 300)
        let fits = try plan.defaultTile(mode: mode, image: image, memoryBudget: smallest)
        #expect(fits >= s && fits % s == 0)
        do {
            _ = try plan.defaultTile(mode: mode, image: image, memoryBudget: smallest - 1)
            Issue.record("\(mode): a budget below the smallest tile was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("--memory-budget") && text.contains("smallest \(mode.rawValue) tile"), "\(text)")
        }
        // The budget still sets the tile: more memory, a larger tile (naive: its fixed 64).
        let large = try plan.defaultTile(mode: mode, image: image, memoryBudget: 64 << 20)
        #expect(mode == .naive ? large == 64 : large > fits, "\(mode): \(large) vs \(fits)")
    }
}
