import TesseraCore
import TesseraModel

/// Small patch classifiers with random weights, built by hand, covering the
/// stride patterns the modes must handle.
enum TestNets {
    static func conv(
        _ name: String, _ bottom: String, _ top: String, cin: Int, cout: Int, k: Int,
        stride: Int = 1, seed: UInt64
    ) -> Layer {
        let scale = 1 / Float(cin * k * k).squareRoot() * 1.5
        return Layer(
            name: name,
            op: .convolution(
                Convolution(
                    outputs: cout, kernel: Size2(square: k), stride: Size2(square: stride),
                    weights: Reference.randomValues(cout * cin * k * k, seed: seed, scale: scale),
                    bias: Reference.randomValues(cout, seed: seed + 1000, scale: 0.1))), bottoms: [bottom], tops: [top])
    }

    static func ip(_ name: String, _ bottom: String, _ top: String, inputs: Int, outputs: Int, seed: UInt64) -> Layer {
        Layer(
            name: name,
            op: .innerProduct(
                InnerProduct(
                    outputs: outputs,
                    weights: Reference.randomValues(
                        outputs * inputs, seed: seed,
                        scale: 1.5 / Float(inputs).squareRoot()),
                    bias: Reference.randomValues(outputs, seed: seed + 1000, scale: 0.1))), bottoms: [bottom],
            tops: [top])
    }

    static func op(_ name: String, _ op: LayerOp, _ bottoms: [String], _ top: String) -> Layer {
        Layer(name: name, op: op, bottoms: bottoms, tops: [top])
    }

    static func maxPool(_ k: Int, _ s: Int) -> LayerOp {
        .pooling(Pooling(method: .max, kernel: Size2(square: k), stride: Size2(square: s)))
    }

    /// The blog's network, narrowed: conv/ReLU/LRN/max-pool 4/2, conv/ReLU/LRN/max-pool 2/2,
    /// fc6 (6×6), fc7, fc8, Softmax. P = 32, S = 4.
    static var seedLike: Net {
        let lrn = LRN(region: .acrossChannels, size: 5, alpha: 1e-3, beta: 0.75, k: 1)
        return Net(
            name: "seed-like", inputName: "data", inputChannels: 3, patchSize: Size2(square: 32),
            layers: [
                conv("conv1", "data", "conv1", cin: 3, cout: 6, k: 3, seed: 10),
                op("relu1", .relu(negativeSlope: 0), ["conv1"], "conv1"),
                op("norm1", .lrn(lrn), ["conv1"], "norm1"),
                op("pool1", maxPool(4, 2), ["norm1"], "pool1"),
                conv("conv2", "pool1", "conv2", cin: 6, cout: 6, k: 3, seed: 11),
                op("relu2", .relu(negativeSlope: 0), ["conv2"], "conv2"),
                op("norm2", .lrn(lrn), ["conv2"], "norm2"),
                op("pool2", maxPool(2, 2), ["norm2"], "pool2"),
                ip("fc6", "pool2", "fc6", inputs: 6 * 36, outputs: 8, seed: 12),
                op("relu6", .relu(negativeSlope: 0), ["fc6"], "fc6"),
                op("drop6", .identity, ["fc6"], "fc6"),
                ip("fc7", "fc6", "fc7", inputs: 8, outputs: 8, seed: 13),
                op("relu7", .relu(negativeSlope: 0.1), ["fc7"], "fc7"),
                ip("fc8", "fc7", "fc8", inputs: 8, outputs: 2, seed: 14),
                op("prob", .softmax, ["fc8"], "prob"),
            ])
    }

