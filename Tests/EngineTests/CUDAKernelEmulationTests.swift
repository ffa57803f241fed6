import Foundation
import Testing

@testable import TesseraCUDA
@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TestSupport

/// The GPU backend's own kernels (`CUDAKernelSource`) compiled for the CPU with the host
/// C++ compiler, as one block of one thread (each kernel's grid-stride loop then visits
/// every element in turn), and checked against the engine's reference loops. This is
/// how their index arithmetic is tested on machines without a GPU; `gpu-check`
/// (scripts/device-check.sh) checks the same kernels on a device, with cuDNN between them.
@Suite("CUDA kernels emulated on the CPU")
struct CUDAKernelEmulationTests {
    /// Defines what the kernels use from CUDA: the launch indices, and the qualifiers as nothing.
    static let prelude = """
        #include <math.h>
        struct tessera_index { long long x; };
        static const tessera_index blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
        #define __global__
        #define __device__
        #define __forceinline__ inline

        """

    /// The kernels as a shared library, compiled once per test process.
    static let library: Result<UnsafeMutableRawPointer, EmulationError> = {
        do {
            let dir = try ProcessScratch.folder("tessera-kernels-")
            try (prelude + CUDAKernelSource.code).write(toFile: dir + "/kernels.cpp", atomically: true, encoding: .utf8)
            var failures: [String] = []
            for compiler in ["clang++", "g++", "c++"] {
                let (status, output) = try runCommand([
                    compiler, "-x", "c++", "-O1", "-shared", "-fPIC", "-o", dir + "/kernels.so", dir + "/kernels.cpp",
                ])
                if status == 0, let handle = dlopen(dir + "/kernels.so", RTLD_NOW) { return .success(handle) }
                failures.append("\(compiler): exit \(status): \(output.prefix(2000))")
            }
            return .failure(EmulationError(text: failures.joined(separator: "\n")))
        } catch {
            return .failure(EmulationError(text: "\(error)"))
        }
    }()

    struct EmulationError: Error, CustomStringConvertible { let text: String; var description: String { text } }

    static func kernel<T>(_ name: String, as type: T.Type) throws -> T {
        let handle = try library.get()
        guard let symbol = dlsym(handle, name) else { throw EmulationError(text: "no kernel \(name)") }
        return unsafeBitCast(symbol, to: type)
    }

    typealias SpaceToBatch =
        @convention(c) (
            UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
            Int32
        ) -> Void
    typealias BatchToSpace =
        @convention(c) (
            UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
            UnsafePointer<Float>?, Int32, Int32, Float
        ) -> Void
    typealias Im2col =
        @convention(c) (
            UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
            Int32, Int32, Int32, Int32, Int32, Int32
        ) -> Void

    struct Case: CustomTestStringConvertible, Sendable {
        var cin: Int, cout: Int, h: Int, w: Int, kernel: Size2, pad: Size2 = .zero, dilation: Size2
        var group = 1, relu: Float? = 0
        var testDescription: String { "\(cin)→\(cout) \(h)×\(w) k\(kernel) p\(pad) d\(dilation) g\(group)" }
    }

    static let cases: [Case] = [
        // The seed net's fc6 in dense mode, small: 6×6 dilated by 4 (sizes not multiples of 4).
        Case(cin: 5, cout: 7, h: 31, w: 29, kernel: Size2(square: 6), dilation: Size2(square: 4)),
        Case(cin: 3, cout: 4, h: 17, w: 22, kernel: Size2(square: 3), dilation: Size2(square: 2), relu: nil),
        Case(cin: 4, cout: 6, h: 19, w: 15, kernel: Size2(3, 2), pad: Size2(2, 1), dilation: Size2(2, 3), group: 2),
        Case(cin: 2, cout: 3, h: 9, w: 40, kernel: Size2(1, 3), dilation: Size2(1, 8), relu: 0.1),
        // One output row: every fragment but the first is all padding or dropped.
        Case(cin: 2, cout: 2, h: 9, w: 9, kernel: Size2(square: 3), dilation: Size2(square: 4)),
    ]

