import Foundation
import Testing

@testable import TesseraCUDA
@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TestSupport

/// The kernels on a batch of images (GPU `naive`, `CUDAPatchMapper`), emulated on the CPU
/// like `CUDAKernelEmulationTests`: each image of the batch must come out as the CPU
/// engine computes it alone, and the patches and probabilities must land where `naive`
/// puts them.
@Suite("CUDA kernels on batches, emulated on the CPU")
struct CUDABatchedKernelEmulationTests {
    typealias Emulation = CUDAKernelEmulationTests
    static let images = 3
    static let image = Shape(c: 5, h: 6, w: 7)

    /// The batch (images one after another) and each image alone.
    static func batch(seed: UInt64, scale: Float = 1) -> (Tensor, [Tensor]) {
        let x = Reference.random(
            Shape(c: images * image.c, h: image.h, w: image.w), seed: seed, scale: scale)
        let one = image.count
        let parts = (0..<images).map {
            Tensor(image, values: Array(UnsafeBufferPointer(start: x.pointer + $0 * one, count: one)))
        }
        return (x, parts)
    }

    /// Image `n` of a batch tensor whose images are `shape`-shaped.
    static func part(_ t: Tensor, _ n: Int, _ shape: Shape) -> Tensor {
        Tensor(shape, values: Array(UnsafeBufferPointer(start: t.pointer + n * shape.count, count: shape.count)))
    }

    @Test("lrn_across, softmax_channels and inner_product on a batch equal the CPU engine image by image")
    func channelMixingKernels() throws {
        let (x, parts) = Self.batch(seed: 41, scale: 4)
        let plane = Int64(Self.image.h * Self.image.w)
        let n = Int32(Self.images)

        let across = LRN(region: .acrossChannels, size: 3, alpha: 0.2, beta: 0.75, k: 1.5)
        var got = Tensor(x.shape)
        try Emulation.kernel("lrn_across", as: Emulation.LRNAcross.self)(
            x.pointer, got.pointer, Int32(Self.image.c), plane, 3, across.alpha / 3, across.k, across.beta, n)
        for i in 0..<Self.images {
            let want = try Emulation.cpu(.lrn(across), parts[i])
            let diff = Reference.maxDifference(Self.part(got, i, Self.image), want)
            #expect(diff < 1e-5, "lrn_across, image \(i): \(diff)")
        }

        got = Tensor(x.shape)
        try Emulation.kernel("softmax_channels", as: Emulation.Softmax.self)(
            x.pointer, got.pointer, Int32(Self.image.c), plane, n)
        for i in 0..<Self.images {
            let want = try Emulation.cpu(.softmax, parts[i])
            let diff = Reference.maxDifference(Self.part(got, i, Self.image), want)
            #expect(diff < 1e-6, "softmax, image \(i): \(diff)")
        }

        let outputs = 4
        let ip = InnerProduct(
            outputs: outputs, weights: Reference.randomValues(outputs * Self.image.count, seed: 42),
            bias: Reference.randomValues(outputs, seed: 43))
        got = Tensor(Shape(c: outputs * Self.images, h: 1, w: 1))
        try ip.weights.withUnsafeBufferPointer { w in
            try ip.bias!.withUnsafeBufferPointer { b in
                try Emulation.kernel("inner_product", as: Emulation.InnerProductKernel.self)(
                    x.pointer, w.baseAddress!, b.baseAddress, got.pointer, Int32(outputs), Int32(Self.image.count),
                    1, n)
            }
        }
        for i in 0..<Self.images {
            let want = try Emulation.cpu(.innerProduct(ip), parts[i])
            let diff = Reference.maxDifference(Self.part(got, i, want.shape), want)
            #expect(diff < 1e-4, "inner_product, image \(i): \(diff)")
        }
    }

    typealias ConcatImages =
        @convention(c) (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int64, Int64, Int64, Int32) -> Void

    @Test("concat_images puts each input's image after the earlier inputs' channels of the same image")
    func concat() throws {
        let (a, b) = (Shape(c: 2, h: 3, w: 4), Shape(c: 3, h: 3, w: 4))
        let n = Self.images
        let xa = Reference.random(Shape(c: n * a.c, h: 3, w: 4), seed: 49)
        let xb = Reference.random(Shape(c: n * b.c, h: 3, w: 4), seed: 50)
        let out = Shape(c: a.c + b.c, h: 3, w: 4)
        let y = Tensor(Shape(c: n * out.c, h: 3, w: 4))
        let kernel = try Emulation.kernel("concat_images", as: ConcatImages.self)
        kernel(xa.pointer, y.pointer, Int64(a.count), Int64(out.count), 0, Int32(n))
        kernel(xb.pointer, y.pointer, Int64(b.count), Int64(out.count), Int64(a.count), Int32(n))
        for i in 0..<n {
            let want = Self.part(xa, i, a).values + Self.part(xb, i, b).values
            #expect(Self.part(y, i, out).values == want, "image \(i)")
        }
    }

