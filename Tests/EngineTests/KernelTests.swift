import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TestSupport

@Suite("Engine kernels against reference loops")
struct KernelTests {
    struct ConvCase: CustomTestStringConvertible, Sendable {
        var cin: Int, cout: Int, h: Int, w: Int
        var kernel: Size2, stride: Size2 = .one, pad: Size2 = .zero, dilation: Size2 = .one
        var group = 1, bias = true
        var testDescription: String {
            "\(cin)→\(cout) \(h)×\(w) k\(kernel) s\(stride) p\(pad) d\(dilation) g\(group)"
        }
    }

    static let convCases: [ConvCase] = [
        ConvCase(cin: 3, cout: 8, h: 13, w: 11, kernel: Size2(square: 3)),
        ConvCase(cin: 4, cout: 6, h: 17, w: 19, kernel: Size2(square: 3), stride: Size2(square: 2)),
        ConvCase(cin: 4, cout: 6, h: 17, w: 16, kernel: Size2(3, 2), stride: Size2(2, 3), pad: Size2(1, 2)),
        ConvCase(cin: 5, cout: 4, h: 20, w: 21, kernel: Size2(square: 3), dilation: Size2(square: 4)),
        ConvCase(cin: 6, cout: 4, h: 12, w: 12, kernel: Size2(square: 3), pad: Size2(square: 1), group: 2, bias: false),
        ConvCase(cin: 8, cout: 5, h: 9, w: 7, kernel: .one),
        ConvCase(cin: 8, cout: 6, h: 9, w: 7, kernel: .one, group: 2),
        ConvCase(cin: 2, cout: 3, h: 9, w: 9, kernel: Size2(square: 9)),
        ConvCase(cin: 3, cout: 2, h: 30, w: 1200, kernel: Size2(square: 5), dilation: Size2(2, 3)),
    ]

    @Test("Convolution equals the reference loops", arguments: convCases)
    func convolution(_ tc: ConvCase) throws {
        let x = Reference.random(Shape(c: tc.cin, h: tc.h, w: tc.w), seed: 1)
        let kCount = tc.cout * (tc.cin / tc.group) * tc.kernel.h * tc.kernel.w
        let conv = Convolution(
            outputs: tc.cout, kernel: tc.kernel, stride: tc.stride, pad: tc.pad, dilation: tc.dilation,
            group: tc.group, weights: Reference.randomValues(kCount, seed: 2),
            bias: tc.bias ? Reference.randomValues(tc.cout, seed: 3) : nil)
        let layer = Layer(name: "conv", op: .convolution(conv), bottoms: ["data"], tops: ["out"])
        let net = Net(name: "t", inputName: "data", inputChannels: tc.cin, patchSize: nil, layers: [layer])
        let runner = try NetRunner(net: net)
        for threads in [1, 2] {
            let got = try runner.forward(x, threads: threads)
            let want = Reference.convolution(x, conv)
            let diff = Reference.maxDifference(got, want)
            #expect(diff < 1e-4, "max difference \(diff) with \(threads) threads")
        }
    }

    struct PoolCase: CustomTestStringConvertible, Sendable {
        var method: Pooling.Method, h: Int, w: Int, kernel: Size2, stride: Size2
        var pad: Size2 = .zero, dilation: Size2 = .one
        var testDescription: String { "\(method) \(h)×\(w) k\(kernel) s\(stride) p\(pad) d\(dilation)" }
    }

    static let poolCases: [PoolCase] = [
        PoolCase(method: .max, h: 28, w: 28, kernel: Size2(square: 3), stride: Size2(square: 2)),  // partial
        PoolCase(method: .average, h: 28, w: 27, kernel: Size2(square: 3), stride: Size2(square: 2)),
        PoolCase(method: .max, h: 30, w: 30, kernel: Size2(square: 4), stride: Size2(square: 2)),
        PoolCase(method: .average, h: 11, w: 12, kernel: Size2(square: 3), stride: Size2(square: 2), pad: .one),
        PoolCase(method: .max, h: 11, w: 13, kernel: Size2(square: 3), stride: Size2(square: 2), pad: .one),
        PoolCase(method: .max, h: 25, w: 23, kernel: Size2(square: 4), stride: .one, dilation: Size2(square: 2)),
        PoolCase(method: .average, h: 25, w: 23, kernel: Size2(square: 2), stride: .one, dilation: Size2(3, 4)),
    ]

    @Test("Pooling equals Caffe's loops", arguments: poolCases)
    func pooling(_ tc: PoolCase) throws {
        let x = Reference.random(Shape(c: 3, h: tc.h, w: tc.w), seed: 4)
        let pool = Pooling(method: tc.method, kernel: tc.kernel, stride: tc.stride, pad: tc.pad, dilation: tc.dilation)
        let layer = Layer(name: "pool", op: .pooling(pool), bottoms: ["data"], tops: ["out"])
        let net = Net(name: "t", inputName: "data", inputChannels: 3, patchSize: nil, layers: [layer])
        let got = try NetRunner(net: net).forward(x, threads: 2)
        let diff = Reference.maxDifference(got, Reference.pooling(x, pool))
        #expect(diff < 1e-6, "max difference \(diff)")
    }

    @Test("LRN across channels equals the reference", arguments: [3, 5])
    func lrnAcross(size: Int) throws {
        let x = Reference.random(Shape(c: 7, h: 5, w: 9), seed: 5, scale: 3)
        let lrn = LRN(region: .acrossChannels, size: size, alpha: 0.2, beta: 0.75, k: 1)
        let net = Net(
            name: "t", inputName: "data", inputChannels: 7, patchSize: nil,
            layers: [Layer(name: "norm", op: .lrn(lrn), bottoms: ["data"], tops: ["out"])])
        let got = try NetRunner(net: net).forward(x, threads: 2)
        let diff = Reference.maxDifference(got, Reference.lrnAcross(x, lrn))
        #expect(diff < 1e-5, "max difference \(diff)")
    }
}
