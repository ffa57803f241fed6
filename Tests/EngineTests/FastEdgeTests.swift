import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// `fast` at the far edges: when `(H−1)` is not a multiple of the stride, the last grid point lies
/// past the image. For a net that pads it is outside the whole-image pass and computed from padding
/// alone (fuzz audit: a MaxPool's −∞ padding, summed by a convolution, gave NaN in the last columns).
@Suite("fast past the last grid point inside the image")
struct FastEdgeTests {
    /// The audit's net: MaxPool 3×3 pad 1, a 5×5 convolution (class 0's weights positive, class 1's
    /// negative), MaxPool 3/3 (stride 3), global average, Softmax. Patch 9.
    static var net: Net {
        var w = Reference.randomValues(2 * 3 * 25, seed: 7, scale: 0.02).map { abs($0) }
        for i in 75..<150 { w[i] = -w[i] }
        return Net(
            name: "edge", inputName: "data", inputChannels: 3, patchSize: Size2(square: 9),
            layers: [
                TestNets.op(
                    "pool1", .pooling(Pooling(method: .max, kernel: Size2(square: 3), pad: .one)), ["data"], "pool1"),
                Layer(
                    name: "conv",
                    op: .convolution(Convolution(outputs: 2, kernel: Size2(square: 5), weights: w, bias: nil)),
                    bottoms: ["pool1"], tops: ["conv"]),
                TestNets.op(
                    "pool2", .pooling(Pooling(method: .max, kernel: Size2(square: 3), stride: Size2(square: 3))),
                    ["conv"],
                    "pool2"),
                TestNets.op("gap", .pooling(Pooling(method: .average, kernel: .one, global: true)), ["pool2"], "gap"),
                TestNets.op("prob", .softmax, ["gap"], "prob"),
            ])
    }

    @Test(
        "A net that pads: fast is finite everywhere, equals dense at the grid points, and holds its last value past them"
    )
    func paddedNet() throws {
        let engine = try MapEngine(classifier: Self.net, allowPadding: true)
        #expect(engine.tasks.pads && engine.tasks.stride == Size2(square: 3))
        let mapper = LocalMapper(engine: engine, preprocessing: ModeAgreementTests.preprocessing, threads: 2)
        for (h, w) in [(9, 11), (11, 9), (10, 10)] {
            let image = ArrayImage.random(height: h, width: w, seed: UInt64(h * 31 + w))
            let fast = try mapper.map(image, mode: .fast), dense = try mapper.map(image, mode: .dense)
            #expect(fast.data.allSatisfy { $0.isFinite }, "\(h)×\(w): fast has non-finite values")
            let lastY = (h - 1) / 3 * 3, lastX = (w - 1) / 3 * 3
            for c in 0..<2 {
                for y in stride(from: 0, to: h, by: 3) {
                    for x in stride(from: 0, to: w, by: 3) {
                        #expect(abs(fast[c, y, x] - dense[c, y, x]) <= 1e-5, "\(h)×\(w) grid point (\(y), \(x))")
                    }
                }
                // Past the last grid point inside the image: that point's value along the axis.
                for x in lastX..<w { #expect(abs(fast[c, 0, x] - fast[c, 0, lastX]) <= 1e-6, "\(h)×\(w) column \(x)") }
                for y in lastY..<h { #expect(abs(fast[c, y, 0] - fast[c, lastY, 0]) <= 1e-6, "\(h)×\(w) row \(y)") }
            }
            // Tiled the same, bit for bit.
            let tiled = try mapper.map(image, mode: .fast, tile: 4)
            #expect(tiled.data == fast.data, "\(h)×\(w): tiled fast differs")
            // A fast job of 0.3.0 (placement 2) is not resumed when its far edge changed.
            let changed = engine.tasks.placementChange(
                since: 2, exact: false, mode: .fast, image: Size2(h, w))
            let extent = engine.tasks.minimalInput.h < 9 || engine.tasks.minimalInput.w < 9
            #expect((changed != nil) == (extent || (h - 1) % 3 != 0 || (w - 1) % 3 != 0), "\(h)×\(w)")
            #expect(
                engine.tasks.placementChange(since: 2, exact: false, mode: .dense, image: Size2(h, w)) == nil || extent)
        }
    }

    @Test("An exact net still interpolates toward the grid point past the image (the classifier on mirrored pixels)")
    func exactNet() throws {
        let engine = try MapEngine(classifier: TestNets.stridedConvs, allowPadding: false)
        #expect(!engine.tasks.pads && engine.tasks.stride.h > 1)
        let s = engine.tasks.stride.h
        let mapper = LocalMapper(engine: engine, preprocessing: ModeAgreementTests.preprocessing, threads: 2)
        let h = 2 * s + 2, w = 2 * s + 2
        let image = ArrayImage.random(height: h, width: w, seed: 5)
        let fast = try mapper.map(image, mode: .fast)
        let last = 2 * s
        // Between grid points 2s and 3s (past the image): not the constant value of grid point 2s.
        #expect((0..<fast.classes).contains { fast[$0, 0, last + 1] != fast[$0, 0, last] })
    }
}
