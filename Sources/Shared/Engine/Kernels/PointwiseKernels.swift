import Foundation
import TesseraModel

/// Layers that act on each value, or on each pixel across channels, without
/// looking at neighbours. All run in parallel over channel planes or pixels.
package enum PointwiseKernels {
    /// `f` applied to every value, per channel plane: `f(channel, src, dst, count)`.
    static func perPlane(
        _ input: Tensor, _ output: Tensor, threads: Int,
        _ f: (Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
    ) {
        let plane = input.planeSize
        // Split large planes too, so a 2-channel map still uses every thread.
        let pieces = max(1, min(16, plane / 65536))
        parallelRanges(input.c * pieces, threads: threads) { items in
            for item in items {
                let ch = item / pieces, piece = item % pieces
                let lo = plane * piece / pieces, hi = plane * (piece + 1) / pieces
                f(ch, input.plane(ch) + lo, output.plane(ch) + lo, hi - lo)
            }
        }
    }

    static func relu(_ input: Tensor, _ output: Tensor, slope: Float, threads: Int) {
        perPlane(input, output, threads: threads) { _, s, d, n in
            if slope == 0 {
                for i in 0..<n { d[i] = max(s[i], 0) }
            } else {
                for i in 0..<n { d[i] = s[i] > 0 ? s[i] : s[i] * slope }
            }
        }
    }

    static func sigmoid(_ input: Tensor, _ output: Tensor, threads: Int) {
        perPlane(input, output, threads: threads) { _, s, d, n in
            for i in 0..<n { d[i] = 1 / (1 + Foundation.exp(-s[i])) }
        }
    }

    static func tanh(_ input: Tensor, _ output: Tensor, threads: Int) {
        perPlane(input, output, threads: threads) { _, s, d, n in
            for i in 0..<n { d[i] = Foundation.tanh(s[i]) }
        }
    }

    /// `x` for x > 0, `alpha·(eˣ − 1)` otherwise (`expm1`: exact near 0, where `exp(x) − 1` loses digits).
    static func elu(_ input: Tensor, _ output: Tensor, alpha: Float, threads: Int) {
        perPlane(input, output, threads: threads) { _, s, d, n in
            for i in 0..<n { d[i] = s[i] > 0 ? s[i] : alpha * Foundation.expm1(s[i]) }
        }
    }

    /// `log(1 + eˣ)`, as `max(x, 0) + log1p(e^−|x|)`: no overflow for large x, no lost digits for very negative x.
    static func softplus(_ input: Tensor, _ output: Tensor, threads: Int) {
        perPlane(input, output, threads: threads) { _, s, d, n in
            for i in 0..<n { d[i] = max(s[i], 0) + Foundation.log1p(Foundation.exp(-abs(s[i]))) }
        }
    }

    /// `y = x · a[c] + b[c]`: BatchNorm and Scale reduce to this.
    static func affine(_ input: Tensor, _ output: Tensor, a: [Float], b: [Float], threads: Int) {
        perPlane(input, output, threads: threads) { ch, s, d, n in
            let (m, k) = (a[ch], b[ch])
            for i in 0..<n { d[i] = s[i] * m + k }
        }
    }

    /// BatchNorm's per-channel multiplier and offset.
    package static func batchNormCoefficients(_ bn: BatchNorm) -> (a: [Float], b: [Float]) {
        var a = [Float](repeating: 1, count: bn.mean.count), b = a
        for c in a.indices {
            let inv = 1 / (bn.variance[c] + bn.eps).squareRoot()
            let g = bn.scale?[c] ?? 1, beta = bn.bias?[c] ?? 0
            a[c] = inv * g
            b[c] = beta - bn.mean[c] * inv * g
        }
        return (a, b)
    }

    /// Softmax over channels at every pixel (max subtracted for stability).
    static func softmax(_ input: Tensor, _ output: Tensor, threads: Int) {
        let c = input.c, plane = input.planeSize
        parallelRanges(plane, threads: threads, minimumPerThread: 4096) { pixels in
            let block = 1024
            let mx = UnsafeMutablePointer<Float>.allocate(capacity: block)
            let sum = UnsafeMutablePointer<Float>.allocate(capacity: block)
            defer { mx.deallocate(); sum.deallocate() }
            var p0 = pixels.lowerBound
            while p0 < pixels.upperBound {
                let n = min(block, pixels.upperBound - p0)
                mx.update(from: input.plane(0) + p0, count: n)
                for ch in 1..<max(1, c) {
                    let s = input.plane(ch) + p0
                    for i in 0..<n { mx[i] = max(mx[i], s[i]) }
                }
                sum.update(repeating: 0, count: n)
                for ch in 0..<c {
                    let s = input.plane(ch) + p0, d = output.plane(ch) + p0
                    for i in 0..<n {
                        let e = Foundation.exp(s[i] - mx[i])
                        d[i] = e
                        sum[i] += e
                    }
                }
                for ch in 0..<c {
                    let d = output.plane(ch) + p0
                    for i in 0..<n { d[i] /= sum[i] }
                }
                p0 += n
            }
        }
    }

    /// Softmax over the `c` channel planes (`plane` floats apart from `data`) of pixels
    /// [p0, p1), in place: per pixel the same operations in the same order as `softmax`.
    static func softmaxInPlace(_ data: UnsafeMutablePointer<Float>, channels c: Int, plane: Int, pixels: Range<Int>) {
        let block = 1024
        let mx = UnsafeMutablePointer<Float>.allocate(capacity: block)
        let sum = UnsafeMutablePointer<Float>.allocate(capacity: block)
        defer { mx.deallocate(); sum.deallocate() }
        var p0 = pixels.lowerBound
        while p0 < pixels.upperBound {
            let n = min(block, pixels.upperBound - p0)
            mx.update(from: data + p0, count: n)
            for ch in 1..<max(1, c) {
                let s = data + ch * plane + p0
                for i in 0..<n { mx[i] = max(mx[i], s[i]) }
            }
            sum.update(repeating: 0, count: n)
            for ch in 0..<c {
                let d = data + ch * plane + p0
                for i in 0..<n {
                    let e = Foundation.exp(d[i] - mx[i])
                    d[i] = e
                    sum[i] += e
                }
            }
            for ch in 0..<c {
                let d = data + ch * plane + p0
                for i in 0..<n { d[i] /= sum[i] }
            }
            p0 += n
        }
    }

    /// Channel concatenation: the inputs' planes one after another.
    static func concat(_ inputs: [Tensor], _ output: Tensor) {
        var offset = 0
        for t in inputs {
            (output.pointer + offset).update(from: t.pointer, count: t.count)
            offset += t.count
        }
    }

    static func eltwise(_ inputs: [Tensor], _ output: Tensor, op: Eltwise, threads: Int) {
        let coefficients = op.coefficients.isEmpty ? [Float](repeating: 1, count: inputs.count) : op.coefficients
        perPlane(inputs[0], output, threads: threads) { ch, _, d, n in
            let offset = d - output.plane(ch)
            let first = inputs[0].plane(ch) + offset
            switch op.operation {
            case .sum:
                for i in 0..<n { d[i] = coefficients[0] * first[i] }
                for (t, k) in zip(inputs.dropFirst(), coefficients.dropFirst()) {
                    let s = t.plane(ch) + offset
                    for i in 0..<n { d[i] += k * s[i] }
                }
            case .product:
                d.update(from: first, count: n)
                for t in inputs.dropFirst() {
                    let s = t.plane(ch) + offset
                    for i in 0..<n { d[i] *= s[i] }
                }
            case .max:
                d.update(from: first, count: n)
                for t in inputs.dropFirst() {
                    let s = t.plane(ch) + offset
                    for i in 0..<n { d[i] = max(d[i], s[i]) }
                }
            }
        }
    }

    /// InnerProduct on one image: `y = W · vec(x) + b`.
    static func innerProduct(_ input: Tensor, _ output: Tensor, ip: InnerProduct, blas: BLAS) {
        ip.weights.withUnsafeBufferPointer { w in
            blas.sgemm(
                m: ip.outputs, n: 1, k: ip.inputs, a: w.baseAddress!, lda: ip.inputs,
                b: input.pointer, ldb: 1, c: output.pointer, ldc: 1)
        }
        if let bias = ip.bias {
            for i in 0..<ip.outputs { output.pointer[i] += bias[i] }
        }
    }
}
