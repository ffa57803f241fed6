import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TestSupport

/// Exporter patterns (user audit 15): what imports (shape arithmetic, Div by constants, zero
/// Pads, PRelu, reductions and Squeeze heads, LogSoftmax, float16 models; their numbers are
/// checked against onnxruntime in `ONNXFixtureTests`) and what is refused, each refusal
/// naming the node and saying why, on fixture graphs edited here.
@Suite("ONNX exporter patterns")
struct ONNXExporterPatternTests {
    typealias T = ONNXImportTests

    static func load(_ m: Onnx_ModelProto) throws -> LoadedModel {
        try ModelLoader.load(ModelSource(model: try T.write(m)))
    }

    /// The refusal of `m`, which must name `node` and contain every one of `parts`.
    static func refusal(
        _ m: Onnx_ModelProto, node: String, _ parts: String..., sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let e = T.loadError(try T.write(m))
        let text = e?.description ?? "(no error)"
        #expect(e?.kind == .unsupported, "\(text)", sourceLocation: sourceLocation)
        #expect(text.contains("node '\(node)'"), "\(text) should name \(node)", sourceLocation: sourceLocation)
        for p in parts {
            #expect(text.contains(p), "\(text) should say '\(p)'", sourceLocation: sourceLocation)
        }
    }

    static func index(_ m: Onnx_ModelProto, _ name: String) -> Int {
        m.graph.node.firstIndex { $0.name == name }!
    }

    static func attribute(
        _ name: String, ints: [Int64]? = nil, int: Int64? = nil, string: String? = nil
    )
        -> Onnx_AttributeProto
    {
        var a = Onnx_AttributeProto()
        a.name = name
        if let ints {
            a.type = .ints
            a.ints = ints
        } else if let int {
            a.type = .int
            a.i = int
        } else if let string {
            a.type = .string
            a.s = Data(string.utf8)
        }
        return a
    }

    static func setAttribute(_ m: inout Onnx_ModelProto, _ node: String, _ a: Onnx_AttributeProto) {
        let i = index(m, node)
        m.graph.node[i].attribute.removeAll { $0.name == a.name }
        m.graph.node[i].attribute.append(a)
    }

