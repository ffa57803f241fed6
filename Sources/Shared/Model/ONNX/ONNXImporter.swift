import Foundation
import TesseraCore

/// Turns an ONNX graph into Tessera's `Net` (docs/ARCHITECTURE.md §2): each node becomes
/// the layer that computes the same numbers (Conv → Convolution, Gemm/MatMul →
/// InnerProduct, BatchNormalization, pooling, activations, per-channel Add/Mul → Scale,
/// Add/Sub/Mul of two activations → Eltwise, Concat), pass-through nodes (Identity,
/// Dropout, Flatten) become aliases. Anything else is refused, naming the node.
///
/// Shapes are followed at patch size while importing, so every refusal that depends
/// on them (a flattened head that does not fit, pooling that rounds down) names the
/// sizes at fault.
struct ONNXImporter {
    /// The model's file (for messages).
    var file: String
    /// Patch size given by the user, which wins over the graph's input shape.
    var patchOverride: Size2?
    /// What the importer did that a user should know.
    var notes: [String] = []

    /// Oldest default-domain opset read; the newest is the newest the PyPI `onnx` 1.23 package knows.
    static let opsets = 9...28

    static let supported = [
        "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Relu",
        "LeakyRelu", "Sigmoid", "Tanh", "Clip", "LRN", "Add", "Sub", "Mul", "Concat", "Flatten", "Reshape",
        "Gemm", "MatMul", "Softmax", "Dropout", "Identity", "Constant", "Cast",
    ]

    struct Imported {
        var net: Net
        /// The input's height and width when the graph declares them.
        var declaredInput: Size2?
    }

    // MARK: - State while importing

    private var opset = 0
    private var initializers: [String: Onnx_TensorProto] = [:]
    private var constants: [String: ONNXConstant] = [:]
    /// Pass-through tensors: the blob each one is.
    private var alias: [String: String] = [:]
    /// Activation shapes at patch size, by blob name.
    private var shapes: [String: Shape] = [:]
    /// Tensors (by their ONNX names) flattened to N×features (rank 2); the others are N×C×H×W.
    private var flat: Set<String> = []
    /// How many node inputs (and graph outputs) read each blob.
    private var readers: [String: Int] = [:]
    private var uses: [String: Int] = [:]
    private var layers: [Layer] = []
    private var layerNames: Set<String> = []
    private var inputName = ""

    init(file: String, patchOverride: Size2? = nil) {
        self.file = file
        self.patchOverride = patchOverride
    }

    // MARK: - The graph

    mutating func importModel(_ model: Onnx_ModelProto) throws -> Imported {
        opset = try Self.defaultOpset(model, file: file)
        let graph = model.graph
        for t in graph.initializer {
            guard initializers[t.name] == nil else {
                throw ModelError(.invalid, file: file, "two initializers are named '\(t.name)'")
            }
            initializers[t.name] = t
        }
        for n in graph.node { for i in n.input where !i.isEmpty { uses[i, default: 0] += 1 } }
        for o in graph.output { uses[o.name, default: 0] += 1 }

        let (input, channels, declared) = try readInput(graph)
        inputName = input
        guard let patch = patchOverride ?? declared else {
            throw ModelError(.patchSize, file: file, "the patch size is unknown")
        }
        shapes[input] = Shape(c: channels, h: patch.h, w: patch.w)
        readers[input] = uses[input] ?? 0

        for (index, node) in graph.node.enumerated() {
            try addNode(node, index: index)
        }

        guard graph.output.count == 1 else {
            throw ModelError(
                .unsupported, file: file,
                "the graph has \(graph.output.count) outputs (\(graph.output.map { "'\($0.name)'" }.joined(separator: ", "))); "
                    + "Tessera maps one: the class scores")
        }
        let output = resolve(graph.output[0].name)
        guard let last = layers.last else {
            throw ModelError(.unsupported, file: file, "the graph has no node Tessera runs: it computes nothing")
        }
        guard last.tops.first == output else {
            throw ModelError(
                .unsupported, file: file,
                "the graph's output '\(graph.output[0].name)' is not computed by its last node "
                    + "('\(last.name)'): remove the nodes after it")
        }
        if last.op != .softmax {
            notes.append(
                "\(file): the net ends in \(last.op.typeName) ('\(last.name)'), not Softmax: "
                    + "the map holds its outputs as they are")
        }
        let net = Net(
            name: graph.name, inputName: input, inputChannels: channels, patchSize: patch, layers: layers)
        return Imported(net: net, declaredInput: declared)
    }

