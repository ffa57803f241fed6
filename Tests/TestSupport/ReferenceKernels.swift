import Foundation
import TesseraCore
import TesseraEngine
import TesseraModel

/// Slow, obviously-correct loops that the engine's kernels are checked against
/// (in the spirit of Caffe's own layer tests).
enum Reference {
    static func convolution(_ x: Tensor, _ conv: Convolution) -> Tensor {
        let oh = OutputSize.convolution(
            input: x.h, kernel: conv.kernel.h, stride: conv.stride.h,
            pad: conv.pad.h, dilation: conv.dilation.h)
        let ow = OutputSize.convolution(
            input: x.w, kernel: conv.kernel.w, stride: conv.stride.w,
            pad: conv.pad.w, dilation: conv.dilation.w)
        let out = Tensor(Shape(c: conv.outputs, h: oh, w: ow))
        let cg = x.c / conv.group, mg = conv.outputs / conv.group
        for m in 0..<conv.outputs {
            let g = m / mg
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var s = Double(conv.bias?[m] ?? 0)
                    for ci in 0..<cg {
                        for ky in 0..<conv.kernel.h {
                            for kx in 0..<conv.kernel.w {
                                let iy = oy * conv.stride.h + ky * conv.dilation.h - conv.pad.h
                                let ix = ox * conv.stride.w + kx * conv.dilation.w - conv.pad.w
                                guard iy >= 0, iy < x.h, ix >= 0, ix < x.w else { continue }
                                let wIndex = ((m * cg + ci) * conv.kernel.h + ky) * conv.kernel.w + kx
                                s += Double(conv.weights[wIndex]) * Double(x[g * cg + ci, iy, ix])
                            }
                        }
                    }
                    out[m, oy, ox] = Float(s)
                }
            }
        }
        return out
    }

    /// Caffe's pooling loops (pooling_layer.cpp semantics), extended with dilation.
    static func pooling(_ x: Tensor, _ p: Pooling) -> Tensor {
        let oh = OutputSize.pooling(
            input: x.h, kernel: p.kernel.h, stride: p.stride.h, pad: p.pad.h,
            dilation: p.dilation.h)
        let ow = OutputSize.pooling(
            input: x.w, kernel: p.kernel.w, stride: p.stride.w, pad: p.pad.w,
            dilation: p.dilation.w)
        let out = Tensor(Shape(c: x.c, h: oh, w: ow))
        for c in 0..<x.c {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var taps: [Float] = []
                    var windowInPadded = 0
                    for ky in 0..<p.kernel.h {
                        for kx in 0..<p.kernel.w {
                            let iy = oy * p.stride.h - p.pad.h + ky * p.dilation.h
                            let ix = ox * p.stride.w - p.pad.w + kx * p.dilation.w
                            if iy < x.h + p.pad.h, ix < x.w + p.pad.w { windowInPadded += 1 }
                            if iy >= 0, iy < x.h, ix >= 0, ix < x.w { taps.append(x[c, iy, ix]) }
                        }
                    }
                    out[c, oy, ox] =
                        p.method == .max
                        ? taps.max()! : taps.reduce(0, +) / Float(windowInPadded)
                }
            }
        }
        return out
    }

    static func lrnAcross(_ x: Tensor, _ l: LRN) -> Tensor {
        let out = Tensor(x.shape)
        let pre = (l.size - 1) / 2
        for c in 0..<x.c {
            for y in 0..<x.h {
                for xx in 0..<x.w {
                    var s: Double = 0
                    for j in (c - pre)..<(c - pre + l.size) where j >= 0 && j < x.c {
                        s += Double(x[j, y, xx]) * Double(x[j, y, xx])
                    }
                    let scale = Double(l.k) + Double(l.alpha) / Double(l.size) * s
                    out[c, y, xx] = Float(Double(x[c, y, xx]) * pow(scale, -Double(l.beta)))
                }
            }
        }
        return out
    }

    static func random(_ shape: Shape, seed: UInt64, scale: Float = 1) -> Tensor {
        var rng = SplitMix64(seed: seed)
        return Tensor(shape, values: (0..<shape.count).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale })
    }

    /// The first `size` rows and columns of every channel of `t`, C order (the map part of a whole-image pass).
    static func topLeft(_ t: Tensor, _ size: Size2) -> [Float] {
        precondition(t.h >= size.h && t.w >= size.w, "\(t.shape) is smaller than \(size)")
        var out: [Float] = []
        out.reserveCapacity(t.c * size.h * size.w)
        for c in 0..<t.c {
            for y in 0..<size.h { out += t.values[(c * t.h + y) * t.w..<(c * t.h + y) * t.w + size.w] }
        }
        return out
    }

    static func randomValues(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale }
    }

    static func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
        precondition(a.shape == b.shape, "shapes differ: \(a.shape) vs \(b.shape)")
        var m: Float = 0
        for i in 0..<a.count { m = max(m, abs(a.storage[i] - b.storage[i])) }
        return m
    }
}
