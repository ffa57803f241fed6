import Foundation
import TesseraCore
import TesseraModel

/// A dilated convolution as an undilated one over "fragments" (space-to-batch): with
/// dilation (dh, dw), the padded input splits into dh·dw sub-sampled images, fragment
/// q = a·dw + b holding rows a, a + dh, … and columns b, b + dw, …; convolving each with
/// the same kernel, undilated and unpadded, gives the output pixels ≡ (a, b) mod (dh, dw).
/// One batched convolution of dh·dw small images replaces one dilated convolution, for
/// which cuDNN has few fast algorithms (the seed net's `fc6`, 6×6 dilated by 4, was 27 of
/// its 44 ms on an H100). The kernels `space_to_batch` and `batch_to_space` move the data;
/// the same products are summed, in an order cuDNN chooses for the shape.
struct FragmentGeometry: Equatable {
    let dilation: Size2
    let pad: Size2
    /// The padded input, rounded up to whole fragments, is `fragment` × dilation.
    let fragment: Size2
    /// Each fragment's convolution output; its rows/columns beyond the real output are dropped.
    let result: Size2
    var count: Int { dilation.h * dilation.w }

    /// Nil when the fragment path does not apply: stride other than 1, no dilation, or an empty output.
    init?(_ conv: Convolution, input: Shape) {
        guard conv.stride == .one, conv.dilation.h > 1 || conv.dilation.w > 1 else { return nil }
        let outH = OutputSize.convolution(
            input: input.h, kernel: conv.kernel.h, stride: 1, pad: conv.pad.h, dilation: conv.dilation.h)
        let outW = OutputSize.convolution(
            input: input.w, kernel: conv.kernel.w, stride: 1, pad: conv.pad.w, dilation: conv.dilation.w)
        guard outH > 0, outW > 0 else { return nil }
        func up(_ n: Int, _ d: Int) -> Int { (n + d - 1) / d }
        dilation = conv.dilation
        pad = conv.pad
        fragment = Size2(
            up(input.h + 2 * conv.pad.h, conv.dilation.h), up(input.w + 2 * conv.pad.w, conv.dilation.w))
        result = Size2(fragment.h - conv.kernel.h + 1, fragment.w - conv.kernel.w + 1)
        // Output row oy comes from fragment row oy / dh: the last one must exist.
        precondition((outH - 1) / dilation.h < result.h && (outW - 1) / dilation.w < result.w)
    }

    /// How dilated convolutions run on the GPU: `TESSERA_CUDA_DILATED=fragments` (the
    /// space-to-batch path) or `direct` (cuDNN's dilated convolution, the default until
    /// the fragment path is measured on a GPU: scripts/device-check.sh runs both).
    static let enabled = ProcessInfo.processInfo.environment["TESSERA_CUDA_DILATED"] == "fragments"
}