    static func defaultOpset(_ model: Onnx_ModelProto, file: String) throws -> Int {
        guard let entry = model.opsetImport.first(where: { $0.domain.isEmpty || $0.domain == "ai.onnx" }) else {
            throw ModelError(
                .unsupported, file: file,
                "the model imports no opset of the default ONNX domain: it is not a net Tessera runs")
        }
        let v = Int(entry.version)
        guard opsets.contains(v) else {
            throw ModelError(
                .unsupported, file: file,
                v < opsets.lowerBound
                    ? "opset \(v) is older than opset \(opsets.lowerBound), the oldest Tessera reads: "
                        + "re-export the model with opset_version \(opsets.lowerBound) or newer"
                    : "opset \(v) is newer than opset \(opsets.upperBound), the newest Tessera knows: "
                        + "re-export the model with opset_version \(opsets.upperBound) or older")
        }
        return v
    }

    /// The graph's one image input: its name, channels and (when static) height × width.
    private func readInput(_ graph: Onnx_GraphProto) throws -> (String, Int, Size2?) {
        let inputs = graph.input.filter { initializers[$0.name] == nil }
        guard inputs.count == 1, let input = inputs.first else {
            throw ModelError(
                .unsupported, file: file,
                "the graph has \(inputs.count) inputs (\(inputs.map { "'\($0.name)'" }.joined(separator: ", "))) "
                    + "besides its initializers; Tessera feeds one: the image patch")
        }
        let what = "the graph's input '\(input.name)'"
        guard input.type.tensorType.hasElemType, input.type.tensorType.elemType == 1 else {
            throw ModelError(
                .unsupported, file: file,
                "\(what) is not a float32 tensor (element type \(input.type.tensorType.elemType)): "
                    + "Tessera feeds float32 pixels")
        }
        let dims = input.type.tensorType.shape.dim
        guard dims.count == 4 else {
            throw ModelError(
                .unsupported, file: file,
                "\(what) has \(dims.count) dimensions; Tessera feeds images as N×C×H×W (4 dimensions)")
        }
        func describe(_ d: Onnx_TensorShapeProto.Dimension) -> String {
            switch d.value {
            case .dimValue(let v): return "\(v)"
            case .dimParam(let p): return "'\(p)'"
            case nil: return "?"
            }
        }
        guard case .dimValue(let c) = dims[1].value, c > 0, c <= 1 << 16 else {
            throw ModelError(
                .unsupported, file: file,
                "\(what) has \(describe(dims[1])) channels: the channel count must be a fixed number")
        }
        var declared: Size2?
        if case .dimValue(let h) = dims[2].value, case .dimValue(let w) = dims[3].value {
            guard h > 0, w > 0, h <= 1 << 16, w <= 1 << 16 else {
                throw ModelError(.patchSize, file: file, "\(what) is \(h)×\(w), not a patch size between 1 and 65536")
            }
            declared = Size2(Int(h), Int(w))
        } else if patchOverride == nil {
            throw ModelError(
                .patchSize, file: file,
                "\(what) has a dynamic height × width (\(describe(dims[2]))×\(describe(dims[3]))): "
                    + "the patch size is unknown; give the size of the patches the classifier was trained on")
        }
        return (input.name, Int(c), declared)
    }

    // MARK: - Nodes

    private func resolve(_ name: String) -> String {
        var n = name
        var steps = 0
        while let a = alias[n], steps < 1_000_000 {
            n = a
            steps += 1
        }
        return n
    }

    /// The node's name for layers and messages: its own, or its op type and position.
    private mutating func layerName(_ node: Onnx_NodeProto, index: Int) -> String {
        var name = node.name.isEmpty ? "\(node.opType)_\(index)" : node.name
        if layerNames.contains(name) { name += "_\(index)" }
        layerNames.insert(name)
        return name
    }

