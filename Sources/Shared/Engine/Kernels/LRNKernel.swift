import CKernels
import Foundation
import TesseraCore
import TesseraModel

/// Local response normalisation, as Caffe computes it.
/// ACROSS_CHANNELS: `y = x · (k + α/n · Σ x²)^-β` over `n` neighbouring channels.
/// WITHIN_CHANNEL:  `y = x · (1 + α · mean(x²))^-β` over an `n×n` window
/// (zero outside the input, divisor n²), sampled with `dilation` in dense mode.
struct LRNKernel {
    let lrn: LRN
    var dilation: Size2 = .one

    func forward(_ input: Tensor, into output: Tensor, threads: Int) {
        switch lrn.region {
        case .acrossChannels: across(input, output, threads: threads)
        case .withinChannel: within(input, output, threads: threads)
        }
    }

    /// x^-β, with a fast exact-enough path for Caffe's usual β = 0.75.
    @inline(__always) private func powNegBeta(_ v: Float) -> Float {
        if lrn.beta == 0.75 {
            let r = v.squareRoot()
            return 1 / (r * r.squareRoot())
        }
        return Foundation.pow(v, -lrn.beta)
    }

    private func across(_ input: Tensor, _ output: Tensor, threads: Int) {
        let c = input.c, plane = input.planeSize
        let lo = (lrn.size - 1) / 2, hi = lrn.size - 1 - lo
        let alphaOverN = lrn.alpha / Float(lrn.size)
        let block = 512
        // Parallel over pixel ranges, in cache-sized blocks. As Caffe does, the
        // window sum of squares slides over the channels: add the square that
        // enters, subtract the one that leaves.
        parallelRanges(plane, threads: threads, minimumPerThread: block) { pixels in
            let squares = UnsafeMutablePointer<Float>.allocate(capacity: block * c)
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: block)
            defer { squares.deallocate(); acc.deallocate() }
            var p0 = pixels.lowerBound
            while p0 < pixels.upperBound {
                let n = min(block, pixels.upperBound - p0)
                for ch in 0..<c {
                    let src = input.plane(ch) + p0, sq = squares + ch * block
                    for i in 0..<n { sq[i] = src[i] * src[i] }
                }
                acc.update(repeating: 0, count: n)
                for j in 0..<min(c, hi) {
                    let sq = squares + j * block
                    for i in 0..<n { acc[i] += sq[i] }
                }
                for ch in 0..<c {
                    if ch + hi < c {
                        let sq = squares + (ch + hi) * block
                        for i in 0..<n { acc[i] += sq[i] }
                    }
                    if ch - lo - 1 >= 0 {
                        let sq = squares + (ch - lo - 1) * block
                        for i in 0..<n { acc[i] -= sq[i] }
                    }
                    let src = input.plane(ch) + p0, dst = output.plane(ch) + p0
                    if lrn.beta == 0.75 {  // the usual β: vectorised in C, same bits
                        tessera_lrn_scale_beta075(src, acc, dst, n, lrn.k, alphaOverN)
                    } else {
                        for i in 0..<n { dst[i] = src[i] * powNegBeta(lrn.k + alphaOverN * max(0, acc[i])) }
                    }
                }
                p0 += n
            }
        }
    }

    private func within(_ input: Tensor, _ output: Tensor, threads: Int) {
        let (h, w) = (input.h, input.w)
        let half = (lrn.size - 1) / 2
        let alphaOverN2 = lrn.alpha / Float(lrn.size * lrn.size)
        parallelRanges(input.c, threads: threads) { channels in
            for ch in channels {
                let src = input.plane(ch), dst = output.plane(ch)
                for y in 0..<h {
                    for x in 0..<w {
                        var s: Float = 0
                        for ky in -half...half {
                            let iy = y + ky * dilation.h
                            if iy < 0 || iy >= h { continue }
                            for kx in -half...half {
                                let ix = x + kx * dilation.w
                                if ix < 0 || ix >= w { continue }
                                let v = src[iy * w + ix]
                                s += v * v
                            }
                        }
                        dst[y * w + x] = src[y * w + x] * powNegBeta(1 + alphaOverN2 * s)
                    }
                }
            }
        }
    }
}
