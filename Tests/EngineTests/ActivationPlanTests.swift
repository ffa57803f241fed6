import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TestSupport

/// `ActivationPlan`: one arena per forward pass, activations alive at the same time never sharing memory.
@Suite("Activation arena plan")
struct ActivationPlanTests {
    @Test("Buffers whose lifetimes overlap get disjoint ranges; others share")
    func disjointWhenAlive() {
        typealias B = ActivationPlan.Buffer
        // A chain: each buffer written at step i and read by step i + 1; one larger at step 3.
        let buffers = [
            B(count: 100, first: 0, last: 1), B(count: 100, first: 1, last: 2), B(count: 90, first: 2, last: 3),
            B(count: 300, first: 3, last: 4), B(count: 5, first: 4, last: 9), B(count: 7, first: 0, last: 9),
        ]
        let (offsets, count) = ActivationPlan.offsets(buffers)
        for i in buffers.indices {
            #expect(offsets[i] % ActivationPlan.alignment == 0)
            for j in buffers.indices where j != i && buffers[i].overlaps(buffers[j]) {
                let (a, b) = (offsets[i]..<offsets[i] + buffers[i].count, offsets[j]..<offsets[j] + buffers[j].count)
                #expect(!a.overlaps(b), "buffers \(i) and \(j) are alive together and share memory")
            }
        }
        // The largest need at one step: 90 + 300 + 7 at step 3 (rounded to 16 floats each).
        #expect(count == 96 + 304 + 16)
    }

    @Test(
        "The seed-like dense pass's arena holds two consecutive activations, not all of them",
        .enabled(if: ConvolutionKernel.directAvailable, "this CPU has no direct kernel (no AVX2/FMA)"))
    func seedLikeDense() throws {
        let fcn = try TestNets.seedLike.fullyConvolutional(patch: TestNets.seedLike.patchSize)
        let (dense, lrnDilation) = try fcn.densified()
        let runner = try NetRunner(net: dense, lrnDilation: lrnDilation)
        let (_, shapes) = try dense.shapes(input: Size2(301, 297))
        let plan = runner.memoryPlan(shapes, masks: nil)
        // Every layer's output except the net's own (allocated apart, so the result does
        // not hold the arena) and the in-place/identity layers'.
        var pairs = 0
        for i in 1..<shapes.count { pairs = max(pairs, shapes[i - 1].count + shapes[i].count) }
        #expect(plan.count <= pairs + 2 * ActivationPlan.alignment)
        #expect(plan.count < shapes.reduce(0) { $0 + $1.count } / 2)
        let output = try #require(dense.layers.lastIndex { $0.tops.contains(dense.outputName) })
        #expect(plan.offsets[output] == nil)
    }
}
