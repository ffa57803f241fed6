import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TestSupport

/// The direct convolution kernels (CKernels/conv_direct.c, conv_direct_avx512.c)
/// against the im2col + sgemm path they replace for unpadded layers, against each
/// other, and (strided layers) against an FMA chain and a float64 loop.
@Suite("Direct convolution kernel")
struct DirectConvolutionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var cin: Int, cout: Int, h: Int, w: Int, kernel: Size2, dilation: Size2 = .one
        var group = 1, bias = true, slope: Float? = nil, stride: Size2 = .one, pad: Size2 = .zero
        var testDescription: String {
            "\(cin)→\(cout) \(h)×\(w) k\(kernel) d\(dilation) s\(stride) p\(pad) g\(group) relu \(slope.map { "\($0)" } ?? "none")"
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

    /// Strided layers (fcn-batchnorm's 2×2/2, 3×3/2, 4×4/2, and odd ones): strides along
    /// rows and columns, widths around the panel, inputs that the last window does not end.
    static let stridedCases: [Case] = [
        Case(cin: 16, cout: 16, h: 10, w: 133, kernel: Size2(square: 2), stride: Size2(square: 2)),
        Case(cin: 32, cout: 32, h: 11, w: 70, kernel: Size2(square: 3), slope: 0, stride: Size2(square: 2)),
        Case(cin: 64, cout: 64, h: 12, w: 140, kernel: Size2(square: 4), slope: 0.1, stride: Size2(square: 2)),
        Case(
            cin: 5, cout: 13, h: 17, w: 41, kernel: Size2(3, 2), dilation: Size2(1, 2), bias: false, stride: Size2(3, 4)
        ),
        Case(cin: 6, cout: 8, h: 9, w: 50, kernel: .one, group: 2, slope: 0, stride: Size2(1, 3)),
        Case(cin: 3, cout: 29, h: 7, w: 200, kernel: Size2(square: 5), stride: Size2(2, 1)),
        // Padded layers (run on a zero-framed copy of the input): the nuclei net's 5×5 pad 2,
        // pads wider than the kernel's reach, padding with strides.
        Case(cin: 32, cout: 32, h: 16, w: 70, kernel: Size2(square: 5), slope: 0, pad: Size2(square: 2)),
        Case(cin: 4, cout: 6, h: 5, w: 19, kernel: Size2(square: 3), dilation: Size2(2, 1), pad: Size2(3, 4)),
        Case(
            cin: 8, cout: 13, h: 15, w: 37, kernel: Size2(square: 3), bias: false, stride: Size2(square: 2), pad: .one),
    ]

    static func conv(_ tc: Case) -> Convolution {
        let k = (tc.cin / tc.group) * tc.kernel.h * tc.kernel.w
        let kCount = tc.cout * k
        // Strided cases: weights of a trained net's scale (sums of O(1)), so float32 rounding
        // stays far below the 1e-5 bound against the float64 reference.
        let scale: Float = tc.stride == .one && tc.pad == .zero ? 1 : 1 / Float(k).squareRoot()
        return Convolution(
            outputs: tc.cout, kernel: tc.kernel, stride: tc.stride, pad: tc.pad, dilation: tc.dilation, group: tc.group,
            weights: Reference.randomValues(kCount, seed: 12, scale: scale),
            bias: tc.bias ? Reference.randomValues(tc.cout, seed: 13) : nil)
    }

    static func run(_ k: ConvolutionKernel, _ x: Tensor, threads: Int) throws -> Tensor {
        let c = k.conv
        let out = Tensor(
            uninitialized: Shape(
                c: c.outputs, h: (x.h + 2 * c.pad.h - (c.kernel.h - 1) * c.dilation.h - 1) / c.stride.h + 1,
                w: (x.w + 2 * c.pad.w - (c.kernel.w - 1) * c.dilation.w - 1) / c.stride.w + 1))
        k.forward(x, into: out, origin: .zero, threads: threads, blas: try BLAS.get())
        return out
    }

    @Test("Equals im2col + sgemm, with its ReLU fused", arguments: cases + stridedCases)
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
        arguments: cases + stridedCases)
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

    /// The kernels' documented arithmetic, written out: per output one FMA chain from +0
    /// over t = (ci·kh + ky)·kw + kx in order (a padded tap reads 0), then + bias (+0
    /// without), then the activation.
    static func fmaChain(_ x: Tensor, _ conv: Convolution, slope: Float?) -> Tensor {
        let (kh, kw) = (conv.kernel.h, conv.kernel.w)
        let oh = (x.h + 2 * conv.pad.h - (kh - 1) * conv.dilation.h - 1) / conv.stride.h + 1
        let ow = (x.w + 2 * conv.pad.w - (kw - 1) * conv.dilation.w - 1) / conv.stride.w + 1
        let out = Tensor(Shape(c: conv.outputs, h: oh, w: ow))
        let cg = x.c / conv.group, mg = conv.outputs / conv.group
        for m in 0..<conv.outputs {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var acc: Float = 0
                    var t = m * cg * kh * kw
                    for ci in 0..<cg {
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                let iy = oy * conv.stride.h + ky * conv.dilation.h - conv.pad.h
                                let ix = ox * conv.stride.w + kx * conv.dilation.w - conv.pad.w
                                let inside = iy >= 0 && iy < x.h && ix >= 0 && ix < x.w
                                let v: Float = inside ? x[m / mg * cg + ci, iy, ix] : 0
                                acc = acc.addingProduct(conv.weights[t], v)
                                t += 1
                            }
                        }
                    }
                    var v = acc + (conv.bias?[m] ?? 0)
                    if let slope { v = v > 0 ? v : (slope == 0 ? 0 : v * slope) }
                    out[m, oy, ox] = v
                }
            }
        }
        return out
    }

    @Test(
        "Strided and padded layers: each kernel equals the FMA chain bit for bit and the float64 loop within 1e-5",
        .enabled(if: ConvolutionKernel.directAvailable, "this CPU has no direct kernel (no AVX2/FMA)"),
        arguments: stridedCases)
    func stridedMatchesReferences(_ tc: Case) throws {
        let conv = Self.conv(tc)
        let x = Reference.random(Shape(c: tc.cin, h: tc.h, w: tc.w), seed: 11)
        let exact = Self.fmaChain(x, conv, slope: tc.slope)
        // Independent of the kernels' order: float64 sums, then the activation.
        let loose = Reference.convolution(x, conv)
        var kernels: [DirectConvolutionKernel] = [.avx2, .avx512].filter(\.isSupported)
        if !DirectConvolutionKernel.avx512.isSupported {
            print("DirectConvolutionTests: this CPU lacks AVX-512F; strided layers checked on AVX2 only")
            kernels = kernels.filter { $0 != .avx512 }
        }
        for kernel in kernels {
            let k = ConvolutionKernel(conv: conv, fusedReLUSlope: tc.slope, direct: kernel)
            #expect(k.direct == kernel, "the strided layer does not take the \(kernel) direct kernel")
            for threads in [1, 2] {
                let got = try Self.run(k, x, threads: threads)
                #expect(got.shape == exact.shape)
                let differing = (0..<exact.count).filter { got.storage[$0].bitPattern != exact.storage[$0].bitPattern }
                #expect(
                    differing.isEmpty,
                    "\(kernel), \(threads) threads: \(differing.count) of \(exact.count) values differ from the FMA chain"
                )
                var worst: Float = 0
                for i in 0..<loose.count {
                    var want = loose.storage[i]
                    if let slope = tc.slope, want <= 0 { want = slope == 0 ? 0 : want * slope }
                    worst = max(worst, abs(got.storage[i] - want) / (1 + abs(want)))
                }
                #expect(worst <= 1e-5, "\(kernel), \(threads) threads: max relative difference \(worst) from float64")
            }
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
