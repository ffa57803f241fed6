import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TestSupport

/// The direct stride-1 convolution kernels (CKernels/conv_direct.c, conv_direct_avx512.c)
/// against the im2col + sgemm path they replace for unpadded stride-1 layers, and
/// against each other.
@Suite("Direct convolution kernel")
struct DirectConvolutionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var cin: Int, cout: Int, h: Int, w: Int, kernel: Size2, dilation: Size2 = .one
        var group = 1, bias = true, slope: Float? = nil
        var testDescription: String {
            "\(cin)→\(cout) \(h)×\(w) k\(kernel) d\(dilation) g\(group) relu \(slope.map { "\($0)" } ?? "none")"
        }
    }

    // Output channel counts that exercise every register-tile width (AVX2: 6, 4, 2, 1;
    // AVX-512: 12 or less, blocks of 13 → 7 + 6, 64 → 6 blocks), widths around the 16-pixel
    // chunk and the 64-pixel panel, reductions longer than a chunk.
    static let cases: [Case] = [
        Case(cin: 32, cout: 64, h: 30, w: 97, kernel: Size2(square: 6), dilation: Size2(square: 4), slope: 0),
        Case(cin: 64, cout: 13, h: 5, w: 129, kernel: .one, slope: 0.1),
        Case(cin: 3, cout: 7, h: 9, w: 15, kernel: Size2(square: 3), bias: false),
        Case(cin: 6, cout: 10, h: 8, w: 33, kernel: Size2(3, 2), dilation: Size2(2, 3), group: 2, slope: 0),
        Case(cin: 40, cout: 2, h: 4, w: 70, kernel: Size2(square: 2), dilation: Size2(square: 2)),
        Case(cin: 1, cout: 1, h: 3, w: 1, kernel: .one),
        Case(cin: 5, cout: 29, h: 12, w: 53, kernel: Size2(square: 5), dilation: Size2(2, 1), slope: 0.25),
        Case(
            cin: 32, cout: 13, h: 18, w: 47, kernel: Size2(square: 3), dilation: Size2(square: 8), bias: false, slope: 0
        ),
    ]

    static func conv(_ tc: Case) -> Convolution {
        let kCount = tc.cout * (tc.cin / tc.group) * tc.kernel.h * tc.kernel.w
        return Convolution(
            outputs: tc.cout, kernel: tc.kernel, dilation: tc.dilation, group: tc.group,
            weights: Reference.randomValues(kCount, seed: 12),
            bias: tc.bias ? Reference.randomValues(tc.cout, seed: 13) : nil)
    }

    static func run(_ k: ConvolutionKernel, _ x: Tensor, threads: Int) throws -> Tensor {
        let c = k.conv
        let out = Tensor(
            uninitialized: Shape(
                c: c.outputs, h: x.h - (c.kernel.h - 1) * c.dilation.h,
                w: x.w - (c.kernel.w - 1) * c.dilation.w))
        k.forward(x, into: out, origin: .zero, threads: threads, blas: try BLAS.get())
        return out
    }

    @Test("Equals im2col + sgemm, with its ReLU fused", arguments: cases)
    func matchesIm2col(_ tc: Case) throws {
        let direct = ConvolutionKernel(conv: Self.conv(tc), fusedReLUSlope: tc.slope)
        try #require(direct.isDirect || !ConvolutionKernel.directAvailable)
        let gemm = ConvolutionKernel(conv: Self.conv(tc), fusedReLUSlope: tc.slope, direct: nil)
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

    /// Both kernels compute each output as one FMA chain in tap order, then bias and
    /// activation: the AVX-512 kernel's maps must equal the AVX2 kernel's bit for bit
    /// (on an AVX-512 machine the engine uses it; maps made elsewhere must match).
    @Test(
        "AVX-512 kernel equals the AVX2 kernel bit for bit, and im2col + sgemm",
        .enabled(
            if: DirectConvolutionKernel.avx512.isSupported && DirectConvolutionKernel.avx2.isSupported,
            "this CPU lacks AVX-512F (or AVX2/FMA): nothing to compare"),
        arguments: cases)
    func avx512MatchesAVX2(_ tc: Case) throws {
        let avx512 = ConvolutionKernel(conv: Self.conv(tc), fusedReLUSlope: tc.slope, direct: .avx512)
        let avx2 = ConvolutionKernel(conv: Self.conv(tc), fusedReLUSlope: tc.slope, direct: .avx2)
        let gemm = ConvolutionKernel(conv: Self.conv(tc), fusedReLUSlope: tc.slope, direct: nil)
        #expect(avx512.direct == .avx512 && avx2.direct == .avx2)
        let x = Reference.random(Shape(c: tc.cin, h: tc.h, w: tc.w), seed: 11)
        let want = try Self.run(avx2, x, threads: 1)
        let loose = try Self.run(gemm, x, threads: 1)
        for threads in [1, 2] {
            let got = try Self.run(avx512, x, threads: threads)
            let differing = (0..<want.count).filter { got.storage[$0].bitPattern != want.storage[$0].bitPattern }
            #expect(
                differing.isEmpty,
                "\(differing.count) of \(want.count) values differ from AVX2's with \(threads) threads")
            var worst: Float = 0
            for i in 0..<loose.count {
                worst = max(worst, abs(got.storage[i] - loose.storage[i]) / (1 + abs(loose.storage[i])))
            }
            #expect(worst < 1e-4, "max relative difference from im2col \(worst) with \(threads) threads")
        }
    }

    @Test("TESSERA_DIRECT_CONV picks the kernel, falling back to what the CPU runs")
    func kernelChoice() {
        let best: DirectConvolutionKernel? =
            DirectConvolutionKernel.avx512.isSupported
            ? .avx512
            : DirectConvolutionKernel.avx2.isSupported ? .avx2 : nil
        #expect(DirectConvolutionKernel.choose(nil) == best)
        #expect(DirectConvolutionKernel.choose("auto") == best)
        #expect(DirectConvolutionKernel.choose("avx512") == best)
        #expect(DirectConvolutionKernel.choose("avx2") == (DirectConvolutionKernel.avx2.isSupported ? .avx2 : nil))
        #expect(DirectConvolutionKernel.choose("0") == nil)
        if !DirectConvolutionKernel.avx512.isSupported {
            print("DirectConvolutionTests: this CPU lacks AVX-512F; the AVX-512 kernel is not exercised")
        }
    }
}
