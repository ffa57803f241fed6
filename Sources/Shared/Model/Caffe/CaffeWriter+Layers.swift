import TesseraCore

/// Each layer kind's Caffe parameters and blobs, with Caffe's defaults left unwritten
/// (stride 1, no pad, no dilation, one group) so the prototxt reads as a person
/// would write it.
extension CaffeWriter {
    static func convolution(_ c: Convolution, into lp: inout Caffe_LayerParameter) -> [Caffe_BlobProto] {
        lp.type = "Convolution"
        var p = Caffe_ConvolutionParameter()
        p.numOutput = UInt32(c.outputs)
        p.biasTerm = c.bias != nil
        if c.kernel.isSquare {
            p.kernelSize = [UInt32(c.kernel.h)]
        } else {
            p.kernelH = UInt32(c.kernel.h); p.kernelW = UInt32(c.kernel.w)
        }
        if c.stride != .one {
            if c.stride.isSquare {
                p.stride = [UInt32(c.stride.h)]
            } else {
                p.strideH = UInt32(c.stride.h); p.strideW = UInt32(c.stride.w)
            }
        }
        if c.pad != .zero {
            if c.pad.isSquare { p.pad = [UInt32(c.pad.h)] } else { p.padH = UInt32(c.pad.h); p.padW = UInt32(c.pad.w) }
        }
        if c.dilation != .one { p.dilation = [UInt32(c.dilation.h), UInt32(c.dilation.w)] }
        if c.group != 1 { p.group = UInt32(c.group) }
        lp.convolutionParam = p
        var blobs = [blob(c.weights, [c.outputs, c.inputsPerGroup, c.kernel.h, c.kernel.w])]
        if let b = c.bias { blobs.append(blob(b, [c.outputs])) }
        return blobs
    }

    /// Caffe's pooling has no dilation: a dilated window (made by the dense
    /// transform) cannot be written.
    static func pooling(_ pl: Pooling, layer: String, into lp: inout Caffe_LayerParameter) throws {
        lp.type = "Pooling"
        var p = Caffe_PoolingParameter()
        p.pool = pl.method == .max ? .max : .ave
        if pl.global {
            p.globalPooling = true
        } else {
            if pl.kernel.isSquare {
                p.kernelSize = UInt32(pl.kernel.h)
            } else {
                p.kernelH = UInt32(pl.kernel.h); p.kernelW = UInt32(pl.kernel.w)
            }
            if pl.stride.isSquare {
                p.stride = UInt32(pl.stride.h)
            } else {
                p.strideH = UInt32(pl.stride.h); p.strideW = UInt32(pl.stride.w)
            }
            if !pl.roundsUp { p.roundMode = .floor }
            if pl.pad != .zero {
                if pl.pad.isSquare {
                    p.pad = UInt32(pl.pad.h)
                } else {
                    p.padH = UInt32(pl.pad.h); p.padW = UInt32(pl.pad.w)
                }
            }
        }
        guard pl.dilation == .one else {
            throw ModelError(layer: layer, "a dilated pooling window cannot be written as a Caffe layer")
        }
        lp.poolingParam = p
    }

    static func innerProduct(_ ip: InnerProduct, into lp: inout Caffe_LayerParameter) -> [Caffe_BlobProto] {
        lp.type = "InnerProduct"
        var p = Caffe_InnerProductParameter()
        p.numOutput = UInt32(ip.outputs)
        p.biasTerm = ip.bias != nil
        lp.innerProductParam = p
        var blobs = [blob(ip.weights, [ip.outputs, ip.inputs])]
        if let b = ip.bias { blobs.append(blob(b, [ip.outputs])) }
        return blobs
    }

    static func lrn(_ l: LRN, into lp: inout Caffe_LayerParameter) {
        lp.type = "LRN"
        var p = Caffe_LRNParameter()
        p.localSize = UInt32(l.size)
        p.alpha = l.alpha
        p.beta = l.beta
        p.k = l.k
        if l.region == .withinChannel { p.normRegion = .withinChannel }
        lp.lrnParam = p
    }

    /// A BatchNorm layer (mean, variance, factor 1) and, when it has a scale or a bias,
    /// an in-place Scale layer after it, as BVLC Caffe splits them.
    static func batchNorm(
        _ bn: BatchNorm, of layer: Layer,
        into lp: Caffe_LayerParameter
    ) -> [(Caffe_LayerParameter, [Caffe_BlobProto])] {
        var lp = lp
        lp.type = "BatchNorm"
        var p = Caffe_BatchNormParameter()
        p.useGlobalStats = true
        p.eps = bn.eps
        lp.batchNormParam = p
        let c = bn.mean.count
        let blobs = [blob(bn.mean, [c]), blob(bn.variance, [c]), blob([1], [1])]
        guard bn.scale != nil || bn.bias != nil else { return [(lp, blobs)] }
        // BatchNorm writes its own top; the Scale layer works in place on it.
        let top = layer.tops.first ?? layer.name
        lp.top = [top]
        var sp = Caffe_LayerParameter()
        sp.name = layer.name + "-scale"
        sp.type = "Scale"
        sp.bottom = [top]
        sp.top = [top]
        var sparam = Caffe_ScaleParameter()
        sparam.biasTerm = true
        sp.scaleParam = sparam
        return [
            (lp, blobs),
            (
                sp,
                [
                    blob(bn.scale ?? [Float](repeating: 1, count: c), [c]),
                    blob(bn.bias ?? [Float](repeating: 0, count: c), [c]),
                ]
            ),
        ]
    }

    static func scale(_ s: Scale, into lp: inout Caffe_LayerParameter) -> [Caffe_BlobProto] {
        lp.type = "Scale"
        var p = Caffe_ScaleParameter()
        p.biasTerm = s.bias != nil
        lp.scaleParam = p
        var blobs = [blob(s.scale, [s.scale.count])]
        if let b = s.bias { blobs.append(blob(b, [b.count])) }
        return blobs
    }

    static func eltwise(_ e: Eltwise, into lp: inout Caffe_LayerParameter) {
        lp.type = "Eltwise"
        var p = Caffe_EltwiseParameter()
        switch e.operation {
        case .product: p.operation = .prod
        case .sum: p.operation = .sum
        case .max: p.operation = .max
        }
        p.coeff = e.coefficients
        lp.eltwiseParam = p
    }
}
