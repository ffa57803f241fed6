/// MAX and AVE pooling with Caffe's window rules, plus dilation (used by the
/// dense mode). Max clips the window to the input; average divides by the
/// window clipped to the padded input (Caffe's `pool_size`), summing only the
/// pixels inside the input.
struct PoolingKernel {
    let pool: Pooling

    func forward(_ input: Tensor, into output: Tensor, threads: Int) {
        let kernel = pool.global ? input.shape.spatial : pool.kernel
        let stride = pool.global ? Size2.one : pool.stride
        let pad = pool.global ? Size2.zero : pool.pad
        let dil = pool.global ? Size2.one : pool.dilation
        let (inH, inW, outH, outW) = (input.h, input.w, output.h, output.w)
        let isMax = pool.method == .max
        parallelRanges(input.c * outH, threads: threads, minimumPerThread: 8) { rows in
            for row in rows {
                let ch = row / outH, oy = row % outH
                let src = input.plane(ch)
                let dst = output.plane(ch) + oy * outW
                let hs = oy * stride.h - pad.h
                // Window taps inside the input, and inside the padded input (AVE divisor).
                let tapsH = (0..<kernel.h).filter { hs + $0 * dil.h >= 0 && hs + $0 * dil.h < inH }
                let sizeH = (0..<kernel.h).filter { hs + $0 * dil.h < inH + pad.h }.count
                for ox in 0..<outW {
                    let ws = ox * stride.w - pad.w
                    var lo = 0, hi = kernel.w
                    while lo < hi && ws + lo * dil.w < 0 { lo += 1 }
                    while hi > lo && ws + (hi - 1) * dil.w >= inW { hi -= 1 }
                    if isMax {
                        var m = -Float.greatestFiniteMagnitude
                        for ky in tapsH {
                            let r = src + (hs + ky * dil.h) * inW + ws
                            for kx in lo..<hi { m = max(m, r[kx * dil.w]) }
                        }
                        dst[ox] = m
                    } else {
                        var sizeW = 0
                        for kx in 0..<kernel.w where ws + kx * dil.w < inW + pad.w { sizeW += 1 }
                        var s: Float = 0
                        for ky in tapsH {
                            let r = src + (hs + ky * dil.h) * inW + ws
                            for kx in lo..<hi { s += r[kx * dil.w] }
                        }
                        dst[ox] = s / Float(sizeH * sizeW)
                    }
                }
            }
        }
    }
}
