import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TestSupport

/// `FusedHead` (the dense net's trailing 1×1 layers and Softmax, band by band) against the
/// same layers run one after another.
@Suite("Fused 1×1 head")
struct FusedHeadTests {
    @Test(
        "The seed-like dense net's fc7 + ReLU + fc8 + Softmax fused equal the unfused layers bit for bit",
        .enabled(if: ConvolutionKernel.directAvailable, "this CPU has no direct kernel (no AVX2/FMA)"),
        arguments: [(37, 41), (5, 1100), (1, 3)])
    func fusedEqualsUnfused(_ size: (Int, Int)) throws {
        let fcn = try TestNets.seedLike.fullyConvolutional(patch: TestNets.seedLike.patchSize)
        let (dense, lrnDilation) = try fcn.densified()
        let fused = try NetRunner(net: dense, lrnDilation: lrnDilation, fuseHead: true)
        let plain = try NetRunner(net: dense, lrnDilation: lrnDilation, fuseHead: false)
        #expect(plain.heads.isEmpty)
        let head = try #require(fused.heads.values.first, "nothing fused in \(dense.layers.map(\.name))")
        #expect(head.softmax && dense.layers[head.end].name == "prob")
        // The seed-like net's receptive field is 32×32: an input 31 larger gives size.0 × size.1.
        let x = Reference.random(Shape(c: 3, h: size.0 + 31, w: size.1 + 31), seed: 31)
        for threads in [1, 2] {
            let a = try fused.forward(x, threads: threads)
            let b = try plain.forward(x, threads: threads)
            #expect(a.shape == b.shape)
            let differing = (0..<a.count).filter { a.storage[$0].bitPattern != b.storage[$0].bitPattern }
            #expect(differing.isEmpty, "\(threads) threads: \(differing.count) of \(a.count) values differ")
        }
    }
}
