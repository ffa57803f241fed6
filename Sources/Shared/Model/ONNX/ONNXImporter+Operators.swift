import Foundation
import TesseraCore

/// Per-operator mapping: activations, constants, convolution and pooling, BatchNorm,
/// Clip, and the arithmetic and Concat nodes of branches, each onto the layer that
/// computes the same numbers (or refused with the reason).
extension ONNXImporter {
    mutating func addReLU(_ n: NodeContext, slope: Float) throws {
        let x = try activation(n, 0)
        // In place after the layer that made its input, as Caffe nets write it: the
        // convolution before it then applies it itself.
        try addLayer(n, .relu(negativeSlope: slope), [x], inPlace: ownsAlone(x))
    }

    mutating func addConstant(_ n: inout NodeContext) throws {
        guard let out = n.node.output.first, !out.isEmpty else { throw n.fail(.invalid, "the node has no output") }
        try requireNew(n, out)
        let c: ONNXConstant
        if let a = n.attributes["value"], a.hasT {
            c = try ONNXConstant(a.t, what: "the value of Constant node '\(n.name)'", file: file)
        } else if let f = n.attributes["value_float"] {
            c = ONNXConstant(dims: [], floats: [f.f])
        } else if let f = n.attributes["value_floats"] {
            c = ONNXConstant(dims: [f.floats.count], floats: f.floats)
        } else if let i = n.attributes["value_int"] {
            c = ONNXConstant(dims: [], floats: [Float(i.i)], ints: [i.i])
        } else if let i = n.attributes["value_ints"] {
            c = ONNXConstant(dims: [i.ints.count], floats: i.ints.map { Float($0) }, ints: i.ints)
        } else {
            throw n.fail(.unsupported, "a Constant without a tensor, float or int value")
        }
        constants[out] = c
    }

    /// Cast of a constant: float16 weights to float32, integers (shapes) to another integer
    /// type. Of the activations, to a floating-point type: nothing, as Tessera computes in
    /// float32 (a whole-float16 model, Cast → FLOAT16 … Cast → FLOAT, with a note).
    mutating func addCast(_ n: inout NodeContext) throws {
        guard let out = n.node.output.first, !out.isEmpty, let raw = n.node.input.first else {
            throw n.fail(.invalid, "Cast needs one input and one output")
        }
        try requireNew(n, out)
        let to = Int32(clamping: n.int("to") ?? 0)
        let name = ONNXElementType.name(to)
        if isConstant(raw) {
            let c = try constant(n, 0)
            if ONNXElementType.floatingPoint.contains(to) {
                constants[out] = ONNXConstant(dims: c.dims, floats: c.floats)
            } else if ONNXElementType.integer.contains(to) {
                let values =
                    try c.ints
                    ?? c.floats.map { f -> Int64 in
                        guard f.isFinite, abs(f) < 9.2e18 else { throw n.fail(.invalid, "Cast of \(f) to \(name)") }
                        return to == 9 ? (f != 0 ? 1 : 0) : Int64(f)
                    }
                try setConstant(n, .integers(values, dims: c.dims))
            } else {
                throw n.fail(.unsupported, "a Cast to \(name): Tessera reads floating-point and integer constants only")
            }
            return
        }
        let x = try activation(n, 0)
        guard ONNXElementType.floatingPoint.contains(to) else {
            throw n.fail(
                .unsupported,
                "a Cast of the activations to \(name): Tessera computes in float32 only, and a value computed "
                    + "from the activations' numbers cannot be evaluated while importing")
        }
        if to != 1, !notedPrecision {
            notedPrecision = true
            notes.append(
                "\(file): node '\(n.name)' casts the activations to \(name); Tessera computes the whole net in "
                    + "float32 (the map may differ from a \(name) run by that type's rounding)")
        }
        try addAlias(n, x)
    }

    // MARK: - Convolution and pooling