    private mutating func addNode(_ node: Onnx_NodeProto, index: Int) throws {
        let name = layerName(node, index: index)
        var n = NodeContext(node: node, name: name, file: file)
        guard node.domain.isEmpty || node.domain == "ai.onnx" else {
            throw n.fail(
                .unsupported,
                "an operator of the custom domain '\(node.domain)': Tessera runs standard ONNX operators only")
        }
        guard Self.supported.contains(node.opType) else {
            throw n.fail(
                .unsupported,
                "Tessera does not run this operator. It runs \(Self.supported.joined(separator: ", ")). "
                    + "Constant-fold the model first (torch.onnx.export(do_constant_folding=True), onnxsim), "
                    + "or export a model without it")
        }
        if node.opType == "Constant" {
            try addConstant(&n)
            return
        }
        if node.opType == "Cast" {
            try addCast(&n)
            return
        }
        guard !node.output.isEmpty, !node.output[0].isEmpty else { throw n.fail(.invalid, "the node has no output") }
        for extra in node.output.dropFirst() where !extra.isEmpty && (uses[extra] ?? 0) > 0 {
            throw n.fail(
                .unsupported, "its extra output '\(extra)' is used; Tessera computes only a node's first output")
        }
        switch node.opType {
        case "Conv": try addConvolution(&n)
        case "MaxPool", "AveragePool": try addPooling(&n)
        case "GlobalAveragePool", "GlobalMaxPool":
            let x = try spatial(n)
            let method: Pooling.Method = node.opType == "GlobalMaxPool" ? .max : .average
            try addLayer(n, .pooling(Pooling(method: method, kernel: .one, global: true)), [x])
        case "BatchNormalization": try addBatchNorm(&n)
        case "Relu": try addReLU(n, slope: 0)
        case "LeakyRelu": try addReLU(n, slope: n.float("alpha") ?? 0.01)
        case "Sigmoid": try addLayer(n, .sigmoid, [try activation(n, 0)])
        case "Tanh": try addLayer(n, .tanh, [try activation(n, 0)])
        case "Clip": try addClip(&n)
        case "LRN":
            guard let size = n.int("size"), size > 0, size <= 1 << 16 else {
                throw n.fail(.invalid, "LRN needs a positive 'size'")
            }
            let lrn = LRN(
                region: .acrossChannels, size: size, alpha: n.float("alpha") ?? 1e-4, beta: n.float("beta") ?? 0.75,
                k: n.float("bias") ?? 1)
            try addLayer(n, .lrn(lrn), [try spatial(n)])
        case "Add", "Sub", "Mul": try addArithmetic(&n)
        case "Concat": try addConcat(&n)
        case "Flatten", "Reshape": try addFlatten(&n)
        case "Gemm", "MatMul": try addInnerProduct(&n)
        case "Softmax": try addSoftmax(&n)
        default:  // Dropout, Identity
            if node.opType == "Dropout", let mode = try? constant(n, 2), mode.floats.first ?? 0 != 0 {
                throw n.fail(.unsupported, "training_mode is on: export the model in eval mode (model.eval())")
            }
            try addAlias(n, try activation(n, 0))
        }
    }

    // MARK: - Inputs of a node

    private func isConstant(_ name: String) -> Bool { initializers[name] != nil || constants[name] != nil }

    /// Input `i` of the node, which must be an activation (not a constant).
    private func activation(_ n: NodeContext, _ i: Int) throws -> String {
        guard i < n.node.input.count, !n.node.input[i].isEmpty else {
            throw n.fail(.invalid, "input \(i + 1) is missing")
        }
        let raw = n.node.input[i]
        let blob = resolve(raw)
        guard shapes[blob] != nil else {
            if isConstant(raw) {
                throw n.fail(
                    .unsupported,
                    "input '\(raw)' is a constant where Tessera expects the image's activations: "
                        + "constant-fold the model first")
            }
            throw n.fail(
                .invalid, "input '\(raw)' is neither the graph's input, an initializer nor an earlier node's output")
        }
        return blob
    }

    /// Input `i` of the node as a constant, or nil when the node leaves it out.
    private func optionalConstant(_ n: NodeContext, _ i: Int) throws -> ONNXConstant? {
        guard i < n.node.input.count, !n.node.input[i].isEmpty else { return nil }
        return try constant(n, i)
    }

