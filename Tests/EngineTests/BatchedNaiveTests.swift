import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// `naive` classifies batches of patches (`BatchedClassifier`): it must still be the
/// classifier, and a patch's values must not depend on where in a batch it sits.
@Suite("naive in batches")
struct BatchedNaiveTests {
    /// Nets that pad (the seed's nuclei net where the seed models are present) and
    /// exact ones, each with the engine built for it.
    static func engines() throws -> [(String, MapEngine)] {
        var out = [
            ("cifar-quick", try MapEngine(classifier: TestNets.cifarQuick, allowPadding: true)),
            ("padded test net", try MapEngine(classifier: TestNets.padded, allowPadding: true)),
            ("seed-like", try MapEngine(classifier: TestNets.seedLike)),
            ("strided", try MapEngine(classifier: TestNets.stridedConvs)),
        ]
        if Seed.available {
            let m = try ModelLoader.load(ModelSource(weights: Seed.path("nuclei-cifar10quick/nuclei_w32.caffemodel")))
            out.append(("nuclei-cifar10quick", try MapEngine(model: m, allowPadding: true)))
        }
        return out
    }

    /// A naive task's input: random values in the range preprocessing gives.
    static func input(_ engine: MapEngine, _ task: TileTask, seed: UInt64) -> Tensor {
        let r = engine.tasks.inputRect(task)
        let shape = Shape(c: engine.fcn.inputChannels, h: r.height, w: r.width)
        return Tensor(shape, values: Reference.randomValues(shape.count, seed: seed, scale: 2))
    }

    static func maxDiff(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.values, b.values).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// Without a direct kernel (a CPU without AVX2/FMA, or `TESSERA_DIRECT_CONV=0`) there is
    /// no batched classifier: naive runs per patch and the tests of batches have nothing to test.
    static let skipReason: Comment = "no direct convolution kernel in this process: naive runs one patch at a time"

    @Test(
        "Chains of layers get the batched classifier; branching nets keep the per-patch one",
        .enabled(if: ConvolutionKernel.directAvailable, skipReason))
    func batchedWhereItCan() throws {
        for (name, engine) in try Self.engines() {
            let b = try #require(engine.batchedClassifier, "\(name) should run naive in batches")
            #expect(!b.convolutions.isEmpty && b.segments.count == b.convolutions.count + 1)
        }
        // Every stride-1 convolution of the CIFAR-10-quick layout runs on strips, ReLU fused.
        let quick = try #require(try MapEngine(classifier: TestNets.cifarQuick, allowPadding: true).batchedClassifier)
        #expect(quick.convolutions.count == 3 && quick.convolutions.allSatisfy { $0.pad == Size2(square: 2) })
        #expect(quick.convolutions.map { $0.kernel.fusedReLUSlope } == [nil, 0, 0])
        #expect(try MapEngine(classifier: TestNets.oddBranchy).batchedClassifier == nil)
    }

    @Test("Batched naive equals the single-patch classifier (<= 1e-5), nets that pad included")
    func equalsSinglePatch() throws {
        for (name, engine) in try Self.engines() {
            let side = name.hasPrefix("nuclei") ? 9 : 13
            let task = TileTask(mode: .naive, rect: PixelRect(y: 3, x: 5, height: side, width: side + 2))
            let input = Self.input(engine, task, seed: 21)
            let batched = try engine.run(task, input: input, threads: 2)
            let single = Tensor(batched.shape)
            engine.naivePerPatch(input: input, into: single, threads: 2)
            let d = Self.maxDiff(batched, single)
            #expect(d <= 1e-5, "\(name): batched vs single-patch differ by \(d)")
            // Not trivially equal: the probabilities vary from pixel to pixel.
            #expect(Set(single.values).count > side * side / 2, "\(name): a constant map proves nothing")
        }
    }

    @Test(
        "A patch's values do not depend on its batch, its position in it or the batch size: bit for bit",
        .enabled(if: ConvolutionKernel.directAvailable, skipReason))
    func batchPositionIndependent() throws {
        for (name, engine) in try Self.engines() {
            let (h, w) = (5, 11)
            let task = TileTask(mode: .naive, rect: PixelRect(y: 0, x: 0, height: h, width: w))
            let input = Self.input(engine, task, seed: 5)
            var maps: [(String, Tensor)] = []
            for batch in [1, 4, 8, 16, 55] {
                let classifier = try #require(
                    try BatchedClassifier(net: engine.plan.classifier, patch: engine.tasks.patch, batch: batch))
                // Two ways to cut the pixels into batches: from 0, and from an odd offset
                // (so each pixel lands in another position); one workspace reused throughout.
                for start in batch == 1 ? [0] : [0, 3] {
                    let out = Tensor(Shape(c: engine.classes, h: h, w: w))
                    let workspace = classifier.workspace()
                    var cuts = [0] + Array(stride(from: start == 0 ? batch : start, to: h * w, by: batch))
                    cuts.append(h * w)
                    for (lo, hi) in zip(cuts, cuts.dropFirst()) {
                        classifier.classify(input, pixels: lo..<hi, width: w, into: out, workspace: workspace)
                    }
                    maps.append(("batch \(batch) from \(start)", out))
                }
            }
            for (label, map) in maps.dropFirst() {
                #expect(
                    map.values == maps[0].1.values,
                    "\(name) \(label) vs \(maps[0].0): max difference \(Self.maxDiff(map, maps[0].1))")
            }
        }
    }

    @Test("Tiled naive maps of a net that pads are bit-identical to untiled ones")
    func tilingIsExact() throws {
        let engine = try MapEngine(classifier: TestNets.cifarQuick, allowPadding: true)
        let mapper = LocalMapper(engine: engine, preprocessing: ModeAgreementTests.preprocessing, threads: 2)
        let image = ArrayImage.random(height: 23, width: 19, seed: 8)
        let whole = try mapper.map(image, mode: .naive, tile: 64)
        for tile in [5, 8, 13] {
            let tiled = try mapper.map(image, mode: .naive, tile: tile)
            #expect(tiled.data == whole.data, "tile \(tile): max difference \(PaddedNetTests.maxDiff(tiled, whole))")
        }
    }

    @Test("On exact nets batched naive equals dense (<= 1e-5)")
    func exactNetsMatchDense() throws {
        for net in [TestNets.seedLike, TestNets.stridedConvs] {
            let engine = try MapEngine(classifier: net)
            #expect(engine.batchedClassifier != nil || !ConvolutionKernel.directAvailable)
            let mapper = LocalMapper(engine: engine, preprocessing: ModeAgreementTests.preprocessing, threads: 2)
            let image = ArrayImage.random(height: 37, width: 29, seed: 12)
            let naive = try mapper.map(image, mode: .naive)
            let dense = try mapper.map(image, mode: .dense)
            let d = PaddedNetTests.maxDiff(naive, dense)
            #expect(d <= 1e-5, "\(net.name): naive vs dense differ by \(d)")
        }
    }
}