    typealias BiasAct =
        @convention(c) (UnsafeMutablePointer<Float>, UnsafePointer<Float>?, Int64, Int32, Int64, Int32, Int32, Float)
        -> Void
    typealias Affine =
        @convention(c) (
            UnsafePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Int64,
            Int32, Int64
        ) -> Void

    @Test("bias_act and affine index their per-channel values by the channel within each image")
    func perChannelKernels() throws {
        let (x, _) = Self.batch(seed: 44)
        let c = Self.image.c, plane = Self.image.h * Self.image.w
        let a = Reference.randomValues(c, seed: 45), b = Reference.randomValues(c, seed: 46)
        let slope: Float = 0.25
        func expected(_ f: (Float, Int) -> Float) -> Tensor {
            let t = Tensor(x.shape)
            for i in 0..<x.count { t.pointer[i] = f(x.pointer[i], (i / plane) % c) }
            return t
        }
        let y = Tensor(x.shape, values: x.values)
        try b.withUnsafeBufferPointer { bias in
            try Emulation.kernel("bias_act", as: BiasAct.self)(
                y.pointer, bias.baseAddress, Int64(plane), Int32(c), Int64(x.count), 1, 1, slope)
        }
        var want = expected { v, ch in v + b[ch] > 0 ? v + b[ch] : (v + b[ch]) * slope }
        #expect(Reference.maxDifference(y, want) < 1e-6, "bias_act: \(Reference.maxDifference(y, want))")

        let z = Tensor(x.shape)
        try a.withUnsafeBufferPointer { ap in
            try b.withUnsafeBufferPointer { bp in
                try Emulation.kernel("affine", as: Affine.self)(
                    x.pointer, z.pointer, ap.baseAddress!, bp.baseAddress!, Int64(plane), Int32(c), Int64(x.count))
            }
        }
        want = expected { v, ch in v * a[ch] + b[ch] }
        #expect(Reference.maxDifference(z, want) < 1e-6, "affine: \(Reference.maxDifference(z, want))")
    }

    typealias Gather =
        @convention(c) (
            UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int32, Int32, Int32, Int32, Int32, Int64, Int32,
            Int32, Int32
        ) -> Void
    typealias Scatter =
        @convention(c) (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int32, Int64, Int64, Int32) -> Void

    /// A 9×11 map of 4×3 patches (input 12×13); the batch of pixels 17…21 (crossing a map
    /// row) in a batch of 7: patch n is the input window at map pixel 17 + n, the last two zeros.
    @Test("gather_patches cuts naive's patches out of the input; scatter_classes puts probabilities in the map")
    func gatherAndScatter() throws {
        let (mapH, mapW, ph, pw, channels) = (9, 11, 4, 3, 2)
        let input = Reference.random(Shape(c: channels, h: mapH + ph - 1, w: mapW + pw - 1), seed: 47)
        let (first, count, batch) = (17, 5, 7)
        let patches = Tensor(
            Shape(c: batch * channels, h: ph, w: pw),
            values: [Float](repeating: .nan, count: batch * channels * ph * pw))
        try Emulation.kernel("gather_patches", as: Gather.self)(
            input.pointer, patches.pointer, Int32(channels), Int32(input.h), Int32(input.w), Int32(ph), Int32(pw),
            Int64(first), Int32(count), Int32(batch), Int32(mapW))
        var wrong = 0
        for n in 0..<batch {
            let (y, x) = ((first + n) / mapW, (first + n) % mapW)
            for c in 0..<channels {
                for r in 0..<ph {
                    for s in 0..<pw {
                        let got = patches[n * channels + c, r, s]
                        let want = n < count ? input[c, y + r, x + s] : 0
                        if got != want { wrong += 1 }
                    }
                }
            }
        }
        #expect(wrong == 0, "\(wrong) patch values wrong")

        let classes = 3
        let probabilities = Reference.randomValues(count * classes, seed: 48)
        let map = Tensor(
            Shape(c: classes, h: mapH, w: mapW), values: [Float](repeating: -1, count: classes * mapH * mapW))
        try probabilities.withUnsafeBufferPointer {
            try Emulation.kernel("scatter_classes", as: Scatter.self)(
                $0.baseAddress!, map.pointer, Int32(classes), Int64(mapH * mapW), Int64(first), Int32(count))
        }
        wrong = 0
        for c in 0..<classes {
            for p in 0..<(mapH * mapW) {
                let want = (first..<first + count).contains(p) ? probabilities[(p - first) * classes + c] : -1
                if map[c, p / mapW, p % mapW] != want { wrong += 1 }
            }
        }
        #expect(wrong == 0, "\(wrong) map values wrong")
    }
}
