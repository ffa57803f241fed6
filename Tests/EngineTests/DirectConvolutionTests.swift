import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TestSupport


/// The direct stride-1 convolution kernel (CKernels/conv_direct.c) against the
/// im2col + sgemm path it replaces for unpadded stride-1 layers.
@Suite("Direct convolution kernel")
struct DirectConvolutionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var cin: Int, cout: Int, h: Int, w: Int, kernel: Size2, dilation: Size2 = .one
        var group = 1, bias = true, slope: Float? = nil
        var testDescription: String {
            "\(cin)→\(cout) \(h)×\(w) k\(kernel) d\(dilation) g\(group) relu \(slope.map { "\($0)" } ?? "none")"
        }
    }

    // Output channel counts that exercise every register-tile width (6, 4, 2, 1),
    // widths around the 16-pixel chunk and the 64-pixel panel, reductions longer than a chunk.
    static let cases: [Case] = [
        Case(cin: 32, cout: 64, h: 30, w: 97, kernel: Size2(square: 6), dilation: Size2(square: 4), slope: 0),
        Case(cin: 64, cout: 13, h: 5, w: 129, kernel: .one, slope: 0.1),
        Case(cin: 3, cout: 7, h: 9, w: 15, kernel: Size2(square: 3), bias: false),
        Case(cin: 6, cout: 10, h: 8, w: 33, kernel: Size2(3, 2), dilation: Size2(2, 3), group: 2, slope: 0),
        Case(cin: 40, cout: 2, h: 4, w: 70, kernel: Size2(square: 2), dilation: Size2(square: 2)),
        Case(cin: 1, cout: 1, h: 3, w: 1, kernel: .one),
    ]

    static func conv(_ tc: Case) -> Convolution {
        let kCount = tc.cout * (tc.cin / tc.group) * tc.kernel.h * tc.kernel.w
        return Convolution(outputs: tc.cout, kernel: tc.kernel, dilation: tc.dilation, group: tc.group,
                           weights: Reference.randomValues(kCount, seed: 12), bias: tc.bias ? Reference.randomValues(tc.cout, seed: 13) : nil)
    }

    static func run(_ k: ConvolutionKernel, _ x: Tensor, threads: Int) throws -> Tensor {
        let c = k.conv
        let out = Tensor(uninitialized: Shape(c: c.outputs, h: x.h - (c.kernel.h - 1) * c.dilation.h,
                                              w: x.w - (c.kernel.w - 1) * c.dilation.w))
        k.forward(x, into: out, origin: .zero, threads: threads, blas: try BLAS.get())
        return out
    }

    @Test("Equals im2col + sgemm, with its ReLU fused", arguments: cases)
    func matchesIm2col(_ tc: Case) throws {
        let direct = ConvolutionKernel(conv: Self.conv(tc), fusedReLUSlope: tc.slope)
        try #require(direct.isDirect || !ConvolutionKernel.directAvailable)
        let gemm = ConvolutionKernel(conv: Self.conv(tc), fusedReLUSlope: tc.slope, allowDirect: false)
        #expect(!gemm.isDirect)
        let x = Reference.random(Shape(c: tc.cin, h: tc.h, w: tc.w), seed: 11)
        let want = try Self.run(gemm, x, threads: 1)
        for threads in [1, 2] {
            // Relative to the value: the two paths sum in different orders (1152 terms of ±1 here),
            // so the bound is the fixtures' 1e-4; a wrong tap or lane is off by O(1).
            let got = try Self.run(direct, x, threads: threads)
            var worst: Float = 0
            for i in 0..<want.count {
                worst = max(worst, abs(got.storage[i] - want.storage[i]) / (1 + abs(want.storage[i])))
            }
            #expect(worst < 1e-4, "max relative difference \(worst) with \(threads) threads")
        }
    }

    @Test("A pixel's value does not depend on where its crop starts")
    func positionIndependent() throws {
        let tc = Self.cases[0]
        let k = ConvolutionKernel(conv: Self.conv(tc), fusedReLUSlope: tc.slope)
        let x = Reference.random(Shape(c: tc.cin, h: tc.h, w: tc.w), seed: 11)
        let full = try Self.run(k, x, threads: 2)
        // Crops of the input starting at odd offsets shift every pixel to another lane and chunk.
        for (dy, dx) in [(1, 3), (2, 17), (0, 50)] {
            let crop = Tensor(uninitialized: Shape(c: x.c, h: x.h - dy, w: x.w - dx))
            for c in 0..<x.c {
                for y in 0..<crop.h {
                    for xx in 0..<crop.w { crop[c, y, xx] = x[c, y + dy, xx + dx] }
                }
            }
            let part = try Self.run(k, crop, threads: 1)
            var same = true
            for c in 0..<part.c {
                for y in 0..<part.h {
                    for xx in 0..<part.w where part[c, y, xx].bitPattern != full[c, y + dy, xx + dx].bitPattern {
                        same = false
                    }
                }
            }
            #expect(same, "crop at (\(dy), \(dx)) differs from the full output")
        }
    }
}
