import Foundation
import TesseraCore

/// A Keras model exported as NCHW (`tf2onnx --inputs-as-nchw`) keeps one Transpose: Keras's
/// Flatten reads height × width × channels, so the exporter puts the features back in that
/// order (`Transpose(perm=[0, 2, 3, 1])` → Reshape/Flatten → MatMul/Gemm). The engine runs no
/// Transpose, but there is none to run: the order is folded into the inner product's weights
/// (a permutation of their inputs). Anything else reading the transposed or the flattened
/// channels-last tensor is refused, naming the Transpose (a user audit: such a model was refused
/// with advice to export as NCHW, which it already was).
extension ONNXImporter {
    /// The permutation that takes N×C×H×W to N×H×W×C.
    static let toChannelsLast = [0, 2, 3, 1]

    /// A Transpose Tessera can fold: to channels-last, of an N×C×H×W activation. Records it
    /// and returns true; false leaves the node to `unsupportedOperator`.
    mutating func addChannelsLastTranspose(_ n: inout NodeContext) throws -> Bool {
        guard n.ints("perm") == Self.toChannelsLast, let raw = n.node.input.first, !raw.isEmpty,
            channelsLast[raw] == nil, flattenedChannelsLast[raw] == nil
        else { return false }
        let blob = resolve(raw)
        guard shapes[blob] != nil, !flat.contains(raw), blob != inputName else { return false }
        try requireNoPendingPad(n, raw)
        let out = n.node.output.first ?? ""
        guard !out.isEmpty else { throw n.fail(.invalid, "the node has no output") }
        try requireNew(n, out)
        channelsLast[out] = (blob, n.name)
        readers[blob, default: 0] += (uses[out] ?? 0) - 1
        return true
    }

    /// The refusal of a node reading a channels-last tensor that is not its flatten (or the
    /// flattened features, other than the inner product they feed).
    func channelsLastRefusal(_ n: NodeContext, _ raw: String) -> ModelError? {
        let op = n.node.opType
        if let transpose = channelsLast[raw]?.transpose, op != "Flatten", op != "Reshape" {
            return n.fail(
                .unsupported,
                "it reads '\(raw)', the channels-last (N×H×W×C) output of Transpose '\(transpose)': Tessera folds "
                    + "such a Transpose only where a Flatten (or Reshape to [N, -1]) and then a Gemm/MatMul read it "
                    + "(a Keras Flatten + Dense head); elsewhere the model must be NCHW without the Transpose "
                    + "(tf2onnx --inputs-as-nchw INPUT)")
        }
        if let transpose = flattenedChannelsLast[raw]?.transpose,
            !["Gemm", "MatMul", "Identity", "Dropout"].contains(op)
        {
            return n.fail(
                .unsupported,
                "it reads '\(raw)', features flattened in channels-last order after Transpose '\(transpose)': "
                    + "Tessera folds that order only into the Gemm/MatMul reading the flattened features")
        }
        return nil
    }

    /// Flatten (or Reshape) of a channels-last tensor: the NCHW activation flattened, its
    /// order (H, W, C) remembered for the inner product.
    mutating func addChannelsLastFlatten(_ n: inout NodeContext) throws -> Bool {
        guard let raw = n.node.input.first, let (blob, transpose) = channelsLast[raw].map({ ($0.blob, $0.transpose) })
        else { return false }
        let shape = shapes[blob]!
        if n.node.opType == "Flatten" {
            guard (n.int("axis") ?? 1) == 1 else {
                throw n.fail(
                    .unsupported,
                    "Flatten at axis \(n.int("axis")!) of a channels-last tensor: Tessera flattens "
                        + "each image's H×W×C (axis 1) only")
            }
        } else {
            let t = try constant(n, 1).ints ?? []
            let features = Int64(shape.count)
            guard t.count == 2, [0, 1, -1].contains(t[0]), [-1, features].contains(t[1]), t != [-1, -1] else {
                throw n.fail(
                    .unsupported,
                    "Reshape to \(t) of a channels-last \(shape.h)×\(shape.w)×\(shape.c) tensor: Tessera reshapes "
                        + "only to flatten each image (shape [N, -1] or [N, \(features)])")
            }
        }
        let out = n.node.output[0]
        try requireNew(n, out)
        alias[out] = blob
        readers[blob, default: 0] += (uses[out] ?? 0) - 1
        flat.insert(out)
        flattenedChannelsLast[out] = (shape, transpose)
        return true
    }

    /// `weights` ([outputs, H·W·C], inputs in H, W, C order) with their inputs in C, H, W order.
    static func channelsFirst(_ weights: [Float], outputs: Int, shape: Shape) -> [Float] {
        let (c, h, w) = (shape.c, shape.h, shape.w)
        let k = c * h * w
        var out = [Float](repeating: 0, count: weights.count)
        for o in 0..<outputs {
            for ci in 0..<c {
                for y in 0..<h {
                    for x in 0..<w {
                        out[o * k + (ci * h + y) * w + x] = weights[o * k + (y * w + x) * c + ci]
                    }
                }
            }
        }
        return out
    }
}
