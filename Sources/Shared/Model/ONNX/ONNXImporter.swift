import Foundation
import TesseraCore

/// Turns an ONNX graph into Tessera's `Net` (docs/ARCHITECTURE.md §2): each node becomes
/// the layer that computes the same numbers (Conv → Convolution, Gemm/MatMul →
/// InnerProduct, BatchNormalization, pooling, activations, per-channel Add/Sub/Mul/Div → Scale,
/// Add/Sub/Mul of two activations → Eltwise, Concat), pass-through nodes (Identity,
/// Dropout, Flatten) become aliases, and shape arithmetic becomes constants. Anything else
/// is refused, naming the node.
///
/// Shapes are followed at patch size while importing, so every refusal that depends
/// on them (a flattened head that does not fit, pooling that rounds down) names the
/// sizes at fault.
///
/// This file walks the graph (input, nodes in order, output) and keeps the blobs;
/// the operators are mapped in `ONNXImporter+Operators.swift` and `+Head.swift`, PRelu in
/// `+PRelu.swift`, Pad folding in `+Pad.swift`, shape arithmetic evaluated at import in
/// `+Shapes.swift`, and the refusal of other operators is worded in `+Unsupported.swift`;
/// node attributes and node errors are `NodeContext` (`ONNXNodeContext.swift`),
/// initializers are decoded by `ONNXConstant` (`ONNXTensors.swift`), element types are
/// named by `ONNXElementType` and external data is read by `ONNXFiles` (`ONNXExternalData.swift`).
struct ONNXImporter {
    /// The model's file (for messages).
    var file: String
    /// Patch size given by the user, which wins over the graph's input shape.
    var patchOverride: Size2?
    /// The patch size recorded in the model's metadata (`patchSizeKey`), used when the input's is dynamic.
    var recordedPatch: Size2?
    static let patchSizeKey = "tessera.patch_size"
    /// What the importer did that a user should know.
    var notes: [String] = []

    /// Oldest default-domain opset read; the newest is the newest the PyPI `onnx` 1.23 package knows.
    static let opsets = 9...28

    static let supported = [
        "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax",
        "BatchNormalization", "Relu", "LeakyRelu", "Abs", "PRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Elu",
        "Softplus",
        "Clip", "LRN", "Add", "Sub",
        "Mul",
        "Div", "Sum", "Max", "Concat", "Pad", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Gemm", "MatMul",
        "Softmax", "LogSoftmax", "Dropout", "Identity", "Constant", "Cast", "Shape", "Gather", "Slice",
    ]

    struct Imported {
        var net: Net
        /// The input's height and width when the graph declares them.
        var declaredInput: Size2?
    }

    // MARK: - State while importing

    var opset = 0
    var initializers: [String: Onnx_TensorProto] = [:]
    var constants: [String: ONNXConstant] = [:]
    /// Pass-through tensors: the blob each one is.
    var alias: [String: String] = [:]
    /// Activation shapes at patch size, by blob name.
    var shapes: [String: Shape] = [:]
    /// Tensors (by their ONNX names) flattened to N×features (rank 2); the others are N×C×H×W.
    var flat: Set<String> = []
    /// How many node inputs (and graph outputs) read each blob.
    var readers: [String: Int] = [:]
    var uses: [String: Int] = [:]
    var layers: [Layer] = []
    var layerNames: Set<String> = []
    var inputName = ""
    /// Values materialised by broadcasting constants over channels (Add/Sub/Mul with
    /// a per-channel constant), all nodes together.
    var broadcastValues = 0
    /// Whether the note on shape arithmetic evaluated at import was given.
    var notedShapes = false
    /// Whether the note on a Cast of the activations to another floating-point type was given.
    var notedPrecision = false
    /// Zero Pad nodes waiting for the Conv or pooling node that reads them, by output name.
    var pendingPads: [String: PendingPad] = [:]
    /// The LogSoftmax imported as Softmax, which must be the net's last layer.
    var logSoftmax: String?
    /// Outputs of a Transpose to channels-last, waiting for the Flatten of a Keras head
    /// (`ONNXImporter+ChannelsLast.swift`): the N×C×H×W blob transposed, and the node's name.
    var channelsLast: [String: (blob: String, transpose: String)] = [:]
    /// Features flattened in H, W, C order from such a Transpose: the activation's shape, the Transpose.
    var flattenedChannelsLast: [String: (shape: Shape, transpose: String)] = [:]

