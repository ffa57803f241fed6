import Foundation
import TesseraCore

/// The classifier head: Flatten (or Reshape to [N, -1], or Squeeze of a 1×1 activation)
/// + Gemm/MatMul as an inner product, ReduceMean/ReduceMax over the spatial axes as global
/// pooling, and the Softmax (or LogSoftmax) over the classes.
extension ONNXImporter {
    // MARK: - The classifier head

    mutating func addFlatten(_ n: inout NodeContext) throws {
        if try addChannelsLastFlatten(&n) { return }
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

    /// Squeeze of the spatial axes of a 1×1 activation (GlobalAveragePool → Squeeze): a flatten.
    mutating func addSqueeze(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        let shape = shapes[x]!
        guard !flat.contains(n.node.input[0]) else {
            throw n.fail(
                .unsupported,
                "Squeeze of flattened features (N×features): Tessera removes only the 1×1 spatial axes (2, 3) "
                    + "of an N×C×1×1 activation")
        }
        let given = try axes(n, inputFrom: 13, index: 1)
        if let given {
            let set = Set(try given.map { try axis(n, $0, rank: 4) })
            guard set == [2, 3] else {
                throw n.fail(
                    .unsupported,
                    "Squeeze of axes \(given) of a \(shape) activation: Tessera removes only both spatial axes "
                        + "(2, 3) of a 1×1 activation, as a flatten")
            }
        }
        guard shape.spatial == .one else {
            throw n.fail(
                .unsupported,
                "Squeeze of a \(shape) activation: Tessera squeezes the spatial axes only when they are 1×1 at "
                    + "patch size (after global pooling)")
        }
        if given == nil, shape.c == 1 {
            throw n.fail(
                .unsupported,
                "Squeeze without axes of a \(shape) activation would also remove its one channel: "
                    + "give the axes (2, 3)")
        }
        try addAlias(n, x, flatten: true)
    }

    /// ReduceMean or ReduceMax over the spatial axes (`x.mean([2, 3])`): global pooling, then a
    /// flatten when keepdims is 0. Axes are an attribute before opset 18, an input from it.
    mutating func addReduction(_ n: inout NodeContext) throws {
        let x = try spatial(n)
        let shape = shapes[x]!
        let op = n.node.opType
        let given = try axes(n, inputFrom: 18, index: 1)
        if given?.isEmpty ?? true, opset >= 18, (n.int("noop_with_empty_axes") ?? 0) != 0 {
            try addAlias(n, x)
            return
        }
        let set = try given.map { Set(try $0.map { try axis(n, $0, rank: 4) }) }
        guard let set, set == [2, 3] else {
            throw n.fail(
                .unsupported,
                "\(op) over \(given.map { "axes \($0)" } ?? "all axes") of a \(shape) activation: Tessera reduces "
                    + "only the spatial axes (2, 3), as global pooling")
        }
        try addLayer(n, .pooling(Pooling(method: op == "ReduceMax" ? .max : .average, kernel: .one, global: true)), [x])
        if (n.int("keepdims") ?? 1) == 0 { flat.insert(n.node.output[0]) }
    }

    mutating func addInnerProduct(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        let shape = shapes[x]!
        guard flat.contains(n.node.input[0]) || shape.spatial == .one else {
            // (A MatMul of an N×C×H×W tensor is valid ONNX, a product along the width: a Flatten before it would
            // change what the model computes. Model audit 48 F6.)
            throw n.fail(
                .unsupported,
                n.node.opType == "Gemm"
                    ? "its input is a \(shape) activation, not flattened: put a Flatten before Gemm"
                    : "its input is a \(shape) activation, not flattened: this MatMul multiplies along the width "
                        + "of each row; Tessera reads MatMul only as a classifier head, of a flattened (or 1×1) "
                        + "activation")
        }
        let gemm = n.node.opType == "Gemm"
        if gemm, (n.int("transA") ?? 0) != 0 {
            throw n.fail(.unsupported, "transA=1: the activations must be the first factor, untransposed")
        }
        let b = try valueConstant(n, 1)
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
        if let order = flattenedChannelsLast[n.node.input[0]] {
            weights = Self.channelsFirst(weights, outputs: outputs, shape: order.shape)
        }
        if gemm, let alpha = n.float("alpha"), alpha != 1 { weights = weights.map { $0 * alpha } }
        var bias: [Float]?
        if gemm, let c = try optionalValueConstant(n, 2) {
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
                "\(n.node.opType) over the \(shape.count) flattened features of a \(shape) activation: Tessera's Softmax "
                    + "runs over the channels at each position, which is the same only for a 1×1 activation")
        }
        let ok = a == 1 && (opset >= 13 || isFlat || shape.spatial == .one)
        guard ok else {
            throw n.fail(
                .unsupported,
                "\(n.node.opType) over axis \(axis) of a \(isFlat ? "flattened" : "\(shape)") activation (opset \(opset)): "
                    + "Tessera's Softmax runs over the classes (the channel axis)")
        }
        try addLayer(n, .softmax, [x])
        if n.node.opType == "LogSoftmax" {
            // exp(LogSoftmax) = Softmax: a map of probabilities. Checked to be the net's last layer.
            logSoftmax = n.name
            notes.append(
                "\(file): node '\(n.name)' (LogSoftmax) is imported as Softmax: the map holds probabilities, "
                    + "exp(the model's output)")
        }
    }
}