    /// space_to_batch, an undilated unpadded convolution of each fragment (the reference
    /// loops, standing in for cuDNN), batch_to_space with the bias and ReLU: the dilated
    /// convolution's output, every pixel.
    @Test(
        "A dilated convolution through fragments (space_to_batch, batch_to_space) equals the reference",
        arguments: cases)
    func fragments(_ tc: Case) throws {
        let x = Reference.random(Shape(c: tc.cin, h: tc.h, w: tc.w), seed: 11)
        let weightCount = tc.cout * (tc.cin / tc.group) * tc.kernel.h * tc.kernel.w
        let conv = Convolution(
            outputs: tc.cout, kernel: tc.kernel, pad: tc.pad, dilation: tc.dilation, group: tc.group,
            weights: Reference.randomValues(weightCount, seed: 12), bias: Reference.randomValues(tc.cout, seed: 13))
        let g = try #require(FragmentGeometry(conv, input: x.shape))
        let spaceToBatch = try Self.kernel("space_to_batch", as: SpaceToBatch.self)
        let batchToSpace = try Self.kernel("batch_to_space", as: BatchToSpace.self)

        let fragments = Tensor(Shape(c: g.count * tc.cin, h: g.fragment.h, w: g.fragment.w))
        spaceToBatch(
            x.pointer, fragments.pointer, Int32(tc.cin), Int32(tc.h), Int32(tc.w), Int32(g.dilation.h),
            Int32(g.dilation.w), Int32(g.pad.h), Int32(g.pad.w), Int32(g.fragment.h), Int32(g.fragment.w))
        var undilated = conv
        (undilated.pad, undilated.dilation, undilated.bias) = (.zero, .one, nil)
        let plane = tc.cin * g.fragment.h * g.fragment.w
        let results = Tensor(Shape(c: g.count * tc.cout, h: g.result.h, w: g.result.w))
        let resultPlane = tc.cout * g.result.h * g.result.w
        for q in 0..<g.count {
            let one = Tensor(
                Shape(c: tc.cin, h: g.fragment.h, w: g.fragment.w),
                values: Array(UnsafeBufferPointer(start: fragments.pointer + q * plane, count: plane)))
            let r = Reference.convolution(one, undilated)
            #expect(r.shape == Shape(c: tc.cout, h: g.result.h, w: g.result.w))
            (results.pointer + q * resultPlane).update(from: r.pointer, count: resultPlane)
        }
        let want = Reference.convolution(x, conv)
        let got = Tensor(want.shape)
        conv.bias!.withUnsafeBufferPointer { bias in
            batchToSpace(
                results.pointer, got.pointer, Int32(tc.cout), Int32(want.shape.h), Int32(want.shape.w),
                Int32(g.dilation.h), Int32(g.dilation.w), Int32(g.result.h), Int32(g.result.w), bias.baseAddress,
                1, tc.relu != nil ? 1 : 0, tc.relu ?? 0)
        }
        if let slope = tc.relu {
            for i in 0..<want.count where want.pointer[i] < 0 { want.pointer[i] *= slope }
        }
        let diff = Reference.maxDifference(got, want)
        #expect(diff < 1e-5, "max difference \(diff)")
    }

    @Test("Fragments apply only to stride-1 dilated convolutions with an output")
    func geometry() {
        func conv(_ k: Int, stride: Int = 1, dilation: Int) -> Convolution {
            Convolution(
                outputs: 1, kernel: Size2(square: k), stride: Size2(square: stride), dilation: Size2(square: dilation),
                weights: [Float](repeating: 0, count: k * k), bias: nil)
        }
        let input = Shape(c: 1, h: 30, w: 30)
        #expect(FragmentGeometry(conv(3, dilation: 1), input: input) == nil)
        #expect(FragmentGeometry(conv(3, stride: 2, dilation: 2), input: input) == nil)
        #expect(FragmentGeometry(conv(6, dilation: 6), input: input) == nil)  // 6 + 5·6 > 30: no output
        let g = FragmentGeometry(conv(6, dilation: 4), input: input)
        #expect(g?.count == 16)
        #expect(g?.fragment == Size2(square: 8))  // ⌈30 / 4⌉
        #expect(g?.result == Size2(square: 3))  // output 30 − 20 = 10 pixels: rows 0…9, fragment rows 0…2
    }

