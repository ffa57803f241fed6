import TesseraCore
import TesseraModel

/// MAX and AVE pooling with Caffe's window rules, plus dilation (used by the
/// dense mode). Max clips the window to the input; average divides by the
/// window clipped to the padded input (Caffe's `pool_size`), summing only the
/// pixels inside the input. In a pass of a net that pads, the padded input is the
/// one of the whole-image pass (`counted`): a partial last window there divides by
/// its taps up to that input's padded end, wherever the tile's own input ends.
///
/// Separable: each output row first reduces the window's input rows to one
/// row (max or sum over ky), then reduces along x.
struct PoolingKernel {
    let pool: Pooling

    /// Per output position along one axis: the taps inside the input, and how
    /// many taps lie inside the padded input (AVE's divisor).
    struct Taps {
        var start: Int  // input index of tap 0
        var lo: Int, hi: Int  // valid taps lo..<hi
        var inPadded: Int
    }

    /// `counted`: the input positions AVE counts, when narrower than the padded input.
    static func taps(
        outputs: Int, input: Int, kernel: Int, stride: Int, pad: Int, dilation: Int, counted: Range<Int>? = nil
    ) -> [Taps] {
        let lower = max(-pad, counted?.lowerBound ?? -pad)
        let upper = max(lower, min(input + pad, counted?.upperBound ?? input + pad))
        return (0..<outputs).map { o in
            let start = o * stride - pad
            var lo = 0, hi = kernel
            while lo < hi && start + lo * dilation < 0 { lo += 1 }
            while hi > lo && start + (hi - 1) * dilation >= input { hi -= 1 }
            // At least 1: a window with no counted tap is outside the pass's real values (never read).
            let inPadded = (0..<kernel).filter { (lower..<upper).contains(start + $0 * dilation) }.count
            return Taps(start: start, lo: lo, hi: hi, inPadded: max(1, inPadded))
        }
    }

    /// `counted`: the whole-image pass's padded input in this input's pixels (`NetRunner` gives
    /// the layer's padding mask grown by its pad), or nil for the input's own.
    func forward(_ input: Tensor, into output: Tensor, threads: Int, counted: PixelRect? = nil) {
        let kernel = pool.global ? input.shape.spatial : pool.kernel
        let stride = pool.global ? Size2.one : pool.stride
        let pad = pool.global ? Size2.zero : pool.pad
        let dil = pool.global ? Size2.one : pool.dilation
        let (inW, outH, outW) = (input.w, output.h, output.w)
        let ys = Self.taps(
            outputs: outH, input: input.h, kernel: kernel.h, stride: stride.h, pad: pad.h, dilation: dil.h,
            counted: counted.map { $0.y..<($0.y + $0.height) })
        let xs = Self.taps(
            outputs: outW, input: inW, kernel: kernel.w, stride: stride.w, pad: pad.w, dilation: dil.w,
            counted: counted.map { $0.x..<($0.x + $0.width) })
        let isMax = pool.method == .max
        // Outputs ix0..<ix1: the run whose whole window lies inside the line (the
        // same for every row, so found once: scanning for it per row, and skipping
        // over it one output at a time, took over half of a dense pooling layer).
        var ix0 = 0
        while ix0 < outW && (xs[ix0].lo != 0 || xs[ix0].hi != kernel.w) { ix0 += 1 }
        var ix1 = ix0
        while ix1 < outW && xs[ix1].lo == 0 && xs[ix1].hi == kernel.w { ix1 += 1 }
        let edges = Array(0..<ix0) + Array(ix1..<outW)  // the outputs reduced one by one
        parallelRanges(input.c * outH, threads: threads, minimumPerThread: 8) { rows in
            let line = UnsafeMutablePointer<Float>.allocate(capacity: max(1, inW))
            defer { line.deallocate() }
            for row in rows {
                let ch = row / outH, oy = row % outH
                let src = input.plane(ch)
                let dst = output.plane(ch) + oy * outW
                let ty = ys[oy]
                // Reduce the window's rows into one line.
                let first = src + (ty.start + ty.lo * dil.h) * inW
                if ty.hi > ty.lo {
                    line.update(from: first, count: inW)
                } else {
                    line.update(repeating: isMax ? -Float.greatestFiniteMagnitude : 0, count: inW)
                }
                if ty.hi - ty.lo > 1 {
                    for ky in (ty.lo + 1)..<ty.hi {
                        let r = src + (ty.start + ky * dil.h) * inW
                        if isMax {
                            for x in 0..<inW { line[x] = r[x] > line[x] ? r[x] : line[x] }
                        } else {
                            for x in 0..<inW { line[x] += r[x] }
                        }
                    }
                }
                // Reduce along x: outputs whose whole window lies inside the
                // line, tap by tap over a run of outputs (vectorisable); the rest one by one.
                if ix1 > ix0 {
                    let base = line + xs[ix0].start
                    let (sx, dx) = (stride.w, dil.w)
                    let run = dst + ix0
                    let n = ix1 - ix0
                    if sx == 1 {  // dense mode: unit stride, so the loops vectorise
                        run.update(from: base, count: n)
                        for kx in 1..<max(1, kernel.w) {
                            let tap = base + kx * dx
                            if isMax {
                                for i in 0..<n { run[i] = tap[i] > run[i] ? tap[i] : run[i] }
                            } else {
                                for i in 0..<n { run[i] += tap[i] }
                            }
                        }
                    } else {
                        for i in 0..<n { run[i] = base[i * sx] }
                        for kx in 1..<max(1, kernel.w) {
                            let tap = base + kx * dx
                            if isMax {
                                for i in 0..<n { run[i] = max(run[i], tap[i * sx]) }
                            } else {
                                for i in 0..<n { run[i] += tap[i * sx] }
                            }
                        }
                    }
                    if !isMax {
                        for i in 0..<(ix1 - ix0) { run[i] /= Float(ty.inPadded * xs[ix0 + i].inPadded) }
                    }
                }
                for ox in edges {
                    let tx = xs[ox]
                    if isMax {
                        var m = -Float.greatestFiniteMagnitude
                        for kx in tx.lo..<tx.hi { m = max(m, line[tx.start + kx * dil.w]) }
                        dst[ox] = m
                    } else {
                        var s: Float = 0
                        for kx in tx.lo..<tx.hi { s += line[tx.start + kx * dil.w] }
                        dst[ox] = s / Float(ty.inPadded * tx.inPadded)
                    }
                }
            }
        }
    }
}
