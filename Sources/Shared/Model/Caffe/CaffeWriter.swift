import Foundation
import SwiftProtobuf
import TesseraCore

/// Writes a `Net` as Caffe files: a deploy prototxt (no weights) and a caffemodel
/// (the same layers with their blobs), readable by BVLC Caffe and by Tessera.
/// BatchNorm with scale/bias is written as BVLC does it: a BatchNorm layer
/// (mean, variance, factor 1) followed by an in-place Scale layer.
public enum CaffeWriter {
    /// The prototxt text and caffemodel bytes for `net` with an `input`×`input` input.
    public static func write(_ net: Net, input: Size2) throws -> (prototxt: String, caffemodel: Data) {
        var def = Caffe_NetParameter()
        def.name = net.name
        def.input = [net.inputName]
        var shape = Caffe_BlobShape()
        shape.dim = [1, Int64(net.inputChannels), Int64(input.h), Int64(input.w)]
        def.inputShape = [shape]
        var withBlobs = def
        for layer in net.layers {
            for (lp, blobs) in try parameters(layer) {
                def.layer.append(lp)
                var full = lp
                full.blobs = blobs
                withBlobs.layer.append(full)
            }
        }
        let text = expandingLists(def.textFormatString())
        return (text, try withBlobs.serializedBytes())
    }