    /// The im2col kernel (the GPU's cuBLAS path) times the weights, as a plain matrix
    /// product here, against the reference convolution.
    @Test("im2col times the weights equals the reference convolution", arguments: cases.prefix(3))
    func im2col(_ tc: Case) throws {
        guard tc.group == 1 else { return }
        let x = Reference.random(Shape(c: tc.cin, h: tc.h, w: tc.w), seed: 21)
        let k = tc.cin * tc.kernel.h * tc.kernel.w
        let conv = Convolution(
            outputs: tc.cout, kernel: tc.kernel, pad: tc.pad, dilation: tc.dilation,
            weights: Reference.randomValues(tc.cout * k, seed: 22), bias: nil)
        let want = Reference.convolution(x, conv)
        let (outH, outW) = (want.shape.h, want.shape.w)
        let kernel = try Self.kernel("im2col", as: Im2col.self)
        var column = [Float](repeating: .nan, count: k * outH * outW)
        column.withUnsafeMutableBufferPointer { col in
            kernel(
                x.pointer, col.baseAddress!, Int32(tc.cin), Int32(tc.h), Int32(tc.w), Int32(outW), 0, Int32(outH),
                Int32(tc.kernel.h), Int32(tc.kernel.w), 1, 1, Int32(tc.pad.h), Int32(tc.pad.w), Int32(tc.dilation.h),
                Int32(tc.dilation.w))
        }
        let n = outH * outW
        var worst: Float = 0
        for m in 0..<tc.cout {
            for p in 0..<n {
                var s: Double = 0
                for r in 0..<k { s += Double(conv.weights[m * k + r]) * Double(column[r * n + p]) }
                worst = max(worst, abs(Float(s) - want.pointer[m * n + p]))
            }
        }
        #expect(worst < 1e-5, "max difference \(worst)")
    }

    /// One layer through the CPU engine (`NetRunner`), the kernels' counterpart.
    static func cpu(_ op: LayerOp, _ x: Tensor, lrnDilation: Size2 = .one) throws -> Tensor {
        let layer = Layer(name: "layer", op: op, bottoms: ["data"], tops: ["out"])
        let net = Net(name: "t", inputName: "data", inputChannels: x.c, patchSize: nil, layers: [layer])
        return try NetRunner(net: net, lrnDilation: [lrnDilation]).forward(x, threads: 1)
    }

    typealias Pool2d =
        @convention(c) (
            UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
            Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32
        ) -> Void

    @Test(
        "pool2d equals the CPU engine's pooling (partial windows, padding, dilation)",
        arguments: [
            (Pooling.Method.max, 29, 4, 2, 0, 1), (.average, 28, 3, 2, 1, 1), (.max, 25, 4, 1, 0, 2),
            (.average, 23, 2, 1, 0, 3), (.max, 11, 3, 2, 1, 1),
        ])
    func pool2d(_ method: Pooling.Method, _ side: Int, _ k: Int, _ stride: Int, _ pad: Int, _ dilation: Int) throws {
        let x = Reference.random(Shape(c: 3, h: side, w: side + 3), seed: 31)
        let pool = Pooling(
            method: method, kernel: Size2(square: k), stride: Size2(square: stride), pad: Size2(square: pad),
            dilation: Size2(square: dilation))
        let want = try Self.cpu(.pooling(pool), x)
        let got = Tensor(want.shape)
        try Self.kernel("pool2d", as: Pool2d.self)(
            x.pointer, got.pointer, 3, Int32(x.h), Int32(x.w), Int32(want.shape.h), Int32(want.shape.w), Int32(k),
            Int32(k), Int32(stride), Int32(stride), Int32(pad), Int32(pad), Int32(dilation), Int32(dilation),
            method == .max ? 1 : 0, Int32(-pad), Int32(x.h + pad), Int32(-pad), Int32(x.w + pad))
        let diff = Reference.maxDifference(got, want)
        #expect(diff < 1e-6, "max difference \(diff)")
    }