    private func constant(_ n: NodeContext, _ i: Int) throws -> ONNXConstant {
        guard i < n.node.input.count, !n.node.input[i].isEmpty else {
            throw n.fail(.invalid, "input \(i + 1) is missing")
        }
        let name = n.node.input[i]
        if let c = constants[name] { return c }
        guard let t = initializers[name] else {
            throw n.fail(
                .unsupported,
                "input '\(name)' must be a constant (an initializer): Tessera takes weights from initializers, "
                    + "not from computed tensors")
        }
        return try ONNXConstant(t, what: "initializer '\(name)' (input \(i + 1) of node '\(n.name)')", file: file)
    }

    // MARK: - Adding layers

    /// Appends a layer computing the node's first output from `bottoms`, and its shape.
    private mutating func addLayer(_ n: NodeContext, _ op: LayerOp, _ bottoms: [String], inPlace: Bool = false) throws {
        let out = n.node.output[0]
        let top = inPlace ? bottoms[0] : out
        let layer = Layer(name: n.name, op: op, bottoms: bottoms, tops: [top])
        let shape: Shape
        do {
            shape = try layer.outputShape(inputs: bottoms.map { shapes[$0]! })
        } catch let e as ModelError {
            var e2 = e
            e2.layer = nil
            e2.file = file
            e2.message = "node '\(n.name)' (\(n.node.opType)): " + e.message
            throw e2
        }
        layers.append(layer)
        if n.node.input.contains(where: flat.contains) { flat.insert(out) }
        if inPlace {
            alias[out] = top
            readers[top, default: 0] += (uses[out] ?? 0) - 1
        } else {
            guard shapes[out] == nil, alias[out] == nil else {
                throw n.fail(.invalid, "its output '\(out)' is also produced by an earlier node")
            }
            readers[out] = uses[out] ?? 0
        }
        shapes[top] = shape
    }

    /// The node's output is its input (Identity, Dropout at inference, Flatten).
    private mutating func addAlias(_ n: NodeContext, _ blob: String, flatten: Bool = false) throws {
        let out = n.node.output[0]
        guard shapes[out] == nil, alias[out] == nil else {
            throw n.fail(.invalid, "its output '\(out)' is also produced by an earlier node")
        }
        alias[out] = blob
        readers[blob, default: 0] += (uses[out] ?? 0) - 1
        if flatten || flat.contains(n.node.input[0]) { flat.insert(out) }
    }

    /// Whether a layer may write its output over `blob`: nothing else reads it.
    private func ownsAlone(_ blob: String) -> Bool {
        blob != inputName && readers[blob] == 1 && layers.last?.tops == [blob]
    }

    private mutating func addReLU(_ n: NodeContext, slope: Float) throws {
        let x = try activation(n, 0)
        // In place after the layer that made its input, as Caffe nets write it: the
        // convolution before it then applies it itself.
        try addLayer(n, .relu(negativeSlope: slope), [x], inPlace: ownsAlone(x))
    }

    private mutating func addConstant(_ n: inout NodeContext) throws {
        guard let out = n.node.output.first, !out.isEmpty else { throw n.fail(.invalid, "the node has no output") }
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

    /// Cast to float32: of a constant (float16 weights), a float32 constant; of the
    /// activations (already float32), nothing.
    private mutating func addCast(_ n: inout NodeContext) throws {
        guard let out = n.node.output.first, !out.isEmpty, let raw = n.node.input.first else {
            throw n.fail(.invalid, "Cast needs one input and one output")
        }
        guard n.int("to") == 1 else {
            throw n.fail(
                .unsupported,
                "a Cast to element type \(n.int("to").map(String.init) ?? "?"): Tessera computes in float32 only")
        }
        if isConstant(raw) {
            let c = try constant(n, 0)
            constants[out] = ONNXConstant(dims: c.dims, floats: c.floats)
        } else {
            try addAlias(n, try activation(n, 0))
        }
    }

    // MARK: - Convolution and pooling

    /// Symmetric padding from `pads`/`auto_pad`; asymmetric padding is refused.
    private func padding(_ n: NodeContext, kernel: Size2, stride: Size2, dilation: Size2) throws -> Size2 {
        let auto = n.string("auto_pad") ?? "NOTSET"
        switch auto {
        case "NOTSET", "":
            guard let pads = n.ints("pads") else { return .zero }
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 16 }) else {
                throw n.fail(.invalid, "pads \(pads) are not four non-negative numbers (top, left, bottom, right)")
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
                    "auto_pad \(auto) with stride \(stride) pads by the input's size: export the model with explicit pads"
                )
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

    private func pair(_ n: NodeContext, _ key: String, default d: Int) throws -> Size2 {
        guard let v = n.ints(key) else { return Size2(square: d) }
        guard v.count == 2, v.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
            throw n.fail(
                .unsupported,
                "\(key) \(v): Tessera runs 2-D layers with two positive \(key) (height, width)")
        }
        return Size2(v[0], v[1])
    }