    /// Stride from strided convolutions (like fcn-batchnorm): 2×2/2 three times, S = 8, P = 38 (even).
    static var stridedConvs: Net {
        let bn = BatchNorm(
            mean: [0.1, -0.2, 0.05, 0.3], variance: [1.2, 0.8, 0.5, 2], eps: 1e-5,
            scale: [1, 0.5, 1.5, 0.8], bias: [0, 0.1, -0.1, 0.2])
        return Net(
            name: "strided", inputName: "data", inputChannels: 3, patchSize: Size2(square: 38),
            layers: [
                conv("c1", "data", "c1", cin: 3, cout: 4, k: 3, seed: 20),
                op("bn1", .batchNorm(bn), ["c1"], "c1"),
                op("r1", .relu(negativeSlope: 0), ["c1"], "c1"),
                conv("d1", "c1", "d1", cin: 4, cout: 4, k: 2, stride: 2, seed: 21),
                conv("c2", "d1", "c2", cin: 4, cout: 4, k: 3, seed: 22),
                op("t2", .tanh, ["c2"], "c2"),
                conv("d2", "c2", "d2", cin: 4, cout: 5, k: 2, stride: 2, seed: 23),
                conv("c3", "d2", "c3", cin: 5, cout: 5, k: 3, seed: 24),
                op("s3", .scale(Scale(scale: [1, 2, 0.5, 1, 1.5], bias: [0, 0, 0.1, 0, -0.1])), ["c3"], "c3"),
                op("r3", .relu(negativeSlope: 0), ["c3"], "c3"),
                conv("d3", "c3", "d3", cin: 5, cout: 5, k: 2, stride: 2, seed: 25),
                conv("head", "d3", "head", cin: 5, cout: 3, k: 3, seed: 26),
                op("prob", .softmax, ["head"], "prob"),
            ])
    }

    /// Padding of every kind (so not exact: needs `allowPadding`): conv pad 2, MAX 3/2
    /// pad 1 with a partial last window, WITHIN_CHANNEL LRN, strided conv pad 1, AVE 3/2
    /// pad 1 (divisor counts the padding), then an InnerProduct. P = 20, S = 8.
    static var padded: Net {
        func padded(_ layer: Layer, _ pad: Int) -> Layer {
            var l = layer
            if case .convolution(var c) = l.op { c.pad = Size2(square: pad); l.op = .convolution(c) }
            return l
        }
        let lrn = LRN(region: .withinChannel, size: 3, alpha: 0.5, beta: 0.75, k: 1)
        return Net(
            name: "padded", inputName: "data", inputChannels: 3, patchSize: Size2(square: 20),
            layers: [
                padded(conv("conv1", "data", "conv1", cin: 3, cout: 4, k: 5, seed: 40), 2),
                op("relu1", .relu(negativeSlope: 0), ["conv1"], "conv1"),
                op(
                    "pool1",
                    .pooling(
                        Pooling(
                            method: .max, kernel: Size2(square: 3), stride: Size2(square: 2),
                            pad: .one)), ["conv1"], "pool1"),
                op("norm1", .lrn(lrn), ["pool1"], "norm1"),
                padded(conv("conv2", "norm1", "conv2", cin: 4, cout: 5, k: 3, stride: 2, seed: 41), 1),
                op(
                    "pool2",
                    .pooling(
                        Pooling(
                            method: .average, kernel: Size2(square: 3), stride: Size2(square: 2),
                            pad: .one)), ["conv2"], "pool2"),
                ip("fc", "pool2", "fc", inputs: 5 * 16, outputs: 3, seed: 42),
                op("prob", .softmax, ["fc"], "prob"),
            ])
    }

    /// Poolings whose windows, a stride past the whole ones, may start past their input (numerics audit 33:
    /// a 2×2/2 MAX then a padded 3×3, and a 3×3/2 AVE that pads): `dense` and `shift` took those empty windows
    /// for real values, NaN or saturated pixels when the image's size left them in the pass. P = 20, S = 4.
    static var paddedEvenPool: Net {
        var conv2 = conv("conv2", "pool1", "conv2", cin: 4, cout: 5, k: 3, seed: 51)
        if case .convolution(var c) = conv2.op { c.pad = .one; conv2.op = .convolution(c) }
        return Net(
            name: "padded-even-pool", inputName: "data", inputChannels: 3, patchSize: Size2(square: 20),
            layers: [
                conv("conv1", "data", "conv1", cin: 3, cout: 4, k: 3, seed: 50),
                op(
                    "pool1", .pooling(Pooling(method: .max, kernel: Size2(square: 2), stride: Size2(square: 2))),
                    ["conv1"], "pool1"),
                conv2,
                op(
                    "pool2",
                    .pooling(
                        Pooling(method: .average, kernel: Size2(square: 3), stride: Size2(square: 2), pad: .one)),
                    ["conv2"], "pool2"),
                ip("fc", "pool2", "fc", inputs: 5 * 25, outputs: 3, seed: 52),
                op("prob", .softmax, ["fc"], "prob"),
            ])
    }

