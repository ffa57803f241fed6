import Foundation
import SwiftProtobuf
import TesseraCore

/// Writes a `Net` as Caffe files: a deploy prototxt (no weights) and a caffemodel
/// (the same layers with their blobs), readable by BVLC Caffe and by Tessera.
/// BatchNorm with scale/bias is written as BVLC does it: a BatchNorm layer
/// (mean, variance, factor 1) followed by an in-place Scale layer.
package enum CaffeWriter {
    /// The prototxt text and caffemodel bytes for `net` with an `input`×`input` input.
    package static func write(_ net: Net, input: Size2) throws -> (prototxt: String, caffemodel: Data) {
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
        var text = expandingLists(def.textFormatString())
        // A fully convolutional net's input is an image, not a patch: the patch size (which
        // places the classifier's window, and so the map) would otherwise be taken from the
        // receptive field on import, one pixel off when they differ (user audit). Caffe
        // ignores comments; `recordedPatchSize` reads this one.
        if let p = net.patchSize { text = "\(Self.patchSizeComment)\(p.h)x\(p.w)\n" + text }
        return (text, try withBlobs.serializedBytes())
    }

    /// The comment line in which a written prototxt records the patch size (HEIGHTxWIDTH).
    static let patchSizeComment = "# tessera.patch_size: "

    /// The patch size a prototxt written by Tessera records (a line before the definition), if any.
    static func recordedPatchSize(_ text: String, file: String) throws -> Size2? {
        guard let line = text.split(separator: "\n", maxSplits: 64).first(where: { $0.hasPrefix(patchSizeComment) })
        else { return nil }
        let value = line.dropFirst(patchSizeComment.count).trimmingCharacters(in: .whitespaces)
        let parts = value.split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, parts.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
            throw ModelError(.patchSize, file: file, "'\(line)': the recorded patch size is not HEIGHTxWIDTH")
        }
        return Size2(parts[0], parts[1])
    }

    /// swift-protobuf prints repeated numbers as `dim: [1, 3, 32, 32]`; the protobuf 2
    /// text parser of older Caffe builds only reads one `dim: 1` per line.
    static func expandingLists(_ text: String) -> String {
        var out: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop(while: { $0 == " " })
            guard let colon = trimmed.range(of: ": ["), trimmed.hasSuffix("]"),
                !trimmed.contains("\""), !trimmed.contains("{")
            else {
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

    /// The Caffe layer (and its blobs) for `layer`: one, or two for a BatchNorm
    /// with scale and bias (`batchNorm(_:of:into:)`).
    static func parameters(_ layer: Layer) throws -> [(Caffe_LayerParameter, [Caffe_BlobProto])] {
        var lp = Caffe_LayerParameter()
        lp.name = layer.name
        lp.bottom = layer.bottoms
        lp.top = layer.tops
        var blobs: [Caffe_BlobProto] = []
        switch layer.op {
        case .convolution(let c):
            blobs = convolution(c, into: &lp)
        case .pooling(let pl):
            try pooling(pl, layer: layer.name, into: &lp)
        case .innerProduct(let ip):
            blobs = innerProduct(ip, into: &lp)
        case .relu(let slope):
            lp.type = "ReLU"
            if slope != 0 { var p = Caffe_ReLUParameter(); p.negativeSlope = slope; lp.reluParam = p }
        case .sigmoid:
            lp.type = "Sigmoid"
        case .tanh:
            lp.type = "TanH"
        case .elu(let alpha):
            lp.type = "ELU"
            if alpha != 1 { var p = Caffe_ELUParameter(); p.alpha = alpha; lp.eluParam = p }
        case .softplus:
            lp.type = "BNLL"
        case .lrn(let l):
            lrn(l, into: &lp)
        case .batchNorm(let bn):
            return batchNorm(bn, of: layer, into: lp)
        case .scale(let s):
            blobs = scale(s, into: &lp)
        case .identity:
            lp.type = layer.tops.count > 1 ? "Split" : "Dropout"
        case .softmax:
            lp.type = "Softmax"
        case .concat:
            lp.type = "Concat"
        case .eltwise(let e):
            eltwise(e, into: &lp)
        }
        return [(lp, blobs)]
    }
}