    /// swift-protobuf prints repeated numbers as `dim: [1, 3, 32, 32]`; the protobuf 2
    /// text parser of older Caffe builds only reads one `dim: 1` per line.
    static func expandingLists(_ text: String) -> String {
        var out: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop(while: { $0 == " " })
            guard let colon = trimmed.range(of: ": ["), trimmed.hasSuffix("]"),
                  !trimmed.contains("\""), !trimmed.contains("{") else {
                out.append(line)
                continue
            }
            let indent = line.prefix(line.count - trimmed.count)
            let name = trimmed[..<colon.lowerBound]
            let values = trimmed[colon.upperBound..<trimmed.index(before: trimmed.endIndex)]
            for v in values.split(separator: ",") {
                out.append(Substring("\(indent)\(name): \(v.trimmingCharacters(in: .whitespaces))"))
            }
        }
        return out.joined(separator: "\n")
    }

    static func blob(_ data: [Float], _ dims: [Int]) -> Caffe_BlobProto {
        var b = Caffe_BlobProto()
        var s = Caffe_BlobShape()
        s.dim = dims.map { Int64($0) }
        b.shape = s
        b.data = data
        return b
    }

    static func parameters(_ layer: Layer) throws -> [(Caffe_LayerParameter, [Caffe_BlobProto])] {
        var lp = Caffe_LayerParameter()
        lp.name = layer.name
        lp.bottom = layer.bottoms
        lp.top = layer.tops
        var blobs: [Caffe_BlobProto] = []
        var extra: [(Caffe_LayerParameter, [Caffe_BlobProto])] = []
        func pairFields(_ v: Size2, set: (UInt32, UInt32) -> Void) { set(UInt32(v.h), UInt32(v.w)) }
        switch layer.op {
        case .convolution(let c):
            lp.type = "Convolution"
            var p = Caffe_ConvolutionParameter()
            p.numOutput = UInt32(c.outputs)
            p.biasTerm = c.bias != nil
            if c.kernel.isSquare { p.kernelSize = [UInt32(c.kernel.h)] } else { p.kernelH = UInt32(c.kernel.h); p.kernelW = UInt32(c.kernel.w) }
            if c.stride != .one {
                if c.stride.isSquare { p.stride = [UInt32(c.stride.h)] } else { p.strideH = UInt32(c.stride.h); p.strideW = UInt32(c.stride.w) }
            }
            if c.pad != .zero {
                if c.pad.isSquare { p.pad = [UInt32(c.pad.h)] } else { p.padH = UInt32(c.pad.h); p.padW = UInt32(c.pad.w) }
            }
            if c.dilation != .one { p.dilation = [UInt32(c.dilation.h), UInt32(c.dilation.w)] }
            if c.group != 1 { p.group = UInt32(c.group) }
            lp.convolutionParam = p
            blobs.append(blob(c.weights, [c.outputs, c.inputsPerGroup, c.kernel.h, c.kernel.w]))
            if let b = c.bias { blobs.append(blob(b, [c.outputs])) }
        case .pooling(let pl):
            lp.type = "Pooling"
            var p = Caffe_PoolingParameter()
            p.pool = pl.method == .max ? .max : .ave
            if pl.global {
                p.globalPooling = true
            } else {
                if pl.kernel.isSquare { p.kernelSize = UInt32(pl.kernel.h) } else { p.kernelH = UInt32(pl.kernel.h); p.kernelW = UInt32(pl.kernel.w) }
                if pl.stride.isSquare { p.stride = UInt32(pl.stride.h) } else { p.strideH = UInt32(pl.stride.h); p.strideW = UInt32(pl.stride.w) }
                if pl.pad != .zero {
                    if pl.pad.isSquare { p.pad = UInt32(pl.pad.h) } else { p.padH = UInt32(pl.pad.h); p.padW = UInt32(pl.pad.w) }
                }
            }
            guard pl.dilation == .one else {
                throw ModelError(layer: layer.name, "a dilated pooling window cannot be written as a Caffe layer")
            }
            lp.poolingParam = p
        case .innerProduct(let ip):
            lp.type = "InnerProduct"
            var p = Caffe_InnerProductParameter()
            p.numOutput = UInt32(ip.outputs)
            p.biasTerm = ip.bias != nil
            lp.innerProductParam = p
            blobs.append(blob(ip.weights, [ip.outputs, ip.inputs]))
            if let b = ip.bias { blobs.append(blob(b, [ip.outputs])) }
        case .relu(let slope):
            lp.type = "ReLU"
            if slope != 0 { var p = Caffe_ReLUParameter(); p.negativeSlope = slope; lp.reluParam = p }
        case .sigmoid:
            lp.type = "Sigmoid"
        case .tanh:
            lp.type = "TanH"
        case .lrn(let l):
            lp.type = "LRN"
            var p = Caffe_LRNParameter()
            p.localSize = UInt32(l.size)
            p.alpha = l.alpha
            p.beta = l.beta
            p.k = l.k
            if l.region == .withinChannel { p.normRegion = .withinChannel }
            lp.lrnParam = p
        case .batchNorm(let bn):
            lp.type = "BatchNorm"
            var p = Caffe_BatchNormParameter()
            p.useGlobalStats = true
            p.eps = bn.eps
            lp.batchNormParam = p
            let c = bn.mean.count
            blobs = [blob(bn.mean, [c]), blob(bn.variance, [c]), blob([1], [1])]
            if bn.scale != nil || bn.bias != nil {
                // BatchNorm writes its own top; the Scale layer works in place on it.
                let top = layer.tops.first ?? layer.name
                lp.top = [top]
                var sp = Caffe_LayerParameter()
                sp.name = layer.name + "-scale"
                sp.type = "Scale"
                sp.bottom = [top]
                sp.top = [top]
                var p = Caffe_ScaleParameter()
                p.biasTerm = true
                sp.scaleParam = p
                extra.append((sp, [blob(bn.scale ?? [Float](repeating: 1, count: c), [c]),
                                   blob(bn.bias ?? [Float](repeating: 0, count: c), [c])]))
            }
        case .scale(let s):
            lp.type = "Scale"
            var p = Caffe_ScaleParameter()
            p.biasTerm = s.bias != nil
            lp.scaleParam = p
            blobs.append(blob(s.scale, [s.scale.count]))
            if let b = s.bias { blobs.append(blob(b, [b.count])) }
        case .identity:
            lp.type = layer.tops.count > 1 ? "Split" : "Dropout"
        case .softmax:
            lp.type = "Softmax"
        case .concat:
            lp.type = "Concat"
        case .eltwise(let e):
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
        return [(lp, blobs)] + extra
    }
}
