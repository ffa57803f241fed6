import CKernels
import Foundation
import TesseraCore

/// The 1×1 layers that end a dense net (the seed's fc7 + ReLU, fc8, Softmax) run band
/// by band: a thread computes the first layer's outputs for a few rows into a buffer
/// that stays in cache, the second layer reads them from there, and Softmax finishes
/// those rows in place, so the first layer's 64-channel activations never make the
/// round trip to memory.
///
/// Bit-identical to running the layers one after another: each 1×1 direct convolution
/// computes an output as one FMA chain fixed by the layer (`forward1x1Rows`), and the
/// softmax of a pixel is the same operations in the same order (`softmaxInPlace`).
/// `TESSERA_FUSE_HEAD=0` turns it off (for comparison).
struct FusedHead {
    let first: ConvolutionKernel
    let second: ConvolutionKernel
    let softmax: Bool
    /// The layers it replaces: `start...end` of the net.
    let start: Int
    let end: Int

    static let enabled = ProcessInfo.processInfo.environment["TESSERA_FUSE_HEAD"] != "0"

    /// Pixels per band: 1024 keeps a band of 64 first-layer outputs in 256 KiB (L2).
    static let bandPixels = 1024

    func forward(_ input: Tensor, into output: Tensor, threads: Int) {
        let (h, w) = (input.h, input.w)
        let mid = first.conv.outputs
        let band = max(1, Self.bandPixels / max(1, w))
        let bands = (h + band - 1) / band
        let next = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        next.initialize(to: 0)
        defer { next.deallocate() }
        parallelRanges(min(threads, bands), threads: threads) { _ in
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: mid * band * w)
            defer { buffer.deallocate() }
            while true {
                let b = tessera_claim(next, 1)
                if b >= bands { break }
                let r0 = b * band, rows = min(h, r0 + band) - r0
                first.forward1x1Rows(
                    UnsafePointer(input.pointer + r0 * w), inPlane: h * w, into: buffer, outPlane: rows * w, width: w,
                    rows: rows)
                second.forward1x1Rows(
                    UnsafePointer(buffer), inPlane: rows * w, into: output.pointer + r0 * w, outPlane: h * w, width: w,
                    rows: rows)
                if softmax {
                    PointwiseKernels.softmaxInPlace(
                        output.pointer, channels: output.c, plane: h * w, pixels: r0 * w..<(r0 + rows) * w)
                }
            }
        }
    }
}
