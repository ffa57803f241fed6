import TesseraCore
import TesseraModel

/// The patch classifier run on a batch of patches per call: what makes `naive`
/// (the exact map of a net that pads) run at the speed of the direct kernels.
///
/// Classifying one 32×32 patch at a time sends every padded convolution through
/// im2col + sgemm on a tiny matrix (~2 % of the sgemm peak). Here each stride-1
/// convolution runs once per batch, on a *strip*: the batch's patches side by
/// side in one tensor, each framed by its layer's zero padding (`StripConvolution`),
/// so one call of the direct kernel (`ConvolutionKernel`, stride 1, no padding)
/// covers every patch. Outputs whose window straddles two patches are computed and
/// never read. Everything between two such convolutions (pooling, LRN, ReLU,
/// strided convolutions, the InnerProduct head, Softmax) runs patch by patch
/// (`PatchSegment`), through the same `NetRunner` kernels as a single patch.
///
/// Exactness: the direct kernel computes every output as one FMA chain in a fixed
/// tap order whatever its column, and the zero frame makes a padded tap add
/// `w · 0` (exactly nothing), so a patch's values do not depend on its position in
/// the batch, on the batch's size, or on the tiling: tiled `naive` maps equal untiled
/// ones bit for bit. Against the single-patch classifier (im2col + sgemm, another
/// summation order) they differ by float32 rounding only.
///
/// Nets that are not a single chain of layers, or a process without a direct kernel,
/// get no batched classifier (`init` returns nil) and `naive` runs patch by patch.
package final class BatchedClassifier: @unchecked Sendable {
    /// Patches per batch. On a Zen 4 core 8–16 ran best for the seed's nuclei net (66–70
    /// GFLOP per CPU-second, against 65 at 32 and 61 at 64): a batch's first activations
    /// (its 32×32×32 conv1 outputs) stay in L2.
    package let batch: Int
    /// Class probabilities per patch.
    package let classes: Int
    /// The patch (input) size.
    package let patch: Size2
    /// `convolutions.count + 1` segments: before the first strip convolution, between
    /// each two, after the last.
    let segments: [PatchSegment]
    let convolutions: [StripConvolution]
    private let blas: BLAS

    /// The batched form of `net` on `patch`-sized inputs, or nil when it has none
    /// (see the type's documentation).
    package init?(net: Net, patch: Size2, batch: Int = 8, packing: PackedWeights? = nil) throws {
        guard DirectConvolutionKernel.selected != nil, batch >= 1 else { return nil }
        // A chain: every layer reads the blob the one before it wrote.
        var current = net.inputName
        for layer in net.layers {
            guard layer.bottoms == [current], layer.tops.count == 1 else { return nil }
            current = layer.tops[0]
        }
        // A net that does not fit the patch fails where `naive` checks shapes, as before.
        guard let shapes = try? net.shapes(input: patch).layers else { return nil }
        var segments: [PatchSegment] = [], convolutions: [StripConvolution] = []
        var shape = Shape(c: net.inputChannels, h: patch.h, w: patch.w)
        var pending: [Layer] = [], pendingInput = shape, pendingName = net.inputName
        func closeSegment() throws {
            let sub = Net(
                name: "\(net.name) segment \(segments.count)", inputName: pendingName,
                inputChannels: pendingInput.c, patchSize: pendingInput.spatial, layers: pending)
            segments.append(
                PatchSegment(
                    runner: pending.isEmpty ? nil : try NetRunner(net: sub, packing: packing), input: pendingInput,
                    output: shape))
        }
        var i = 0
        while i < net.layers.count {
            let layer = net.layers[i]
            if case .convolution(let conv) = layer.op,
                let strip = StripConvolution(
                    conv, input: shape, output: shapes[i], fusedReLUSlope: NetRunner.fusedReLU(after: i, in: net),
                    packing: packing)
            {
                try closeSegment()
                convolutions.append(strip)
                i += strip.kernel.fusedReLUSlope == nil ? 1 : 2
                shape = shapes[i - 1]
                pending = []
                pendingInput = shape
                pendingName = net.layers[i - 1].tops[0]
                continue
            }
            pending.append(layer)
            shape = shapes[i]
            i += 1
        }
        try closeSegment()
        guard !convolutions.isEmpty, shape.h == 1, shape.w == 1 else { return nil }
        self.batch = batch
        self.patch = patch
        self.segments = segments
        self.convolutions = convolutions
        classes = shape.c
        blas = try BLAS.get()
    }

    /// Buffers for one thread, reused by every batch it classifies.
    package func workspace() -> Workspace { Workspace(self) }

    /// Classifies the patches of `pixels` (at most `batch`): pixel `p` of a map `width`
    /// wide is the patch whose top-left corner is input pixel `(p / width, p % width)`;
    /// its probabilities go to `out[c, p / width, p % width]` (`out` is `classes × · × width`).
    package func classify(_ input: Tensor, pixels: Range<Int>, width: Int, into out: Tensor, workspace ws: Workspace) {
        precondition(pixels.count <= batch && input.c == segments[0].input.c)
        let n = pixels.count
        guard n > 0 else { return }
        let strips = ws.strips(n)
        for (s, segment) in segments.enumerated() {
            let patchIn = ws.patches[s]
            for (j, pixel) in pixels.enumerated() {
                let (y, x) = (pixel / width, pixel % width)
                if s == 0 && segment.runner == nil {
                    // The patch goes from the input straight into the first strip.
                    convolutions[0].writePatch(
                        j, from: input.pointer + y * input.w + x, rowStride: input.w, planeStride: input.planeSize,
                        into: strips[0].input)
                    continue
                }
                if s == 0 {
                    for c in 0..<patchIn.c {
                        for r in 0..<patchIn.h {
                            (patchIn.plane(c) + r * patchIn.w).update(
                                from: input.plane(c) + (y + r) * input.w + x, count: patchIn.w)
                        }
                    }
                } else {
                    convolutions[s - 1].readPatch(j, from: strips[s - 1].output, into: patchIn)
                }
                let result: Tensor
                if let runner = segment.runner {
                    guard let r = try? runner.forward(patchIn, threads: 1) else {
                        preconditionFailure("a segment's forward failed after its shapes were checked")
                    }
                    result = r
                } else {
                    result = patchIn
                }
                if s < convolutions.count {
                    convolutions[s].writePatch(
                        j, from: result.pointer, rowStride: result.w, planeStride: result.planeSize,
                        into: strips[s].input)
                } else {
                    for c in 0..<classes { out.plane(c)[pixel] = result.pointer[c] }
                }
            }
            if s < convolutions.count {
                convolutions[s].kernel.forward(
                    strips[s].input, into: strips[s].output, origin: .zero, threads: 1, blas: blas)
            }
        }
    }

    /// One thread's buffers: per segment the contiguous input of one patch, per batch
    /// size the strips of every convolution (their zero frames written once).
    package final class Workspace {
        private let classifier: BatchedClassifier
        let patches: [Tensor]
        private var byCount: [Int: [(input: Tensor, output: Tensor)]] = [:]

        init(_ classifier: BatchedClassifier) {
            self.classifier = classifier
            patches = classifier.segments.map { Tensor(uninitialized: $0.input) }
        }

        func strips(_ n: Int) -> [(input: Tensor, output: Tensor)] {
            if let s = byCount[n] { return s }
            let s = classifier.convolutions.map {
                (input: Tensor($0.inputShape(batch: n)), output: Tensor(uninitialized: $0.outputShape(batch: n)))
            }
            byCount[n] = s
            return s
        }
    }
}

