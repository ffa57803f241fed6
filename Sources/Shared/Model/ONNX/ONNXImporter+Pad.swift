import Foundation
import TesseraCore

/// A zero Pad of the spatial axes waiting for the layer that reads it.
struct PendingPad {
    /// The padded activation.
    var blob: String
    /// Rows and columns added on each side.
    var pad: Size2
    /// The Pad node's name (messages, notes).
    var node: String
}

/// Pad nodes (user audit F6: ZeroPad2d, TF-style explicit padding): a zero Pad of the
/// spatial axes, the same on both sides, read by one Conv or AveragePool (or a MaxPool of values
/// that are never negative), is exactly that layer with larger pads, so it is folded into them
/// (the net then pads: `--allow-padding`).
/// Other Pads are refused with what they do that Tessera's layers cannot.
extension ONNXImporter {
    mutating func addPad(_ n: inout NodeContext) throws {
        let x = try spatial(n)
        let out = n.node.output[0]
        let mode = n.string("mode") ?? "constant"
        guard mode == "constant" else {
            let what =
                mode == "reflect"
                ? "mirrors the input at its edges (ReflectionPad2d)"
                : mode == "edge" ? "repeats the input's edge pixels (ReplicationPad2d)" : "pads in mode '\(mode)'"
            throw n.fail(
                .unsupported,
                "it \(what): Tessera's layers pad with zeros only, and the engine has no layer that pads otherwise; "
                    + "export the model with zero padding (the Conv's own padding)")
        }
        var pads: [Int64]
        var value: Float = 0
        var axes: [Int]?
        if opset < 11 {
            pads = (n.ints("pads") ?? []).map(Int64.init)
            value = n.float("value") ?? 0
        } else {
            guard let p = try constant(n, 1).ints else { throw n.fail(.invalid, "its pads are not integers") }
            pads = p
            if let v = try optionalValueConstant(n, 2) {
                guard v.count == 1 else { throw n.fail(.invalid, "its constant_value has \(v.count) values") }
                value = v.floats[0]
            }
            if opset >= 18 { axes = try optionalConstant(n, 3).map { ($0.ints ?? []).map { Int(clamping: $0) } } }
        }
        // All four axes' (begin, end), from pads for the given axes.
        let given = try (axes ?? [0, 1, 2, 3]).map { try axis(n, $0, rank: 4) }
        guard pads.count == 2 * given.count else {
            throw n.fail(.invalid, "\(pads.count) pads for \(given.count) axes (a begin and an end for each)")
        }
        var full = [Int64](repeating: 0, count: 8)
        for (k, a) in given.enumerated() {
            full[a] = pads[k]
            full[a + 4] = pads[k + given.count]
        }
        guard value == 0 else {
            throw n.fail(
                .unsupported,
                "it pads with the value \(value): Tessera's layers pad with zeros only; export the model with "
                    + "zero padding")
        }
        guard full.allSatisfy({ $0 >= 0 && $0 <= 1 << 16 }) else {
            throw n.fail(
                .unsupported,
                "pads \(pads): Tessera folds a Pad of 0 to 65536 rows or columns into the next layer; "
                    + "a negative pad crops, which it does not do")
        }
        guard full[0] == 0, full[1] == 0, full[4] == 0, full[5] == 0 else {
            throw n.fail(.unsupported, "pads \(pads) pad the batch or channel axis: Tessera pads height and width only")
        }
        guard full[2] == full[6], full[3] == full[7] else {
            throw n.fail(
                .unsupported,
                "asymmetric pads (top \(full[2]), left \(full[3]), bottom \(full[6]), right \(full[7])): "
                    + "Tessera's layers pad both sides alike; export the model with symmetric padding")
        }
        guard (uses[out] ?? 0) == 1 else {
            throw n.fail(
                .unsupported,
                "its output is read by \(uses[out] ?? 0) nodes: Tessera folds a Pad into the one Conv or "
                    + "pooling node that reads it")
        }
        try requireNew(n, out)
        pendingPads[out] = PendingPad(blob: x, pad: Size2(Int(full[2]), Int(full[3])), node: n.name)
    }

    /// Input 0 of a Conv or pooling node as an N×C×H×W activation, and the pads of a zero
    /// Pad node before it, which the layer takes on.
    mutating func paddedSpatial(_ n: NodeContext) throws -> (blob: String, pad: Size2) {
        guard let raw = n.node.input.first, let p = pendingPads[raw] else { return (try spatial(n), .zero) }
        // MaxPool's own padding never wins a window (−∞); zeros do, unless the input is never
        // negative (after a ReLU), where a window's maximum is at least 0 anyway: then they are the same.
        if n.node.opType == "MaxPool", !isNonNegative(p.blob) {
            throw n.fail(
                .unsupported,
                "its input is padded with zeros by Pad node '\(p.node)', but MaxPool's own padding is ignored "
                    + "(−∞), not zero, and the padded values can be negative (no ReLU before the Pad): Tessera "
                    + "cannot fold the Pad into it; export the model with MaxPool's pads")
        }
        pendingPads[raw] = nil
        notes.append(
            "\(file): Pad node '\(p.node)' is folded into node '\(n.name)' (\(n.node.opType)) as \(p.pad) more "
                + "padding (the same numbers)")
        return (p.blob, p.pad)
    }

    /// Whether every value of `blob` is ≥ 0: made by a ReLU, a sigmoid or a softmax, or pooled from such.
    func isNonNegative(_ blob: String) -> Bool {
        guard let producer = layers.last(where: { $0.tops.contains(blob) }) else { return false }
        switch producer.op {
        case .relu(let slope): return slope <= 0
        case .sigmoid, .softmax, .softplus: return true
        case .pooling:
            return producer.bottoms.count == 1 && producer.bottoms[0] != blob && isNonNegative(producer.bottoms[0])
        default: return false
        }
    }

    /// Refuses reading the output of a Pad node anywhere but in a Conv or pooling node.
    func requireNoPendingPad(_ n: NodeContext, _ raw: String) throws {
        if let p = pendingPads[raw] {
            throw n.fail(
                .unsupported,
                "its input '\(raw)' is the output of Pad node '\(p.node)': Tessera folds a zero Pad only into "
                    + "the Conv or pooling node that reads it (as their own pads), and has no Pad layer")
        }
    }
}