    /// Most values the import expands constants to (`broadcastValues`): a hostile
    /// graph could otherwise widen an activation to 2^40 channels with a few Concats
    /// and ask for a scalar to be broadcast over them.
    static let maxBroadcastValues = 1 << 26

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

        // `convert --format onnx` records the patch size of the fully convolutional net it writes.
        if let entry = model.metadataProps.first(where: { $0.key == Self.patchSizeKey }) {
            let parts = entry.value.split(separator: "x").compactMap { Int($0) }
            guard parts.count == 2, parts.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
                throw ModelError(
                    .patchSize, file: file, "metadata \(Self.patchSizeKey) is '\(entry.value)', not HEIGHTxWIDTH")
            }
            recordedPatch = Size2(parts[0], parts[1])
        }
        let (input, channels, declared) = try readInput(graph)
        inputName = input
        let (outputName, needed) = try chooseOutput(graph, input: input)
        for (index, n) in graph.node.enumerated() where needed[index] {
            for i in n.input where !i.isEmpty { uses[i, default: 0] += 1 }
        }
        uses[outputName, default: 0] += 1
        guard let patch = patchOverride ?? declared ?? recordedPatch else {
            throw ModelError(.patchSize, file: file, "the patch size is unknown")
        }
        shapes[input] = Shape(c: channels, h: patch.h, w: patch.w)
        readers[input] = uses[input] ?? 0

        for (index, node) in graph.node.enumerated() where needed[index] {
            try addNode(node, index: index)
        }
        let output = resolve(outputName)
        guard let last = layers.last else {
            throw ModelError(.unsupported, file: file, "the graph has no node Tessera runs: it computes nothing")
        }
        guard last.tops.first == output else {
            throw ModelError(
                .unsupported, file: file,
                "the graph's output '\(outputName)' is not computed by its last node "
                    + "('\(last.name)'): remove the nodes after it")
        }
        if let log = logSoftmax, last.name != log {
            throw ModelError(
                .unsupported, file: file,
                "node '\(log)' (LogSoftmax): other nodes compute on its output; Tessera imports LogSoftmax only "
                    + "as the net's last layer, as Softmax (a map of probabilities): end the model with it")
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
    func readInput(_ graph: Onnx_GraphProto) throws -> (String, Int, Size2?) {
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
                "\(what) is not a float32 tensor (\(ONNXElementType.name(input.type.tensorType.elemType))): "
                    + "Tessera feeds float32 pixels; export the model with a FLOAT input (a float16 model: "
                    + "keep a float32 input and Cast it, as onnxconverter-common's keep_io_types does)")
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
        guard case .dimValue(let c) = dims[1].value else {
            throw ModelError(
                .unsupported, file: file,
                "\(what) has \(describe(dims[1])) channels: the channel count must be a fixed number")
        }
        guard c > 0, c <= 1 << 16 else {
            throw ModelError(
                .unsupported, file: file, "\(what) has \(c) channels: Tessera feeds 1 to 65536 channels")
        }
        var declared: Size2?
        if case .dimValue(let h) = dims[2].value, case .dimValue(let w) = dims[3].value {
            guard h > 0, w > 0, h <= 1 << 16, w <= 1 << 16 else {
                throw ModelError(.patchSize, file: file, "\(what) is \(h)×\(w), not a patch size between 1 and 65536")
            }
            declared = Size2(Int(h), Int(w))
        } else if patchOverride == nil && recordedPatch == nil {
            throw ModelError(
                .patchSize, file: file,
                "\(what) has a dynamic height × width (\(describe(dims[2]))×\(describe(dims[3]))): "
                    + "the patch size is unknown; give the size of the patches the classifier was trained on")
        }
        return (input.name, Int(c), declared)
    }

    // MARK: - Nodes

    func resolve(_ name: String) -> String {
        var n = name
        var steps = 0
        while let a = alias[n], steps < 1_000_000 {
            n = a
            steps += 1
        }
        return n
    }

    /// The node's name for layers and messages: its own, or its op type and position.
    mutating func layerName(_ node: Onnx_NodeProto, index: Int) -> String {
        var name = node.name.isEmpty ? "\(node.opType)_\(index)" : node.name
        if layerNames.contains(name) { name += "_\(index)" }
        layerNames.insert(name)
        return name
    }

    mutating func addNode(_ node: Onnx_NodeProto, index: Int) throws {
        let name = layerName(node, index: index)
        var n = NodeContext(node: node, name: name, file: file)
        guard node.domain.isEmpty || node.domain == "ai.onnx" else {
            throw n.fail(
                .unsupported,
                "an operator of the custom domain '\(node.domain)': Tessera runs standard ONNX operators only")
        }
        if node.opType == "Transpose", try addChannelsLastTranspose(&n) { return }
        guard Self.supported.contains(node.opType) else { throw unsupportedOperator(n) }
        // Nodes that compute constants: shape arithmetic (`ONNXImporter+Shapes.swift`).
        let allConstant = !node.input.isEmpty && node.input.allSatisfy { !$0.isEmpty && isConstant($0) }
        switch node.opType {
        case "Constant": try addConstant(&n)
        case "Cast": try addCast(&n)
        case "Shape": try addShape(&n)
        case "Gather": try addGather(&n)
        case "Slice": try addSlice(&n)
        case "Squeeze", "Unsqueeze":
            if isConstant(node.input.first ?? "") { try addConstantSqueeze(&n) } else { try addLayerNode(&n) }
        case "Concat":
            if allConstant { try addConstantConcat(&n) } else { try addLayerNode(&n) }
        case "Add", "Sub", "Mul", "Div":
            if allConstant && node.input.count == 2 { try addConstantArithmetic(&n) } else { try addLayerNode(&n) }
        default: try addLayerNode(&n)
        }
    }

    /// A node that computes on the activations: one or more layers.
    mutating func addLayerNode(_ n: inout NodeContext) throws {
        let node = n.node
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
        case "Abs": try addReLU(n, slope: -1)  // |x| = x for x > 0, −1·x otherwise
        case "HardSigmoid", "HardSwish": try addHardSigmoid(&n, swish: node.opType == "HardSwish")
        case "Sigmoid": try addLayer(n, .sigmoid, [try activation(n, 0)])
        case "Tanh": try addLayer(n, .tanh, [try activation(n, 0)])
        case "Elu": try addLayer(n, .elu(alpha: n.float("alpha") ?? 1), [try activation(n, 0)])
        case "Softplus": try addLayer(n, .softplus, [try activation(n, 0)])
        case "Clip": try addClip(&n)
        case "LRN":
            guard let size = n.int("size"), size > 0, size <= 1 << 16 else {
                throw n.fail(.invalid, "LRN needs a positive 'size'")
            }
            let lrn = LRN(
                region: .acrossChannels, size: size, alpha: n.float("alpha") ?? 1e-4, beta: n.float("beta") ?? 0.75,
                k: n.float("bias") ?? 1)
            try addLayer(n, .lrn(lrn), [try spatial(n)])
        case "PRelu": try addPRelu(&n)
        case "Add", "Sub", "Mul", "Div": try addArithmetic(&n)
        case "Sum", "Max": try addVariadic(&n)
        case "Concat": try addConcat(&n)
        case "Pad": try addPad(&n)
        case "Flatten", "Reshape": try addFlatten(&n)
        case "Squeeze": try addSqueeze(&n)
        case "Unsqueeze":
            throw n.fail(
                .unsupported,
                "Unsqueeze of the activations: Tessera's activations are N×C×H×W (or N×features after a Flatten); "
                    + "export the model without adding axes")
        case "ReduceMean", "ReduceMax": try addReduction(&n)
        case "Gemm", "MatMul": try addInnerProduct(&n)
        case "Softmax", "LogSoftmax": try addSoftmax(&n)
        default:  // Dropout, Identity
            if node.opType == "Dropout", let mode = try? constant(n, 2), mode.floats.first ?? 0 != 0 {
                throw n.fail(.unsupported, "training_mode is on: export the model in eval mode (model.eval())")
            }
            try addAlias(n, try activation(n, 0))
        }
    }

    // MARK: - Inputs of a node

    func isConstant(_ name: String) -> Bool { initializers[name] != nil || constants[name] != nil }

    /// Input `i` of the node, which must be an activation (not a constant).
    func activation(_ n: NodeContext, _ i: Int) throws -> String {
        guard i < n.node.input.count, !n.node.input[i].isEmpty else {
            throw n.fail(.invalid, "input \(i + 1) is missing")
        }
        let raw = n.node.input[i]
        if let refusal = channelsLastRefusal(n, raw) { throw refusal }
        try requireNoPendingPad(n, raw)
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
    func optionalConstant(_ n: NodeContext, _ i: Int) throws -> ONNXConstant? {
        guard i < n.node.input.count, !n.node.input[i].isEmpty else { return nil }
        return try constant(n, i)
    }

    /// Input `i` as a constant the node computes with (weights, a bias, a Clip's bounds): ONNX types these as
    /// the activations' floating-point type. Integers were read as float weights without a word, where
    /// onnxruntime refuses the model (model audit 48 F5). Shapes, axes and pads use `constant`.
    func valueConstant(_ n: NodeContext, _ i: Int) throws -> ONNXConstant {
        let c = try constant(n, i)
        guard c.ints == nil else {
            throw n.fail(
                .weights,
                "input \(i + 1) '\(n.node.input[i])' holds integers: \(n.node.opType) computes with it in the "
                    + "activations' floating-point type, so ONNX requires float, float16, bfloat16 or double "
                    + "(onnxruntime refuses the model too): export it as float")
        }
        return c
    }

    /// Input `i` as a value constant (`valueConstant`), or nil when the node leaves it out.
    func optionalValueConstant(_ n: NodeContext, _ i: Int) throws -> ONNXConstant? {
        guard i < n.node.input.count, !n.node.input[i].isEmpty else { return nil }
        return try valueConstant(n, i)
    }

    func constant(_ n: NodeContext, _ i: Int) throws -> ONNXConstant {
        guard i < n.node.input.count, !n.node.input[i].isEmpty else {
            throw n.fail(.invalid, "input \(i + 1) is missing")
        }
        let name = n.node.input[i]
        if let c = constants[name] { return c }
        guard let t = initializers[name] else {
            guard shapes[resolve(name)] != nil || channelsLast[name] != nil else {
                throw n.fail(
                    .invalid,
                    "input '\(name)' is not defined: no initializer, Constant node or earlier node has that name "
                        + "(a weight missing from the file?)")
            }
            throw n.fail(
                .unsupported,
                "input '\(name)' must be a constant (an initializer): Tessera takes weights from initializers, "
                    + "not from computed tensors")
        }
        return try ONNXConstant(t, what: "initializer '\(name)' (input \(i + 1) of node '\(n.name)')", file: file)
    }

    // MARK: - Adding layers

    /// Appends a layer computing the node's first output from `bottoms`, and its shape.
    mutating func addLayer(_ n: NodeContext, _ op: LayerOp, _ bottoms: [String], inPlace: Bool = false) throws {
        let out = n.node.output[0]
        try requireNew(n, out)
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
            readers[out] = uses[out] ?? 0
        }
        shapes[top] = shape
    }

    /// Refuses `out` as a node's output when the graph already has a tensor of that
    /// name (ONNX assigns each name once): a later node would read one of the two.
    func requireNew(_ n: NodeContext, _ out: String) throws {
        if out == inputName {
            throw n.fail(.invalid, "its output '\(out)' is the graph's input")
        }
        if initializers[out] != nil {
            throw n.fail(.invalid, "its output '\(out)' is also an initializer's name")
        }
        guard shapes[out] == nil, alias[out] == nil, constants[out] == nil else {
            throw n.fail(.invalid, "its output '\(out)' is also produced by an earlier node")
        }
    }

    /// The node's output is its input (Identity, Dropout at inference, Flatten).
    mutating func addAlias(_ n: NodeContext, _ blob: String, flatten: Bool = false) throws {
        let out = n.node.output[0]
        try requireNew(n, out)
        alias[out] = blob
        readers[blob, default: 0] += (uses[out] ?? 0) - 1
        if flatten || flat.contains(n.node.input[0]) { flat.insert(out) }
        if let order = flattenedChannelsLast[n.node.input[0]] { flattenedChannelsLast[out] = order }
    }

    /// Whether a layer may write its output over `blob`: nothing else reads it.
    func ownsAlone(_ blob: String) -> Bool {
        blob != inputName && readers[blob] == 1 && layers.last?.tops == [blob]
    }

}