    /// In a tile of a net that pads, an average's divisor counts the taps inside the whole-image
    /// pass's padded input, which may end before (or after) the tile's own input.
    @Test("pool2d narrowed to the whole-image pass's padded input equals the CPU engine's")
    func pool2dCounted() throws {
        let x = Reference.random(Shape(c: 2, h: 17, w: 19), seed: 33)
        let pool = Pooling(method: .average, kernel: Size2(square: 3), stride: Size2(2, 1), pad: Size2(square: 1))
        let counted = PixelRect(y: 2, x: -1, height: 11, width: 16)
        let want = Tensor(Shape(c: 2, h: 9, w: 19))
        PoolingKernel(pool: pool).forward(x, into: want, threads: 1, counted: counted)
        let plain = try Self.cpu(.pooling(pool), x)
        #expect(plain.shape == want.shape && Reference.maxDifference(plain, want) > 0.01, "the range must matter")
        let got = Tensor(want.shape)
        try Self.kernel("pool2d", as: Pool2d.self)(
            x.pointer, got.pointer, 2, 17, 19, 9, 19, 3, 3, 2, 1, 1, 1, 1, 1, 0, 2, 13, -1, 15)
        let diff = Reference.maxDifference(got, want)
        #expect(diff < 1e-6, "max difference \(diff)")
    }

    typealias LRNAcross =
        @convention(c) (
            UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int32, Int64, Int32, Float, Float, Float, Int32
        ) -> Void
    typealias LRNWithin =
        @convention(c) (
            UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int32, Int32, Int32, Int32, Float, Float, Int32, Int32
        ) -> Void

    @Test("lrn_across and lrn_within (dilated, as in dense mode) equal the CPU engine's LRN", arguments: [3, 5])
    func lrn(size: Int) throws {
        let x = Reference.random(Shape(c: 7, h: 13, w: 17), seed: 32, scale: 3)
        let across = LRN(region: .acrossChannels, size: size, alpha: 0.2, beta: 0.75, k: 1.5)
        var want = try Self.cpu(.lrn(across), x)
        var got = Tensor(want.shape)
        try Self.kernel("lrn_across", as: LRNAcross.self)(
            x.pointer, got.pointer, 7, Int64(x.h * x.w), Int32(size), across.alpha / Float(size), across.k, across.beta,
            1)
        #expect(Reference.maxDifference(got, want) < 1e-5, "across: \(Reference.maxDifference(got, want))")

        let within = LRN(region: .withinChannel, size: size, alpha: 0.3, beta: 0.6, k: 1)
        let dilation = Size2(2, 3)
        want = try Self.cpu(.lrn(within), x, lrnDilation: dilation)
        got = Tensor(want.shape)
        try Self.kernel("lrn_within", as: LRNWithin.self)(
            x.pointer, got.pointer, 7, Int32(x.h), Int32(x.w), Int32(size), within.alpha / Float(size * size),
            within.beta, Int32(dilation.h), Int32(dilation.w))
        #expect(Reference.maxDifference(got, want) < 1e-5, "within: \(Reference.maxDifference(got, want))")
    }

    typealias Softmax = @convention(c) (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int32, Int64, Int32) -> Void
    typealias InnerProductKernel =
        @convention(c) (
            UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>?, UnsafeMutablePointer<Float>, Int32,
            Int32, Int32, Int32
        ) -> Void

    @Test("softmax_channels and inner_product equal the CPU engine's layers")
    func softmaxAndInnerProduct() throws {
        let x = Reference.random(Shape(c: 5, h: 9, w: 11), seed: 33, scale: 20)
        var want = try Self.cpu(.softmax, x)
        var got = Tensor(want.shape)
        try Self.kernel("softmax_channels", as: Softmax.self)(x.pointer, got.pointer, 5, Int64(x.h * x.w), 1)
        #expect(Reference.maxDifference(got, want) < 1e-6, "softmax: \(Reference.maxDifference(got, want))")

        let ip = InnerProduct(
            outputs: 6, weights: Reference.randomValues(6 * x.count, seed: 34),
            bias: Reference.randomValues(6, seed: 35))
        want = try Self.cpu(.innerProduct(ip), x)
        got = Tensor(want.shape)
        try ip.weights.withUnsafeBufferPointer { w in
            try ip.bias!.withUnsafeBufferPointer { b in
                try Self.kernel("inner_product", as: InnerProductKernel.self)(
                    x.pointer, w.baseAddress!, b.baseAddress, got.pointer, 6, Int32(x.count), 1, 1)
            }
        }
        #expect(Reference.maxDifference(got, want) < 1e-4, "inner product: \(Reference.maxDifference(got, want))")
    }
}