    /// Input 0 as an N×C×H×W activation (not a flattened one).
    private func spatial(_ n: NodeContext) throws -> String {
        let x = try activation(n, 0)
        guard !flat.contains(n.node.input[0]) else {
            throw n.fail(.unsupported, "its input is flattened (N×features): Tessera runs it on N×C×H×W activations")
        }
        return x
    }

    private mutating func addConvolution(_ n: inout NodeContext) throws {
        let x = try spatial(n)
        let w = try constant(n, 1)
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
        let pad = try padding(n, kernel: kernel, stride: stride, dilation: dilation)
        var bias: [Float]?
        if let b = try optionalConstant(n, 2) {
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

    private mutating func addPooling(_ n: inout NodeContext) throws {
        let x = try spatial(n)
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
        if !max, pad != .zero, (n.int("count_include_pad") ?? 0) == 0 {
            throw n.fail(
                .unsupported,
                "average pooling with pads \(pad) and count_include_pad=0 divides by the pixels inside its input; "
                    + "Tessera's average pooling (Caffe's) counts the padding: export with count_include_pad=1 "
                    + "(PyTorch: AvgPool2d(count_include_pad=True)) or without padding")
        }
        let input = shapes[x]!
        if (n.int("ceil_mode") ?? 0) == 0 {
            for (axis, size, kk, s, p) in [
                ("height", input.h, kernel.h, stride.h, pad.h), ("width", input.w, kernel.w, stride.w, pad.w),
            ] {
                let span = size + 2 * p - kk
                if span >= 0, span % s != 0 {
                    throw n.fail(
                        .unsupported,
                        "ceil_mode=0 leaves the last \(span % s) of its \(size) input \(axis == "height" ? "rows" : "columns") "
                            + "(with padding \(p)) outside every \(kk)-pixel window of stride \(s) at patch size; "
                            + "Tessera pools as Caffe and ceil_mode=1 do (the last window is kept): "
                            + "export with ceil_mode=1, or use a patch size whose windows cover the input")
                }
            }
        }
        let pool = Pooling(method: max ? .max : .average, kernel: kernel, stride: stride, pad: pad)
        try addLayer(n, .pooling(pool), [x])
    }

    private mutating func addBatchNorm(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        if (n.int("training_mode") ?? 0) != 0 {
            throw n.fail(.unsupported, "training_mode is on: export the model in eval mode (model.eval())")
        }
        let c = shapes[x]!.c
        var values: [[Float]] = []
        for (i, what) in [(1, "scale"), (2, "B (bias)"), (3, "mean"), (4, "var")] {
            let v = try constant(n, i)
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

    private mutating func addClip(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        var low: Float?, high: Float?
        if opset < 11 {
            low = n.float("min")
            high = n.float("max")
        } else {
            low = try optionalConstant(n, 1).map { $0.floats.first ?? 0 }
            high = try optionalConstant(n, 2).map { $0.floats.first ?? 0 }
        }
        let noHigh = high.map { $0.isInfinite && $0 > 0 || $0 >= Float.greatestFiniteMagnitude } ?? true
        let noLow = low.map { $0.isInfinite && $0 < 0 || $0 <= -Float.greatestFiniteMagnitude } ?? true
        if low == 0, noHigh {
            try addReLU(n, slope: 0)
        } else if noLow, noHigh {
            try addAlias(n, x)
        } else {
            throw n.fail(
                .unsupported,
                "Clip to [\(low.map { "\($0)" } ?? "-inf"), \(high.map { "\($0)" } ?? "inf")] needs a clamp layer "
                    + "the engine does not have; Tessera runs Clip only as ReLU (min 0, no max)")
        }
    }

    // MARK: - Arithmetic and branches

    /// A constant broadcast over `shape`, one value per channel; nil when it is not one.
    private func perChannel(_ c: ONNXConstant, _ shape: Shape, flat isFlat: Bool) -> [Float]? {
        if c.count == 1 { return [Float](repeating: c.floats[0], count: shape.c) }
        let t = c.trimmed
        if !isFlat, t == [shape.c, 1, 1] { return c.floats }
        if isFlat, shape.h == 1, shape.w == 1, t == [shape.c] { return c.floats }
        return nil
    }

    private mutating func addArithmetic(_ n: inout NodeContext) throws {
        let op = n.node.opType
        guard n.node.input.count == 2 else { throw n.fail(.invalid, "\(op) takes two inputs") }
        let constA = isConstant(n.node.input[0]), constB = isConstant(n.node.input[1])
        if !constA, !constB {
            let a = try activation(n, 0), b = try activation(n, 1)
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
        let c = try constant(n, 1 - xi)
        let shape = shapes[x]!
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
        default: scale = Scale(scale: v, bias: nil)
        }
        try addLayer(n, .scale(scale), [x])
    }

    private mutating func addConcat(_ n: inout NodeContext) throws {
        let xs = try n.node.input.indices.map { try activation(n, $0) }
        guard let axis = n.int("axis") else { throw n.fail(.invalid, "Concat without 'axis'") }
        let isFlat = n.node.input.contains(where: flat.contains)
        let channelAxis = isFlat ? [1, -1] : [1, -3]
        guard channelAxis.contains(axis), !isFlat || xs.allSatisfy({ shapes[$0]!.spatial == .one }) else {
            throw n.fail(.unsupported, "Concat along axis \(axis): Tessera concatenates channels (axis 1) only")
        }
        try addLayer(n, .concat, xs)
    }

    // MARK: - The classifier head

    private mutating func addFlatten(_ n: inout NodeContext) throws {
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

    private mutating func addInnerProduct(_ n: inout NodeContext) throws {
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

    private mutating func addSoftmax(_ n: inout NodeContext) throws {
        let x = try activation(n, 0)
        let isFlat = flat.contains(n.node.input[0])
        let rank = isFlat ? 2 : 4
        let axis = n.int("axis") ?? (opset < 13 ? 1 : -1)
        let a = axis < 0 ? axis + rank : axis
        let shape = shapes[x]!
        // Before opset 13, Softmax runs over every axis from `axis` on.
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

/// One node and its attributes, for reading them and for messages that name it.
private struct NodeContext {
    let node: Onnx_NodeProto
    let name: String
    let file: String
    let attributes: [String: Onnx_AttributeProto]

    init(node: Onnx_NodeProto, name: String, file: String) {
        self.node = node
        self.name = name
        self.file = file
        var a: [String: Onnx_AttributeProto] = [:]
        for attr in node.attribute { a[attr.name] = attr }
        attributes = a
    }

    func fail(_ kind: ModelError.Kind, _ message: String) -> ModelError {
        ModelError(kind, file: file, "node '\(name)' (\(node.opType)): \(message)")
    }

    func int(_ key: String) -> Int? {
        guard let a = attributes[key], a.type == .int || (a.type == .undefined && a.hasI) else { return nil }
        return Int(clamping: a.i)
    }
    func ints(_ key: String) -> [Int]? {
        guard let a = attributes[key], a.type == .ints || (a.type == .undefined && !a.ints.isEmpty) else { return nil }
        return a.ints.map { Int(clamping: $0) }
    }
    func float(_ key: String) -> Float? {
        guard let a = attributes[key], a.type == .float || (a.type == .undefined && a.hasF) else { return nil }
        return a.f
    }
    func string(_ key: String) -> String? {
        guard let a = attributes[key], a.type == .string || (a.type == .undefined && a.hasS) else { return nil }
        return String(decoding: a.s, as: UTF8.self)
    }
}
