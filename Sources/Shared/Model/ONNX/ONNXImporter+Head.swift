import Foundation
import TesseraCore

/// The classifier head: Flatten (or Reshape to [N, -1]) + Gemm/MatMul as an inner
/// product, and the Softmax over the classes.
extension ONNXImporter {
    // MARK: - The classifier head

    mutating func addFlatten(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        let shape = shapes[x]!
        if n.node.opType == "Flatten" {
            let axis = n.int("axis") ?? 1
            let isFlat = flat.contains(n.node.input[0])
            guard axis == 1 || (!isFlat && axis == -3) || (isFlat && axis == -1) else {
                throw n.fail(
                    .unsupported, "Flatten at axis \(axis): Tessera flattens each image's C×H×W (axis 1) only")
            }
        } else {
            let target = try constant(n, 1)
            let t = target.ints ?? []
            let features = Int64(shape.count)
            let ok = t.count == 2 && ([0, 1, -1].contains(t[0]) && [-1, features].contains(t[1]))
            guard ok, !(t[0] == -1 && t[1] == -1) else {
                throw n.fail(
                    .unsupported,
                    "Reshape to \(t) of a \(shape) activation: Tessera reshapes only to flatten each image "
                        + "(shape [N, -1] or [N, \(features)])")
            }
        }
        try addAlias(n, x, flatten: true)
    }

    mutating func addInnerProduct(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        let shape = shapes[x]!
        guard flat.contains(n.node.input[0]) || shape.spatial == .one else {
            throw n.fail(
                .unsupported,
                "its input is a \(shape) activation, not flattened: put a Flatten before \(n.node.opType)")
        }
        let gemm = n.node.opType == "Gemm"
        if gemm, (n.int("transA") ?? 0) != 0 {
            throw n.fail(.unsupported, "transA=1: the activations must be the first factor, untransposed")
        }
        let b = try constant(n, 1)
        let transB = gemm && (n.int("transB") ?? 0) != 0
        guard b.dims.count == 2 else {
            throw n.fail(
                .unsupported,
                "weights '\(n.node.input[1])' have shape \(b.shapeText): Tessera reads a 2-D weight matrix")
        }
        guard b.count > 0 else {
            throw n.fail(
                .weights, "weights '\(n.node.input[1])' have shape \(b.shapeText): an empty matrix computes no class")
        }
        let (k, outputs) = transB ? (b.dims[1], b.dims[0]) : (b.dims[0], b.dims[1])
        guard k == shape.count else {
            throw n.fail(
                .weights,
                "weights '\(n.node.input[1])' of shape \(b.shapeText)\(transB ? " (transB)" : "") take \(k) inputs, "
                    + "but its input is \(shape) = \(shape.count) values at patch size")
        }
        var weights = transB ? b.floats : Self.transposed(b.floats, rows: k, columns: outputs)
        if gemm, let alpha = n.float("alpha"), alpha != 1 { weights = weights.map { $0 * alpha } }
        var bias: [Float]?
        if gemm, let c = try optionalConstant(n, 2) {
            let beta = n.float("beta") ?? 1
            guard c.count == outputs || c.count == 1, c.trimmed.count <= 1 else {
                throw n.fail(
                    .weights,
                    "bias '\(n.node.input[2])' of shape \(c.shapeText) does not fit its \(outputs) outputs")
            }
            let values = c.count == 1 ? [Float](repeating: c.floats[0], count: outputs) : c.floats
            bias = beta == 1 ? values : values.map { $0 * beta }
        }
        try addLayer(n, .innerProduct(InnerProduct(outputs: outputs, weights: weights, bias: bias)), [x])
        flat.insert(n.node.output[0])
    }

    static func transposed(_ v: [Float], rows: Int, columns: Int) -> [Float] {
        var out = [Float](repeating: 0, count: v.count)
        for r in 0..<rows {
            for c in 0..<columns { out[c * rows + r] = v[r * columns + c] }
        }
        return out
    }

    mutating func addSoftmax(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        let isFlat = flat.contains(n.node.input[0])
        let rank = isFlat ? 2 : 4
        let axis = n.int("axis") ?? (opset < 13 ? 1 : -1)
        let a = axis < 0 ? axis + rank : axis
        let shape = shapes[x]!
        // Before opset 13, Softmax runs over every axis from `axis` on. Over a flattened
        // activation it runs over every C×H×W feature: the channels alone only at 1×1
        // (user audit: Flatten → Softmax → Gemm was mapped as a per-channel softmax).
        if isFlat, shape.spatial != .one {
            throw n.fail(
                .unsupported,
                "Softmax over the \(shape.count) flattened features of a \(shape) activation: Tessera's Softmax "
                    + "runs over the channels at each position, which is the same only for a 1×1 activation")
        }
        let ok = a == 1 && (opset >= 13 || isFlat || shape.spatial == .one)
        guard ok else {
            throw n.fail(
                .unsupported,
                "Softmax over axis \(axis) of a \(isFlat ? "flattened" : "\(shape)") activation (opset \(opset)): "
                    + "Tessera's Softmax runs over the classes (the channel axis)")
        }
        try addLayer(n, .softmax, [x])
    }
}
