import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TestSupport

/// Layers with several inputs (Eltwise, Concat) pair their inputs' pixels by index: the
/// geometry accepts inputs on one pixel grid whose windows share a centre, whatever their
/// sizes, and refuses the others (docs/ARCHITECTURE.md §2).
@Suite("Branches that meet: same stride and centre, windows of any size")
struct BranchAlignmentTests {
    /// Two 1-layer branches from the input, summed, then an InnerProduct head.
    static func net(_ a: Layer, _ b: Layer, patch: Int, channels: Int, spatial: Int) -> Net {
        Net(
            name: "branches", inputName: "data", inputChannels: 3, patchSize: Size2(square: patch),
            layers: [
                a, b,
                TestNets.op("sum", .eltwise(Eltwise(operation: .sum, coefficients: [])), ["a", "b"], "sum"),
                TestNets.ip("fc", "sum", "fc", inputs: channels * spatial * spatial, outputs: 2, seed: 3),
            ])
    }

    @Test("A ResNet identity shortcut and a strided projection: the output window is the larger branch's")
    func resnetBlocks() throws {
        let g = try TestNets.resnet.geometry().net
        // conv1 3 → block 7 (origin −3) → d1 3/2 pad 1 and d2 3 pad 1 at stride 2: 13 (origin −6),
        // the projection's 7 inside it → MAX 2/2: 15 → the 4×4 InnerProduct at stride 4: 27.
        #expect(g.receptiveField == Size2(square: 27) && g.origin == Size2(square: -6) && g.stride == Size2(square: 4))
        #expect(g.inexactReasons.count == 5, "\(g.inexactReasons)")
        // The order of the inputs does not matter.
        var swapped = TestNets.resnet
        for i in swapped.layers.indices where swapped.layers[i].bottoms.count == 2 {
            swapped.layers[i].bottoms.reverse()
        }
        #expect(try swapped.geometry().net == g)
    }

    @Test("Windows whose centres differ by half a pixel are refused, naming the layer and both centres")
    func centresDiffer() throws {
        // 2×2 stride 2 (centre 0.5) beside 1×1 stride 2 (centre 0): both 2×2 at patch size 4.
        let net = Self.net(
            TestNets.conv("a", "data", "a", cin: 3, cout: 2, k: 2, stride: 2, seed: 1),
            TestNets.conv("b", "data", "b", cin: 3, cout: 2, k: 1, stride: 2, seed: 2),
            patch: 4, channels: 2, spatial: 2)
        let error = #expect(throws: ModelError.self) { try net.geometry() }
        let text = error?.description ?? ""
        #expect(text.contains("sum") && text.contains("do not line up") && text.contains("at 0.5 and 0"), "\(text)")
    }

    @Test("Branches with different strides are refused, naming both strides")
    func stridesDiffer() throws {
        // 1×1 stride 2 (centre 0) beside 3×3 stride 1 (centre 1): both 2×2 at patch size 4.
        let net = Self.net(
            TestNets.conv("a", "data", "a", cin: 3, cout: 2, k: 1, stride: 2, seed: 1),
            TestNets.conv("b", "data", "b", cin: 3, cout: 2, k: 3, seed: 2),
            patch: 4, channels: 2, spatial: 2)
        let error = #expect(throws: ModelError.self) { try net.geometry() }
        let text = error?.description ?? ""
        #expect(text.contains("sum") && text.contains("total strides 2 and 1"), "\(text)")
    }
}