    /// Symmetric padding from `pads`/`auto_pad`; asymmetric padding is refused.
    func padding(_ n: NodeContext, kernel: Size2, stride: Size2, dilation: Size2) throws -> Size2 {
        let auto = n.string("auto_pad") ?? "NOTSET"
        switch auto {
        case "NOTSET", "":
            guard let pads = n.ints("pads") else { return .zero }
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }) else {
                throw n.fail(.invalid, "pads \(pads) are not four non-negative numbers (top, left, bottom, right)")
            }
            guard pads.allSatisfy({ $0 <= 1 << 16 }) else {
                throw n.fail(.unsupported, "pads \(pads) are too large: Tessera pads at most 65536 rows or columns")
            }
            guard pads[0] == pads[2], pads[1] == pads[3] else {
                throw n.fail(
                    .unsupported,
                    "asymmetric pads \(pads) (top, left, bottom, right): Tessera's layers pad both sides "
                        + "alike; export the model with symmetric padding")
            }
            return Size2(pads[0], pads[1])
        case "VALID":
            return .zero
        case "SAME_UPPER", "SAME_LOWER":
            guard stride == .one else {
                throw n.fail(
                    .unsupported,
                    "auto_pad \(auto) with stride \(stride): its padding depends on the input's height and width "
                        + "(and is asymmetric where they are odd or even), so it differs between the patch and "
                        + "the whole image; export the model with explicit pads")
            }
            let total = Size2(dilation.h * (kernel.h - 1), dilation.w * (kernel.w - 1))
            guard total.h % 2 == 0, total.w % 2 == 0 else {
                throw n.fail(
                    .unsupported,
                    "auto_pad \(auto) with an even kernel \(kernel) pads one side more than the other: "
                        + "Tessera's layers pad both sides alike")
            }
            return Size2(total.h / 2, total.w / 2)
        default:
            throw n.fail(.invalid, "auto_pad '\(auto)' is not NOTSET, VALID, SAME_UPPER or SAME_LOWER")
        }
    }

    func pair(_ n: NodeContext, _ key: String, default d: Int) throws -> Size2 {
        guard let v = n.ints(key) else { return Size2(square: d) }
        guard v.count == 2, v.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
            throw n.fail(
                .unsupported,
                "\(key) \(v): Tessera runs 2-D layers with two positive \(key) (height, width)")
        }
        return Size2(v[0], v[1])
    }

    /// Input 0 as an N×C×H×W activation (not a flattened one).
    func spatial(_ n: NodeContext) throws -> String {
        let x = try activation(n, 0)
        guard !flat.contains(n.node.input[0]) else {
            throw n.fail(.unsupported, "its input is flattened (N×features): Tessera runs it on N×C×H×W activations")
        }
        return x
    }

    mutating func addConvolution(_ n: inout NodeContext) throws {
        let (x, extra) = try paddedSpatial(n)
        let w = try valueConstant(n, 1)
        guard w.dims.count == 4, w.dims.allSatisfy({ $0 > 0 }) else {
            throw n.fail(
                .unsupported,
                "weights '\(n.node.input[1])' have shape \(w.shapeText): Tessera runs 2-D convolutions "
                    + "(weights outputs×inputs/group×kH×kW)")
        }
        let kernel = Size2(w.dims[2], w.dims[3])
        if let k = n.ints("kernel_shape"), k != [kernel.h, kernel.w] {
            throw n.fail(.weights, "kernel_shape \(k) does not match its weights' shape \(w.shapeText)")
        }
        let stride = try pair(n, "strides", default: 1)
        let dilation = try pair(n, "dilations", default: 1)
        let group = n.int("group") ?? 1
        guard group > 0, w.dims[0] % group == 0 else {
            throw n.fail(.invalid, "group \(group) does not divide its \(w.dims[0]) output channels")
        }
        let own = try padding(n, kernel: kernel, stride: stride, dilation: dilation)
        let pad = Size2(own.h + extra.h, own.w + extra.w)
        var bias: [Float]?
        if let b = try optionalValueConstant(n, 2) {
            guard b.count == w.dims[0] else {
                throw n.fail(
                    .weights,
                    "bias '\(n.node.input[2])' has \(b.count) values (shape \(b.shapeText)) for \(w.dims[0]) output channels"
                )
            }
            bias = b.floats
        }
        let conv = Convolution(
            outputs: w.dims[0], kernel: kernel, stride: stride, pad: pad, dilation: dilation, group: group,
            weights: w.floats, bias: bias)
        try addLayer(n, .convolution(conv), [x])
    }

    mutating func addPooling(_ n: inout NodeContext) throws {
        let (x, extra) = try paddedSpatial(n)
        guard let k = n.ints("kernel_shape") else { throw n.fail(.invalid, "pooling without kernel_shape") }
        guard k.count == 2, k.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
            throw n.fail(.unsupported, "kernel_shape \(k): Tessera pools in 2-D (height, width)")
        }
        let kernel = Size2(k[0], k[1])
        let stride = try pair(n, "strides", default: 1)
        if try pair(n, "dilations", default: 1) != .one {
            throw n.fail(.unsupported, "dilated pooling windows are not something Tessera reads from a model")
        }
        let pad = try padding(n, kernel: kernel, stride: stride, dilation: .one)
        let max = n.node.opType == "MaxPool"
        // A folded zero Pad before a MaxPool (of non-negative values) equals −∞ padding only where
        // every window still holds one input pixel.
        if max, extra != .zero, pad.h + extra.h >= kernel.h || pad.w + extra.w >= kernel.w {
            throw n.fail(
                .unsupported,
                "a Pad node adds \(extra) zero rows and columns before it, which with its own pads \(pad) makes "
                    + "windows of \(kernel) that hold only padding: Tessera cannot fold that Pad into it")
        }
        if !max, pad != .zero, (n.int("count_include_pad") ?? 0) == 0 {
            throw n.fail(
                .unsupported,
                "average pooling with pads \(pad) and count_include_pad=0 divides by the pixels inside its input; "
                    + "Tessera's average pooling (Caffe's) counts the padding: export with count_include_pad=1 "
                    + "(PyTorch: AvgPool2d(count_include_pad=True)) or without padding")
        }
        // ceil_mode=0 (PyTorch's default) rounds the output size down: no partial last window.
        // A zero Pad before an average pool adds pixels it counts, as its own counted padding does.
        let pool = Pooling(
            method: max ? .max : .average, kernel: kernel, stride: stride, pad: Size2(pad.h + extra.h, pad.w + extra.w),
            roundsUp: (n.int("ceil_mode") ?? 0) != 0)
        try addLayer(n, .pooling(pool), [x])
    }

    mutating func addBatchNorm(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        if (n.int("training_mode") ?? 0) != 0 {
            throw n.fail(.unsupported, "training_mode is on: export the model in eval mode (model.eval())")
        }
        let c = shapes[x]!.c
        var values: [[Float]] = []
        for (i, what) in [(1, "scale"), (2, "B (bias)"), (3, "mean"), (4, "var")] {
            let v = try valueConstant(n, i)
            guard v.count == c else {
                throw n.fail(
                    .weights,
                    "\(what) '\(n.node.input[i])' has \(v.count) values (shape \(v.shapeText)) for \(c) input channels")
            }
            values.append(v.floats)
        }
        let bn = BatchNorm(
            mean: values[2], variance: values[3], eps: n.float("epsilon") ?? 1e-5, scale: values[0], bias: values[1])
        try addLayer(n, .batchNorm(bn), [x])
    }

    mutating func addClip(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        var low: Float?, high: Float?
        if opset < 11 {
            low = n.float("min")
            high = n.float("max")
        } else {
            low = try optionalValueConstant(n, 1).map { $0.floats.first ?? 0 }
            high = try optionalValueConstant(n, 2).map { $0.floats.first ?? 0 }
        }
        let noHigh = high.map { $0.isInfinite && $0 > 0 || $0 >= Float.greatestFiniteMagnitude } ?? true
        let noLow = low.map { $0.isInfinite && $0 < 0 || $0 <= -Float.greatestFiniteMagnitude } ?? true
        if low == 0, noHigh {
            try addReLU(n, slope: 0)
        } else if noLow, noHigh {
            try addAlias(n, x)
        } else {
            if low?.isNaN == true || high?.isNaN == true { throw n.fail(.invalid, "Clip with a NaN bound") }
            try reserveBroadcast(n, copies: 8, of: shapes[x]!, "Clip of a \(shapes[x]!) activation")
            let ops = ClampSteps.steps(
                low: noLow ? nil : low, high: noHigh ? nil : high, channels: shapes[x]!.c)
            try addChain(n, ops, from: x)
            notes.append(
                "\(file): Clip node '\(n.name)' to [\(noLow ? "-inf" : "\(low!)"), \(noHigh ? "inf" : "\(high!)")] "
                    + "is computed as \(ops.count) ReLU and Scale layers (the same numbers to about 1e-7)")
        }
    }

    /// HardSigmoid, `clamp(alpha·x + beta, 0, 1)`, and HardSwish, `x · HardSigmoid(x)` with alpha 1/6 and
    /// beta 1/2 (MobileNetV3): a Scale and a clamp (`ClampSteps`), times x for HardSwish.
    mutating func addHardSigmoid(_ n: inout NodeContext, swish: Bool) throws {
        let x = try activation(n, 0)
        try reserveBroadcast(n, copies: 10, of: shapes[x]!, "\(n.node.opType) of a \(shapes[x]!) activation")
        let channels = shapes[x]!.c
        let alpha = swish ? 1 / 6 : n.float("alpha") ?? 0.2, beta = swish ? 0.5 : n.float("beta") ?? 0.5
        guard alpha.isFinite, beta.isFinite else { throw n.fail(.invalid, "alpha \(alpha), beta \(beta)") }
        let ops =
            [
                LayerOp.scale(
                    Scale(
                        scale: [Float](repeating: alpha, count: channels),
                        bias: [Float](repeating: beta, count: channels)))
            ]
            + ClampSteps.steps(low: 0, high: 1, channels: channels)
        guard swish else {
            try addChain(n, ops, from: x)
            return
        }
        let hardSigmoid = try addParts(n, ops[...], from: x)
        readers[x, default: 0] += 1
        try addLayer(n, .eltwise(Eltwise(operation: .product)), [x, hardSigmoid])
    }

    /// Counts `copies` per-channel arrays over `shape`'s channels against `maxBroadcastValues`, before
    /// they are made.
    mutating func reserveBroadcast(_ n: NodeContext, copies: Int, of shape: Shape, _ what: String) throws {
        let (expanded, overflow) = broadcastValues.addingReportingOverflow(copies * min(shape.c, Int.max / 16))
        guard !overflow, expanded <= Self.maxBroadcastValues else {
            throw n.fail(
                .unsupported,
                "\(what): its per-channel values over \(shape.c) channels take the graph past the "
                    + "\(Self.maxBroadcastValues) broadcast values Tessera expands (a patch classifier has far fewer "
                    + "channels)")
        }
        broadcastValues = expanded
    }

    /// Pointwise `ops` one after another from `x`, the last writing the node's output.
    private mutating func addChain(_ n: NodeContext, _ ops: [LayerOp], from x: String) throws {
        try addLayer(n, ops.last!, [try addParts(n, ops.dropLast(), from: x)])
    }

    /// Pointwise `ops` one after another from `x` as parts of node `n` (`node/stepK`); the last part's blob.
    private mutating func addParts(_ n: NodeContext, _ ops: ArraySlice<LayerOp>, from x: String) throws -> String {
        var last = x
        for (i, op) in ops.enumerated() { last = try addPart(n, "step\(i)", op, [last], readers: 1) }
        return last
    }

    // MARK: - Arithmetic and branches

    /// A constant broadcast over `shape`, one value per channel; nil when it is not one.
    func perChannel(_ c: ONNXConstant, _ shape: Shape, flat isFlat: Bool) -> [Float]? {
        if c.count == 1 { return [Float](repeating: c.floats[0], count: shape.c) }
        let t = c.trimmed
        if !isFlat, t == [shape.c, 1, 1] { return c.floats }
        if isFlat, shape.h == 1, shape.w == 1, t == [shape.c] { return c.floats }
        return nil
    }

    /// Sum or Max of activations (what `convert --format onnx` writes for an Eltwise of
    /// several inputs, and a residual's join): one Eltwise. One input is its alias.
    mutating func addVariadic(_ n: inout NodeContext) throws {
        let op = n.node.opType
        guard !n.node.input.isEmpty, n.node.input.count <= 64 else {
            throw n.fail(.invalid, "\(op) takes 1 to 64 inputs, has \(n.node.input.count)")
        }
        if let i = n.node.input.indices.first(where: { isConstant(n.node.input[$0]) }) {
            // Max(x, 0): a ReLU (torch.clamp(min=0), tf.maximum(x, 0)).
            if op == "Max", n.node.input.count == 2, !isConstant(n.node.input[1 - i]) {
                let c = try valueConstant(n, i)
                if c.count == 1, c.floats[0] == 0 {
                    let x = try activation(n, 1 - i)
                    try addLayer(n, .relu(negativeSlope: 0), [x], inPlace: ownsAlone(x))
                    return
                }
            }
            throw n.fail(
                .unsupported,
                op == "Max"
                    ? "Max with a constant input ('\(n.node.input[i])') other than one activation's Max with 0 (a "
                        + "ReLU): the engine has no layer for the maximum with another constant"
                    : "Sum with a constant input ('\(n.node.input[i])'): Tessera sums activations only "
                        + "(add a constant with Add)")
        }
        let inputs = try n.node.input.indices.map { try activation(n, $0) }
        if inputs.count == 1 {
            try addAlias(n, inputs[0])
            return
        }
        try addLayer(n, .eltwise(Eltwise(operation: op == "Sum" ? .sum : .max)), inputs)
    }

    mutating func addArithmetic(_ n: inout NodeContext) throws {
        let op = n.node.opType
        guard n.node.input.count == 2 else { throw n.fail(.invalid, "\(op) takes two inputs") }
        let constA = isConstant(n.node.input[0]), constB = isConstant(n.node.input[1])
        if !constA, !constB {
            let a = try activation(n, 0), b = try activation(n, 1)
            if op == "Div" {
                throw n.fail(
                    .unsupported,
                    "Div of two activations: the engine has no layer that divides one activation by another "
                        + "(it divides by constants only)")
            }
            let e: Eltwise
            switch op {
            case "Add": e = Eltwise(operation: .sum)
            case "Sub": e = Eltwise(operation: .sum, coefficients: [1, -1])
            default: e = Eltwise(operation: .product)
            }
            try addLayer(n, .eltwise(e), [a, b])
            return
        }
        guard constA != constB else {
            throw n.fail(.unsupported, "both inputs are constants: constant-fold the model first")
        }
        let xi = constA ? 1 : 0
        let x = try activation(n, xi)
        if op == "Div", constA {
            throw n.fail(
                .unsupported,
                "Div of a constant by the activations: the engine has no layer that computes 1/x "
                    + "(it divides activations by constants only)")
        }
        let c = try valueConstant(n, 1 - xi)
        let shape = shapes[x]!
        try reserveBroadcast(n, copies: 2, of: shape, "\(op) of a constant and a \(shape) activation")
        guard let v = perChannel(c, shape, flat: flat.contains(n.node.input[xi])) else {
            throw n.fail(
                .unsupported,
                "\(op) of a constant of shape \(c.shapeText) and a \(shape) activation: Tessera broadcasts constants "
                    + "per channel only (a scalar, or C×1×1)")
        }
        let ones = [Float](repeating: 1, count: shape.c)
        let scale: Scale
        switch op {
        case "Add":
            // MatMul + Add is the classifier head's bias.
            if ownsAlone(x), case .innerProduct(var ip) = layers.last!.op, ip.bias == nil {
                ip.bias = v
                layers[layers.count - 1].op = .innerProduct(ip)
                try addAlias(n, x)
                return
            }
            scale = Scale(scale: ones, bias: v)
        case "Sub": scale = constA ? Scale(scale: ones.map { -$0 }, bias: v) : Scale(scale: ones, bias: v.map { -$0 })
        case "Div":
            // x / c as x · (1/c), as Mul by a constant is mapped (within an ulp of the quotient).
            if let zero = v.firstIndex(of: 0) {
                throw n.fail(.unsupported, "Div by a constant that is 0 (channel \(zero)): the map would be infinite")
            }
            scale = Scale(scale: v.map { 1 / $0 }, bias: nil)
        default: scale = Scale(scale: v, bias: nil)
        }
        try addLayer(n, .scale(scale), [x])
    }

    mutating func addConcat(_ n: inout NodeContext) throws {
        let xs = try n.node.input.indices.map { try activation(n, $0) }
        guard let axis = n.int("axis") else { throw n.fail(.invalid, "Concat without 'axis'") }
        let isFlat = n.node.input.contains(where: flat.contains)
        let channelAxis = isFlat ? [1, -1] : [1, -3]
        guard channelAxis.contains(axis) else {
            throw n.fail(.unsupported, "Concat along axis \(axis): Tessera concatenates channels (axis 1) only")
        }
        if isFlat, let x = xs.first(where: { shapes[$0]!.spatial != .one }) {
            throw n.fail(
                .unsupported,
                "Concat of flattened features: an input is a \(shapes[x]!) activation flattened to "
                    + "\(shapes[x]!.count) features, and Tessera concatenates channels, which is the same only "
                    + "for 1×1 activations")
        }
        try addLayer(n, .concat, xs)
    }

}