    /// ResNet blocks (pad 1, so not exact: needs `allowPadding`): a basic block with the
    /// identity shortcut (windows 1×1 and 5×5 meet, one centre), then a downsampling block
    /// whose 1×1 stride-2 projection is the Eltwise's first input, then an InnerProduct.
    /// P = 16, S = 4.
    static var resnet: Net {
        func padded(_ layer: Layer) -> Layer {
            var l = layer
            if case .convolution(var c) = l.op { c.pad = c.kernel.h == 3 ? .one : .zero; l.op = .convolution(c) }
            return l
        }
        let sum = LayerOp.eltwise(Eltwise(operation: .sum, coefficients: []))
        let relu = LayerOp.relu(negativeSlope: 0)
        return Net(
            name: "resnet", inputName: "data", inputChannels: 3, patchSize: Size2(square: 16),
            layers: [
                padded(conv("conv1", "data", "x", cin: 3, cout: 4, k: 3, seed: 60)),
                op("relu1", relu, ["x"], "x"),
                padded(conv("a1", "x", "a1", cin: 4, cout: 4, k: 3, seed: 61)),
                op("relu_a1", relu, ["a1"], "a1"),
                padded(conv("a2", "a1", "a2", cin: 4, cout: 4, k: 3, seed: 62)),
                op("add1", sum, ["x", "a2"], "b1"),
                op("relu_b1", relu, ["b1"], "b1"),
                padded(conv("d1", "b1", "d1", cin: 4, cout: 6, k: 3, stride: 2, seed: 63)),
                op("relu_d1", relu, ["d1"], "d1"),
                padded(conv("d2", "d1", "d2", cin: 6, cout: 6, k: 3, seed: 64)),
                padded(conv("proj", "b1", "proj", cin: 4, cout: 6, k: 1, stride: 2, seed: 65)),
                op("add2", sum, ["proj", "d2"], "b2"),
                op("relu_b2", relu, ["b2"], "b2"),
                op("pool", maxPool(2, 2), ["b2"], "pool"),
                ip("fc", "pool", "fc", inputs: 6 * 16, outputs: 3, seed: 66),
                op("prob", .softmax, ["fc"], "prob"),
            ])
    }

    /// Two 3×3 stride-2 convolutions with pad 1 whose only non-zero tap is the centre, then an
    /// InnerProduct, at patch size `p`: it pads, so it is not exact, but its padding never counts, so
    /// its map must equal the classifier's (`naive`) on every pixel, whatever P mod 4.
    static func centreTaps(patch p: Int) -> Net { centreTaps(patch: Size2(square: p)) }

    /// `centreTaps` at a patch of any shape.
    static func centreTaps(patch: Size2) -> Net {
        func centre(_ layer: Layer) -> Layer {
            var l = layer
            if case .convolution(var c) = l.op {
                c.pad = .one
                for i in c.weights.indices where i % 9 != 4 { c.weights[i] = 0 }
                l.op = .convolution(c)
            }
            return l
        }
        func side(_ p: Int) -> Int { ((p - 1) / 2 + 1 - 1) / 2 + 1 }
        let (f2h, f2w) = (side(patch.h), side(patch.w))
        return Net(
            name: "centre-taps", inputName: "data", inputChannels: 3, patchSize: patch,
            layers: [
                centre(conv("conv1", "data", "conv1", cin: 3, cout: 4, k: 3, stride: 2, seed: 70)),
                op("relu1", .relu(negativeSlope: 0), ["conv1"], "conv1"),
                centre(conv("conv2", "conv1", "conv2", cin: 4, cout: 4, k: 3, stride: 2, seed: 71)),
                op("relu2", .relu(negativeSlope: 0), ["conv2"], "conv2"),
                ip("fc", "conv2", "fc", inputs: 4 * f2h * f2w, outputs: 3, seed: 72),
                op("prob", .softmax, ["fc"], "prob"),
            ])
    }