/// Layers run patch by patch: a sub-net of the classifier (nil when there are none).
struct PatchSegment {
    let runner: NetRunner?
    let input: Shape
    let output: Shape
}

/// A stride-1 convolution over a strip of patches. The strip holds patch `j`'s
/// `c × h × w` values at rows `pad.h…`, columns `pad.w + j·pitch…` (`pitch = w + pad.w`);
/// everything else is zero, so each patch sees `pad` zeros on every side (between two
/// patches the same `pad.w` zero columns serve both). The unpadded convolution of the
/// strip then holds patch `j`'s output at rows `0…`, columns `j·pitch…`.
struct StripConvolution {
    let kernel: ConvolutionKernel
    let input: Shape
    let output: Shape
    let pad: Size2

    /// Nil when the layer cannot run on a strip: a stride, padding wider than the
    /// kernel's reach (an output would overlap the next patch), or no direct kernel.
    init?(_ conv: Convolution, input: Shape, output: Shape, fusedReLUSlope: Float?, packing: PackedWeights? = nil) {
        let reach = Size2((conv.kernel.h - 1) * conv.dilation.h, (conv.kernel.w - 1) * conv.dilation.w)
        guard conv.stride == .one, conv.pad.h <= reach.h, conv.pad.w <= reach.w else { return nil }
        var unpadded = conv
        unpadded.pad = .zero
        let kernel = ConvolutionKernel(conv: unpadded, fusedReLUSlope: fusedReLUSlope, packing: packing)
        guard kernel.isDirect,
            output
                == Shape(
                    c: conv.outputs, h: input.h + 2 * conv.pad.h - reach.h, w: input.w + 2 * conv.pad.w - reach.w)
        else { return nil }
        self.kernel = kernel
        self.input = input
        self.output = output
        pad = conv.pad
    }

    var pitch: Int { input.w + pad.w }

    func inputShape(batch n: Int) -> Shape { Shape(c: input.c, h: input.h + 2 * pad.h, w: n * pitch + pad.w) }
    func outputShape(batch n: Int) -> Shape { Shape(c: output.c, h: output.h, w: (n - 1) * pitch + output.w) }

    /// Writes patch `j`'s input values (`input`-shaped, rows `rowStride` and planes
    /// `planeStride` apart from `src`) into its place in the strip.
    func writePatch(
        _ j: Int, from src: UnsafeMutablePointer<Float>, rowStride: Int, planeStride: Int, into strip: Tensor
    ) {
        let x0 = pad.w + j * pitch
        for c in 0..<input.c {
            for r in 0..<input.h {
                (strip.plane(c) + (pad.h + r) * strip.w + x0).update(
                    from: src + c * planeStride + r * rowStride, count: input.w)
            }
        }
    }

    /// Copies patch `j`'s outputs out of the convolved strip into `t` (`output`-shaped).
    func readPatch(_ j: Int, from strip: Tensor, into t: Tensor) {
        let x0 = j * pitch
        for c in 0..<output.c {
            for r in 0..<output.h {
                (t.plane(c) + r * output.w).update(from: strip.plane(c) + r * strip.w + x0, count: output.w)
            }
        }
    }
}