    static func setInitializer(_ m: inout Onnx_ModelProto, _ name: String, ints: [Int64]) {
        let i = m.graph.initializer.firstIndex { $0.name == name }!
        m.graph.initializer[i].dims = [Int64(ints.count)]
        m.graph.initializer[i].rawData = Data(ints.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) })
    }

    static func setInitializer(_ m: inout Onnx_ModelProto, _ name: String, floats: [Float], dims: [Int64]) {
        let i = m.graph.initializer.firstIndex { $0.name == name }!
        m.graph.initializer[i].dims = dims
        m.graph.initializer[i].rawData = Data(
            floats.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
    }

    // MARK: - What imports

    @Test("Shape arithmetic, Div, Pad, PRelu, reductions, LogSoftmax and float16 casts import as layers, with notes")
    func imports() throws {
        let v11 = try ModelLoader.load(ModelSource(model: T.fixture("view_flatten_op11")))
        #expect(v11.classifier.layers.last?.op == .softmax)
        #expect(v11.notes.contains { $0.contains("'logsoftmax_14' (LogSoftmax) is imported as Softmax") })
        #expect(v11.notes.contains { $0.contains("'shape_7' (Shape)") && $0.contains("batch 1") })
        // Div by 2 is Mul by 0.5.
        guard case .scale(let s) = v11.classifier.layers[0].op else {
            Issue.record("div_1 is \(v11.classifier.layers[0].op.typeName)")
            return
        }
        #expect(s.scale == [0.5, 0.5, 0.5] && s.bias == nil)
        // Per-channel PRelu: four layers; the shared slope: a leaky ReLU.
        let v13 = try ModelLoader.load(ModelSource(model: T.fixture("view_flatten_op13")))
        let names = v13.classifier.layers.map(\.name)
        #expect(
            names.starts(with: [
                "conv_1", "prelu_2/positive", "prelu_2/negative", "prelu_2/slope", "prelu_2", "averagepool_3",
                "prelu_4",
            ]), "\(names)")
        #expect(v13.classifier.layers[6].op == .relu(negativeSlope: 0.2))
        // Pads folded into the Conv and the AveragePool that read them.
        let pad = try ModelLoader.load(ModelSource(model: T.fixture("zero_pad")))
        guard case .convolution(let c) = pad.classifier.layers[0].op,
            case .pooling(let p) = pad.classifier.layers[2].op
        else {
            Issue.record("\(pad.classifier.layers.map(\.op.typeName))")
            return
        }
        #expect(c.pad == Size2(1, 1) && p.pad == Size2(1, 2))
        #expect(pad.notes.contains { $0.contains("Pad node 'pad_1' is folded into node 'conv_2'") })
        #expect(!pad.geometry.isExact)
        // After a ReLU, a zero Pad folds into the MaxPool that reads it (zeros never win there).
        let maxPad = try ModelLoader.load(ModelSource(model: T.fixture("relu_pad_maxpool")))
        let pools = maxPad.classifier.layers.compactMap { layer -> Pooling? in
            if case .pooling(let p) = layer.op { return p } else { return nil }
        }
        #expect(pools.count == 1 && pools[0].method == .max && pools[0].pad == Size2(1, 1), "\(pools)")
        #expect(maxPad.notes.contains { $0.contains("Pad node 'pad_3' is folded into node 'maxpool_4'") })
        #expect(pad.geometry.inexactReasons.joined().contains("conv_2"), "\(pad.geometry.inexactReasons)")
        // A whole-float16 model runs in float32, with a note naming FLOAT16.
        let half = try ModelLoader.load(ModelSource(model: T.fixture("float16_model")))
        #expect(half.notes.contains { $0.contains("FLOAT16") && $0.contains("float32") }, "\(half.notes)")
        // Reductions: global pooling.
        let heads = try ModelLoader.load(ModelSource(model: T.fixture("pooled_heads_op11")))
        let global = heads.classifier.layers.filter {
            if case .pooling(let p) = $0.op { return p.global } else { return false }
        }
        #expect(global.map(\.name) == ["reducemean_4", "reducemax_5", "globalaveragepool_7"])
    }

    // MARK: - Refusals

    @Test("Shape arithmetic that depends on the activations' values, or no flatten, is refused naming the node")
    func shapeArithmeticRefusals() throws {
        // A Gather of the activations themselves.
        var m = try T.proto("view_flatten_op13")
        m.graph.node[Self.index(m, "gather_6")].input[0] = "prelu_4"
        try Self.refusal(m, node: "gather_6", "Gather of the activations' values")
        // A Cast of the activations to an integer type, named by its type.
        m = try T.proto("conv_pool_gemm")
        let tanh = m.graph.node.firstIndex { $0.opType == "Tanh" }!
        m.graph.node[tanh].opType = "Cast"
        m.graph.node[tanh].attribute = [Self.attribute("to", int: 6)]
        try Self.refusal(m, node: m.graph.node[tanh].name, "Cast of the activations to INT32")
        // The computed target is not a flatten: [1, 4, -1].
        m = try T.proto("view_flatten_op11")
        Self.setInitializer(&m, "minus_one", ints: [4, -1])
        try Self.refusal(m, node: "reshape_12", "Reshape to [1, 4, -1]")
    }

    @Test("Div of activations, LogSoftmax before other nodes, reductions over other axes: refused with the reason")
    func operatorRefusals() throws {
        var m = try T.proto("branches")
        let mul = m.graph.node.firstIndex { $0.opType == "Mul" && $0.input[0] == $0.input[1] }!
        m.graph.node[mul].opType = "Div"
        try Self.refusal(m, node: m.graph.node[mul].name, "Div of two activations")
        m = try T.proto("misc_ops")
        let sub = m.graph.node.firstIndex { $0.opType == "Sub" }!
        m.graph.node[sub].opType = "Div"
        try Self.refusal(m, node: m.graph.node[sub].name, "Div of a constant by the activations")
        // LogSoftmax is the map's probabilities only as the last layer.
        m = try T.proto("conv_pool_gemm")
        let tanh = m.graph.node.firstIndex { $0.opType == "Tanh" }!
        m.graph.node[tanh].opType = "LogSoftmax"
        try Self.refusal(m, node: m.graph.node[tanh].name, "other nodes compute on its output")
        // Reductions and Squeeze over other axes.
        m = try T.proto("pooled_heads_op11")
        Self.setAttribute(&m, "reducemean_4", Self.attribute("axes", ints: [1]))
        try Self.refusal(m, node: "reducemean_4", "over axes [1]", "only the spatial axes (2, 3)")
        m.graph.node[Self.index(m, "reducemean_4")].attribute.removeAll { $0.name == "axes" }
        try Self.refusal(m, node: "reducemean_4", "over all axes")
        m = try T.proto("pooled_heads_op11")
        Self.setAttribute(&m, "squeeze_6", Self.attribute("axes", ints: [1]))
        try Self.refusal(m, node: "squeeze_6", "Squeeze of axes [1]")
        // A PRelu slope that is neither one value nor one per channel.
        m = try T.proto("view_flatten_op13")
        Self.setInitializer(&m, "prelu.slope", floats: [0.1, 0.2, 0.3, 0.4, 0.5], dims: [5])
        try Self.refusal(m, node: "prelu_2", "a slope of shape 5")
    }

    @Test(
        "Pads that are not zero, symmetric and spatial, or that feed a MaxPool of signed values, are refused with a specific reason"
    )
    func padRefusals() throws {
        var m = try T.proto("zero_pad")
        Self.setAttribute(&m, "pad_1", Self.attribute("mode", string: "reflect"))
        try Self.refusal(m, node: "pad_1", "mirrors the input", "pad with zeros only")
        Self.setAttribute(&m, "pad_1", Self.attribute("mode", string: "edge"))
        try Self.refusal(m, node: "pad_1", "repeats the input's edge pixels")
        m = try T.proto("zero_pad")
        Self.setInitializer(&m, "pad1.pads", ints: [0, 0, 1, 1, 0, 0, 2, 1])
        try Self.refusal(m, node: "pad_1", "asymmetric pads (top 1, left 1, bottom 2, right 1)")
        m = try T.proto("zero_pad")
        Self.setInitializer(&m, "pad1.pads", ints: [0, 1, 1, 1, 0, 1, 1, 1])
        try Self.refusal(m, node: "pad_1", "the batch or channel axis")
        m = try T.proto("zero_pad")
        Self.setInitializer(&m, "pad1.value", floats: [0.5], dims: [])
        try Self.refusal(m, node: "pad_1", "the value 0.5")
        // A MaxPool reading a Pad of values that can be negative (a leaky ReLU's): zeros are not −∞.
        m = try T.proto("relu_pad_maxpool")
        m.graph.node[Self.index(m, "relu_2")].opType = "LeakyRelu"
        try Self.refusal(m, node: "maxpool_4", "Pad node 'pad_3'", "MaxPool's own padding", "can be negative")
        // After a ReLU, but padding so much that a window holds padding only.
        m = try T.proto("relu_pad_maxpool")
        Self.setInitializer(&m, "pad.pads", ints: [0, 0, 3, 3, 0, 0, 3, 3])
        try Self.refusal(m, node: "maxpool_4", "hold only padding")
        // A Pad read by a layer that cannot take it.
        m = try T.proto("zero_pad")
        m.graph.node[Self.index(m, "conv_2")].opType = "Relu"
        m.graph.node[Self.index(m, "conv_2")].input = ["pad_1"]
        try Self.refusal(m, node: "conv_2", "output of Pad node 'pad_1'")
    }

    @Test("Unsupported operators: constant folding suggested only where it removes the node; Transpose hints NCHW")
    func unsupportedMessages() throws {
        var m = try T.proto("conv_pool_gemm")
        let tanh = m.graph.node.firstIndex { $0.opType == "Tanh" }!
        let name = m.graph.node[tanh].name
        m.graph.node[tanh].opType = "Selu"
        try Self.refusal(m, node: name, "the engine has no such layer")
        #expect(T.loadError(try T.write(m))?.message.contains("onstant-fold") == false)
        m.graph.node[tanh].opType = "Transpose"
        try Self.refusal(m, node: name, "channels-last (NHWC)", "--inputs-as-nchw")
        m.graph.node[tanh].opType = "Range"
        try Self.refusal(m, node: name, "computes shapes or indices", "onnxsim")
        // A node whose inputs are all constants: constant folding removes it.
        m = try T.proto("view_flatten_op11")
        m.graph.node[Self.index(m, "concat_11")].opType = "Expand"
        try Self.refusal(m, node: "concat_11", "its inputs are all constants", "constant-fold")
    }

    @Test("Wording: element types by name, too-large numbers, flattened Concat, strided SAME padding")
    func wording() throws {
        var m = try T.proto("branches")
        m.graph.input[0].type.tensorType.elemType = 10
        var e = T.loadError(try T.write(m))
        #expect(e?.message.contains("not a float32 tensor (FLOAT16)") == true, "\(e?.description ?? "")")
        m = try T.proto("branches")
        m.graph.input[0].type.tensorType.shape.dim[1].dimValue = 100_000_000
        e = T.loadError(try T.write(m))
        #expect(e?.message.contains("100000000 channels: Tessera feeds 1 to 65536") == true, "\(e?.description ?? "")")
        m = try T.proto("padded_residual")
        let conv = m.graph.node.firstIndex { $0.opType == "Conv" }!
        Self.setAttribute(
            &m, m.graph.node[conv].name, Self.attribute("pads", ints: [1 << 30, 1 << 30, 1 << 30, 1 << 30]))
        e = T.loadError(try T.write(m))
        #expect(e?.message.contains("are too large") == true, "\(e?.description ?? "")")
        m = try T.proto("padded_residual")
        m.graph.node[conv].attribute.removeAll { $0.name == "pads" }
        Self.setAttribute(&m, m.graph.node[conv].name, Self.attribute("auto_pad", string: "SAME_UPPER"))
        Self.setAttribute(&m, m.graph.node[conv].name, Self.attribute("strides", ints: [2, 2]))
        try Self.refusal(m, node: m.graph.node[conv].name, "depends on the input's height and width")
        // Concat of flattened features wider than 1×1.
        m = try T.proto("conv_pool_gemm")
        let flatten = m.graph.node.firstIndex { $0.opType == "Flatten" }!
        var concat = Onnx_NodeProto()
        concat.opType = "Concat"
        concat.name = "flat_concat"
        concat.input = [m.graph.node[flatten].output[0], m.graph.node[flatten].output[0]]
        concat.output = ["concatenated"]
        concat.attribute = [Self.attribute("axis", int: 1)]
        m.graph.node[flatten + 1].input[0] = "concatenated"
        m.graph.node.insert(concat, at: flatten + 1)
        try Self.refusal(m, node: "flat_concat", "Concat of flattened features", "6×3×3")
    }
}
