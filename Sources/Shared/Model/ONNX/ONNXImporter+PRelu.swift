import Foundation
import TesseraCore

/// PRelu (user audit F9) from existing layers, with the same numbers: one slope for all
/// channels is a leaky ReLU; slopes per channel are `y = relu(x) + a·(x − relu(x))`
/// (ReLU, Eltwise SUM with coefficients 1, −1, Scale, Eltwise SUM), exact in float32:
/// `x − relu(x)` is x or 0 with no rounding, and adding 0 changes nothing.
extension ONNXImporter {
    mutating func addPRelu(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        let shape = shapes[x]!
        let slope = try valueConstant(n, 1)
        try reserveBroadcast(n, copies: 1, of: shape, "PRelu of a \(shape) activation")
        guard let a = perChannel(slope, shape, flat: flat.contains(n.node.input[0])) else {
            throw n.fail(
                .unsupported,
                "a slope of shape \(slope.shapeText) for a \(shape) activation: Tessera takes one slope, or one "
                    + "per channel (C×1×1)")
        }
        if a.allSatisfy({ $0 == a[0] }) {
            try addReLU(n, slope: a[0])
            return
        }
        let positive = try addPart(n, "positive", .relu(negativeSlope: 0), [x], readers: 2)
        readers[x, default: 0] += 1
        let negative = try addPart(
            n, "negative", .eltwise(Eltwise(operation: .sum, coefficients: [1, -1])), [x, positive], readers: 1)
        let scaled = try addPart(n, "slope", .scale(Scale(scale: a, bias: nil)), [negative], readers: 1)
        try addLayer(n, .eltwise(Eltwise(operation: .sum)), [positive, scaled])
    }

    /// One of several layers a node becomes: named `node/part`, writing `output/part`.
    mutating func addPart(
        _ n: NodeContext, _ part: String, _ op: LayerOp, _ bottoms: [String], readers count: Int
    ) throws -> String {
        var node = n.node
        let top = "\(node.output[0])/\(part)"
        node.output = [top]
        uses[top] = count
        var name = "\(n.name)/\(part)"
        if layerNames.contains(name) { name += "_\(layers.count)" }
        layerNames.insert(name)
        try addLayer(NodeContext(node: node, name: name, file: file), op, bottoms)
        return top
    }
}