    /// The layout of the seed's trained CIFAR-10-quick classifiers, narrowed, with random
    /// weights: 5×5 convolutions with pad 2, MAX then AVE 3/2 pooling with partial last
    /// windows (32 → 16 → 8 → 4), ReLU after pool1 and fused into conv2/conv3, two
    /// InnerProducts. P = 32, S = 8; pads, so not exact.
    static var cifarQuick: Net {
        func padded(_ layer: Layer) -> Layer {
            var l = layer
            if case .convolution(var c) = l.op { c.pad = Size2(square: 2); l.op = .convolution(c) }
            return l
        }
        func pool(_ method: Pooling.Method) -> LayerOp {
            .pooling(Pooling(method: method, kernel: Size2(square: 3), stride: Size2(square: 2)))
        }
        return Net(
            name: "cifar-quick", inputName: "data", inputChannels: 3, patchSize: Size2(square: 32),
            layers: [
                padded(conv("conv1", "data", "conv1", cin: 3, cout: 8, k: 5, seed: 50)),
                op("pool1", pool(.max), ["conv1"], "pool1"),
                op("relu1", .relu(negativeSlope: 0), ["pool1"], "pool1"),
                padded(conv("conv2", "pool1", "conv2", cin: 8, cout: 8, k: 5, seed: 51)),
                op("relu2", .relu(negativeSlope: 0), ["conv2"], "conv2"),
                op("pool2", pool(.average), ["conv2"], "pool2"),
                padded(conv("conv3", "pool2", "conv3", cin: 8, cout: 12, k: 5, seed: 52)),
                op("relu3", .relu(negativeSlope: 0), ["conv3"], "conv3"),
                op("pool3", pool(.average), ["conv3"], "pool3"),
                ip("ip1", "pool3", "ip1", inputs: 12 * 16, outputs: 10, seed: 53),
                ip("ip2", "ip1", "ip2", inputs: 10, outputs: 2, seed: 54),
                op("prob", .softmax, ["ip2"], "prob"),
            ])
    }

    /// Odd patch (15), stride 2 from a 3/2 max pool, average pooling, a branch
    /// joined by Eltwise and Concat, Sigmoid; ends in an InnerProduct.
    static var oddBranchy: Net {
        Net(
            name: "odd-branchy", inputName: "data", inputChannels: 3, patchSize: Size2(square: 15),
            layers: [
                conv("c1", "data", "c1", cin: 3, cout: 4, k: 3, seed: 30),
                op("p1", maxPool(3, 2), ["c1"], "p1"),
                conv("a", "p1", "a", cin: 4, cout: 4, k: 1, seed: 31),
                conv("b", "p1", "b", cin: 4, cout: 4, k: 1, seed: 32),
                op("sum", .eltwise(Eltwise(operation: .sum, coefficients: [0.7, -1.3])), ["a", "b"], "sum"),
                op("sig", .sigmoid, ["b"], "sig"),
                op("cat", .concat, ["sum", "sig"], "cat"),
                conv("c2", "cat", "c2", cin: 8, cout: 4, k: 3, seed: 33),
                op("p2", .pooling(Pooling(method: .average, kernel: Size2(square: 2), stride: .one)), ["c2"], "p2"),
                ip("fc", "p2", "fc", inputs: 4 * 3 * 3, outputs: 3, seed: 34),
                op("prob", .softmax, ["fc"], "prob"),
            ])
    }
}

/// An image held as an array, for tests.
struct ArrayImage: PixelSource {
    let width: Int, height: Int, channels: Int
    let pixels: [Float]
    func value(y: Int, x: Int, channel: Int) -> Float { pixels[(y * width + x) * channels + channel] }

    static func random(height: Int, width: Int, channels: Int = 3, seed: UInt64) -> ArrayImage {
        var rng = SplitMix64(seed: seed)
        return ArrayImage(
            width: width, height: height, channels: channels,
            pixels: (0..<(width * height * channels)).map { _ in Float(rng.next() % 256) })
    }
}
