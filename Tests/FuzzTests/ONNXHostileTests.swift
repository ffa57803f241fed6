import Foundation
import SwiftProtobuf
import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TestSupport

/// Builds small ONNX graphs in memory: what an attacker hands the coordinator.
struct ONNXGraph {
    var model = Onnx_ModelProto()

    init(channels: Int64 = 1, height: Int64 = 1, width: Int64 = 1, opset: Int64 = 17) {
        model.irVersion = 8
        var op = Onnx_OperatorSetIdProto()
        op.version = opset
        model.opsetImport = [op]
        model.graph.name = "hostile"
        model.graph.input = [Self.value("input", [1, channels, height, width])]
        model.graph.output = [Self.value("out", nil)]
    }

    static func value(_ name: String, _ dims: [Int64]?) -> Onnx_ValueInfoProto {
        var v = Onnx_ValueInfoProto()
        v.name = name
        v.type.tensorType.elemType = 1
        if let dims {
            v.type.tensorType.shape.dim = dims.map {
                var d = Onnx_TensorShapeProto.Dimension()
                d.dimValue = $0
                return d
            }
        }
        return v
    }

    static func attribute(_ name: String, ints: [Int64]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .ints
        a.ints = ints
        return a
    }

    static func attribute(_ name: String, int: Int64) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .int
        a.i = int
        return a
    }

    static func attribute(_ name: String, float: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .float
        a.f = float
        return a
    }

    static func tensor(_ name: String, _ dims: [Int64], floats: [Float]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = 1
        t.dims = dims
        t.floatData = floats
        return t
    }

    mutating func node(
        _ op: String, _ inputs: [String], _ outputs: [String], _ attributes: [Onnx_AttributeProto] = []
    ) {
        var n = Onnx_NodeProto()
        n.opType = op
        n.input = inputs
        n.output = outputs
        n.attribute = attributes
        model.graph.node.append(n)
    }

    mutating func initializer(_ t: Onnx_TensorProto) { model.graph.initializer.append(t) }

    var bytes: [UInt8] { (try? model.serializedBytes()) ?? [] }

    /// Loads the graph as a worker does (from bytes); the error it is refused with.
    func loadError(patchSize: Int? = nil) -> ModelError? {
        #expect(throws: ModelError.self) {
            try ModelLoader.load(
                ModelContents(prototxt: Data(bytes), prototxtName: "hostile.onnx", weights: nil), patchSize: patchSize)
        }
    }
}

/// Hostile ONNX graphs: each once crashed, allocated without bound or was accepted
/// with a wrong meaning; each must now be refused with an error naming the node.
@Suite("Hostile ONNX graphs")
struct ONNXHostileTests {
    @Test("Concats that widen an activation to 2^46 channels, then a scalar Mul: refused, not a 2^48-byte allocation")
    func broadcastOverHugeChannels() throws {
        for op in ["Mul", "Add", "Sub"] {
            var g = ONNXGraph()
            var previous = "input"
            for i in 0..<46 {
                g.node("Concat", [previous, previous], ["c\(i)"], [ONNXGraph.attribute("axis", int: 1)])
                previous = "c\(i)"
            }
            g.initializer(ONNXGraph.tensor("k", [], floats: [2]))
            g.node(op, op == "Sub" ? ["k", previous] : [previous, "k"], ["out"])
            let e = g.loadError()
            #expect(e?.kind == .unsupported, "\(e?.description ?? "")")
            #expect(
                e?.message.contains("node '\(op)_46' (\(op))") == true
                    && e?.message.contains("70368744177664 channels") == true
                    && e?.message.contains("broadcast values") == true,
                "\(e?.description ?? "")")
        }
        // A few per-channel constants over ordinary widths stay well inside the budget.
        var g = ONNXGraph(channels: 3, height: 1, width: 1)
        g.initializer(ONNXGraph.tensor("k", [], floats: [2]))
        g.node("Mul", ["input", "k"], ["m"])
        g.node("Add", ["m", "k"], ["a"])
        g.node("Sub", ["a", "k"], ["out"])
        _ = try ModelLoader.load(
            ModelContents(prototxt: Data(g.bytes), prototxtName: "ok.onnx", weights: nil), patchSize: nil)
    }

    @Test("A node output that reuses a name (the graph input, an earlier output, an initializer) is refused")
    func reusedOutputNames() throws {
        let w = ONNXGraph.tensor("w", [1, 1, 1, 1], floats: [2])
        // A Relu that writes over the graph's input, read by the next node.
        var g = ONNXGraph()
        g.initializer(w)
        g.node("Conv", ["input", "w"], ["c"])
        g.node("Relu", ["c"], ["input"], [])
        g.node("Sigmoid", ["input"], ["out"])
        var e = g.loadError()
        #expect(
            e?.message.contains("node 'Relu_1' (Relu): its output 'input' is the graph's input") == true,
            "\(e?.description ?? "")")
        // A Relu (in place after a convolution) that writes over an earlier node's output.
        g = ONNXGraph()
        g.initializer(w)
        g.node("Conv", ["input", "w"], ["c"])
        g.node("Conv", ["c", "w"], ["d"])
        g.node("Relu", ["d"], ["c"])
        g.node("Sigmoid", ["c"], ["out"])
        e = g.loadError()
        #expect(
            e?.message.contains("node 'Relu_2' (Relu): its output 'c' is also produced by an earlier node") == true,
            "\(e?.description ?? "")")
        // A Constant named like an activation, which later nodes would read as the constant.
        g = ONNXGraph()
        g.node("Relu", ["input"], ["a"])
        g.node("Constant", [], ["a"], [ONNXGraph.attribute("value_float", float: 2)])
        g.node("Mul", ["a", "a"], ["out"])
        e = g.loadError()
        #expect(
            e?.message.contains("node 'Constant_1' (Constant): its output 'a' is also produced by an earlier node")
                == true, "\(e?.description ?? "")")
        // A Constant named like the graph's input.
        g = ONNXGraph()
        g.node("Constant", [], ["input"], [ONNXGraph.attribute("value_float", float: 2)])
        g.node("Relu", ["input"], ["out"])
        e = g.loadError()
        #expect(e?.message.contains("its output 'input' is the graph's input") == true, "\(e?.description ?? "")")
        // A node output named like an initializer (a Cast of a constant included).
        g = ONNXGraph()
        g.initializer(w)
        g.node("Cast", ["w"], ["w"], [ONNXGraph.attribute("to", int: 1)])
        g.node("Relu", ["input"], ["out"])
        e = g.loadError()
        #expect(e?.message.contains("its output 'w' is also an initializer's name") == true, "\(e?.description ?? "")")
    }

    @Test("A Gemm or MatMul with an empty weight matrix is refused as such")
    func emptyHeadWeights() throws {
        for (op, dims) in [("Gemm", [Int64(0), 1]), ("MatMul", [1, 0])] {
            var g = ONNXGraph()
            g.initializer(ONNXGraph.tensor("w", dims, floats: []))
            g.node("Flatten", ["input"], ["f"])
            g.node(op, ["f", "w"], ["out"], op == "Gemm" ? [ONNXGraph.attribute("transB", int: 1)] : [])
            let e = g.loadError()
            #expect(e?.kind == .weights, "\(e?.description ?? "")")
            #expect(
                e?.message.contains("weights 'w' have shape \(dims[0])×\(dims[1]): an empty matrix") == true,
                "\(e?.description ?? "")")
        }
    }

    @Test("Integer initializers of more than 2^16 values (12 bytes each once decoded) are refused, naming them")
    func largeIntegerTensors() throws {
        for (type, size) in [(Int32(2), 1), (3, 1), (6, 4), (7, 8)] {
            var g = ONNXGraph()
            var t = ONNXGraph.tensor("w", [1 << 17, 1, 1, 1], floats: [])
            t.dataType = type
            t.rawData = Data(count: (1 << 17) * size)
            g.initializer(t)
            g.node("Conv", ["input", "w"], ["out"])
            let e = g.loadError()
            #expect(e?.kind == .weights, "\(e?.description ?? "")")
            #expect(
                e?.message.contains("initializer 'w' (input 2 of node 'Conv_0'): 131072 ") == true
                    && e?.message.contains("weights must be floating-point") == true, "\(e?.description ?? "")")
        }
    }

    /// Model audit 48 F5: integer weights were used as float weights without a word (onnxruntime refuses them).
    @Test("Integer weights, biases and Clip bounds are refused, naming the input; integer shapes are read")
    func integerValues() throws {
        func int32(_ name: String, _ dims: [Int64], _ values: [Int32]) -> Onnx_TensorProto {
            var t = ONNXGraph.tensor(name, dims, floats: [])
            t.dataType = 6
            t.int32Data = values
            return t
        }
        var g = ONNXGraph()
        g.initializer(int32("w", [2, 1, 1, 1], [1, -1]))
        g.node("Conv", ["input", "w"], ["out"])
        var e = g.loadError()
        #expect(e?.kind == .weights, "\(e?.description ?? "")")
        #expect(
            e?.message.contains("node 'Conv_0'") == true && e?.message.contains("input 2 'w' holds integers") == true,
            "\(e?.description ?? "")")
        g = ONNXGraph()
        g.initializer(ONNXGraph.tensor("w", [2, 1, 1, 1], floats: [1, -1]))
        g.initializer(int32("b", [2], [0, 1]))
        g.node("Conv", ["input", "w", "b"], ["out"])
        e = g.loadError()
        #expect(e?.message.contains("input 3 'b' holds integers") == true, "\(e?.description ?? "")")
        g = ONNXGraph()
        g.initializer(ONNXGraph.tensor("w", [2, 1, 1, 1], floats: [1, -1]))
        g.initializer(int32("lo", [], [0]))
        g.node("Conv", ["input", "w"], ["c"])
        g.node("Clip", ["c", "lo"], ["out"])
        e = g.loadError()
        #expect(e?.message.contains("input 2 'lo' holds integers") == true, "\(e?.description ?? "")")
        // The same net with float weights loads.
        g = ONNXGraph()
        g.initializer(ONNXGraph.tensor("w", [2, 1, 1, 1], floats: [1, -1]))
        g.node("Conv", ["input", "w"], ["out"])
        #expect(throws: Never.self) {
            try ModelLoader.load(
                ModelContents(prototxt: Data(g.bytes), prototxtName: "ok.onnx", weights: nil), patchSize: nil)
        }
    }

    @Test("raw_data of every type decodes exactly, NaN and infinities included")
    func rawDecoding() throws {
        func decode(_ type: Int32, _ bytes: [UInt8], count: Int64) throws -> ONNXConstant {
            var t = ONNXGraph.tensor("t", [count], floats: [])
            t.dataType = type
            t.rawData = Data(bytes)
            return try ONNXConstant(t, what: "t", file: "t.onnx")
        }
        var c = try decode(1, [0, 0, 0xC0, 0x3F, 0, 0, 0, 0xC0, 0, 0, 0xC0, 0x7F], count: 3)
        #expect(c.floats[0] == 1.5 && c.floats[1] == -2 && c.floats[2].isNaN && c.ints == nil)
        c = try decode(10, [0, 0x3C, 0, 0x7C, 0, 0x7E, 1, 0, 0xFF, 0xFB], count: 5)
        #expect(c.floats[0] == 1 && c.floats[1] == .infinity && c.floats[2].isNaN)
        #expect(c.floats[3] == Float(bitPattern: 0x3380_0000) && c.floats[4] == -65504)
        c = try decode(16, [0x80, 0x3F, 0x80, 0xFF, 0xC0, 0x7F], count: 3)
        #expect(c.floats[0] == 1 && c.floats[1] == -.infinity && c.floats[2].isNaN)
        let doubles = [1e300, -0.5, .nan].flatMap { d in
            (0..<8).map { UInt8(truncatingIfNeeded: d.bitPattern >> (8 * $0)) }
        }
        c = try decode(11, doubles, count: 3)
        #expect(c.floats[0] == .infinity && c.floats[1] == -0.5 && c.floats[2].isNaN)
        let longs = [Int64(-3), .max].flatMap { v in (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        c = try decode(7, longs, count: 2)
        #expect(c.ints == [-3, .max] && c.floats == [-3, Float(Int64.max)])
        c = try decode(6, [0xF9, 0xFF, 0xFF, 0xFF], count: 1)
        #expect(c.ints == [-7])
        #expect(try decode(3, [0xFF, 1], count: 2).ints == [-1, 1])
        #expect(try decode(2, [0xFF, 1], count: 2).ints == [255, 1])
    }

    @Test("A 65536×65536 patch (a 500 KB file) is refused at load, not left for every worker to allocate")
    func patchTooLarge() throws {
        var g = ONNXGraph(channels: 3, height: 65536, width: 65536)
        g.initializer(ONNXGraph.tensor("w", [2, 3], floats: [1, 1, 1, 1, 1, 1]))
        g.node("GlobalAveragePool", ["input"], ["p"])
        g.node("Flatten", ["p"], ["f"])
        g.node("Gemm", ["f", "w"], ["out"], [ONNXGraph.attribute("transB", int: 1)])
        var e = g.loadError()
        #expect(e?.kind == .shape, "\(e?.description ?? "")")
        #expect(
            e?.message.contains("at patch size 65536, one patch needs 12884901891 activation values") == true,
            "\(e?.description ?? "")")
        // The same from a Caffe definition (shapes only), and a patch size given on the command line.
        let caffe =
            "input: \"data\" input_shape { dim: 1 dim: 2 dim: 65536 dim: 65536 }\n"
            + "layer { name: \"c\" type: \"Convolution\" bottom: \"data\" top: \"c\" "
            + "convolution_param { num_output: 1 kernel_size: 1 } }\n"
            + "layer { name: \"p\" type: \"Pooling\" bottom: \"c\" top: \"p\" pooling_param { pool: AVE global_pooling: true } }\n"
        e = #expect(throws: ModelError.self) {
            try ModelLoader.load(
                ModelContents(prototxt: Data(caffe.utf8), prototxtName: "big.prototxt", weights: nil), patchSize: nil,
                requireWeights: false)
        }
        #expect(
            e?.message.contains("one patch needs 12884901888 activation values at once (at layer 'c')") == true,
            "\(e?.description ?? "")")
        g = ONNXGraph(channels: 3, height: 64, width: 64)
        g.initializer(ONNXGraph.tensor("w", [2, 3], floats: [1, 1, 1, 1, 1, 1]))
        g.node("GlobalAveragePool", ["input"], ["p"])
        g.node("Flatten", ["p"], ["f"])
        g.node("Gemm", ["f", "w"], ["out"], [ONNXGraph.attribute("transB", int: 1)])
        #expect(g.loadError(patchSize: 60000)?.message.contains("one patch needs") == true)
        _ = try ModelLoader.load(
            ModelContents(prototxt: Data(g.bytes), prototxtName: "ok.onnx", weights: nil), patchSize: 4096)
    }

    @Test("Hostile sizes and numbers: errors naming the field, no allocation of the declared size")
    func hostileSizes() throws {
        let big = Int64.max
        // Weights declaring 10^9 × 9 values with 36 bytes of data, and dims whose product overflows.
        for dims in [[Int64(1_000_000_000), 1, 3, 3], [1 << 62, 1 << 62, 3, 3], [1 << 29, 1, 1, 1]] {
            var g = ONNXGraph(height: 8, width: 8)
            var t = ONNXGraph.tensor("w", dims, floats: [])
            t.rawData = Data(count: 36)
            g.initializer(t)
            g.node("Conv", ["input", "w"], ["out"])
            let e = g.loadError()
            #expect(e?.kind == .weights && e?.message.contains("initializer 'w'") == true, "\(e?.description ?? "")")
        }
        // Attributes at Int64's limits, negative and zero.
        let attributes: [(Onnx_AttributeProto, String)] = [
            (ONNXGraph.attribute("pads", ints: [big, big, big, big]), "pads"),
            (ONNXGraph.attribute("pads", ints: [-1, -1, -1, -1]), "pads"),
            (ONNXGraph.attribute("strides", ints: [big, big]), "strides"),
            (ONNXGraph.attribute("strides", ints: [0, 0]), "strides"),
            (ONNXGraph.attribute("dilations", ints: [Int64.min, 1]), "dilations"),
            (ONNXGraph.attribute("group", int: big), "group"),
            (ONNXGraph.attribute("group", int: 0), "group"),
        ]
        for (a, field) in attributes {
            var g = ONNXGraph(height: 8, width: 8)
            g.initializer(ONNXGraph.tensor("w", [2, 1, 3, 3], floats: [Float](repeating: 1, count: 18)))
            g.node("Conv", ["input", "w"], ["out"], [a])
            let e = g.loadError()
            #expect(e?.message.contains("node 'Conv_0' (Conv): \(field)") == true, "\(e?.description ?? "")")
        }
        // An input of 100000 × 100000 pixels; an absurd opset.
        var g = ONNXGraph(height: 100_000, width: 100_000)
        g.node("Relu", ["input"], ["out"])
        #expect(g.loadError()?.message.contains("100000×100000, not a patch size") == true)
        g = ONNXGraph(opset: big)
        g.node("Relu", ["input"], ["out"])
        #expect(g.loadError()?.message.contains("opset \(big) is newer") == true)
        // A node reading its own output, and one reading an output produced later.
        g = ONNXGraph()
        g.node("Relu", ["out"], ["out"])
        #expect(g.loadError()?.message.contains("input 'out' is neither the graph's input") == true)
    }
}

@Suite("Hostile ONNX graph fuzzing")
struct ONNXGraphFuzzTests {
    static let ops = [
        "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Relu",
        "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "PRelu", "Abs", "LRN", "Add", "Sub", "Mul",
        "Concat", "Flatten", "Reshape", "Gemm",
        "MatMul", "Softmax", "Dropout", "Identity", "Constant", "Cast", "Loop",
    ]
    static let numbers: [Int64] = [0, 1, 1, 2, 2, 3, -1, -2, 65536, 65537, 1 << 31, .max, .min]

    /// A random graph of supported operators wired at random (inputs may be later or
    /// own outputs, names may repeat), with hostile attribute values and initializers
    /// whose dims and data disagree, often widening an activation with Concat.
    static func graph(_ rng: inout SplitMix64) -> [UInt8] {
        let hw = rng.pick([Int64(1), 2, 3, 8])
        var g = ONNXGraph(channels: rng.pick([1, 3]), height: hw, width: hw)
        var names = ["input"]
        var constantNames: [String] = []
        func number() -> Int64 { rng.pick(numbers) }
        for i in 0..<(1 + rng.int(6)) {
            let rank = rng.int(5)
            let dims = (0..<rank).map { _ in rng.chance(4) ? number() : Int64(1 + rng.int(3)) }
            let count = dims.reduce(Int64(1)) { $0 &* max($1, 0) }
            let values = rng.chance(3) ? rng.int(40) : Int(clamping: max(0, min(count, 4096)))
            g.initializer(ONNXGraph.tensor("k\(i)", dims, floats: (0..<values).map { _ in Float(rng.int(5)) - 2 }))
            constantNames.append("k\(i)")
        }
        // A widening run: Concat of the same blob repeated, a few times over.
        if rng.chance(3) {
            for _ in 0..<(1 + rng.int(24)) {
                let out = "w\(names.count)"
                let x = names.last!
                g.node(
                    "Concat", [String](repeating: x, count: 2 + rng.int(7)), [out],
                    [ONNXGraph.attribute("axis", int: 1)])
                names.append(out)
            }
        }
        for i in 0..<(1 + rng.int(12)) {
            let op = rng.pick(ops)
            var inputs = [rng.chance(8) ? "later\(i + 1)" : rng.pick(names)]
            for _ in 0..<rng.int(3) { inputs.append(rng.chance(2) ? rng.pick(constantNames) : rng.pick(names)) }
            var attributes: [Onnx_AttributeProto] = []
            for key in ["pads", "strides", "dilations", "kernel_shape"] where rng.chance(3) {
                let n = rng.chance(3) ? rng.int(5) : (key == "pads" ? 4 : 2)
                attributes.append(ONNXGraph.attribute(key, ints: (0..<n).map { _ in number() }))
            }
            for key in ["group", "axis", "size", "transB", "ceil_mode", "to", "value_int"] where rng.chance(4) {
                attributes.append(ONNXGraph.attribute(key, int: number()))
            }
            if rng.chance(6) {
                attributes.append(ONNXGraph.attribute("alpha", float: rng.pick([.nan, .infinity, 0.5])))
            }
            let out = rng.chance(10) ? rng.pick(names) : (i == 0 && rng.chance(4) ? "later1" : "t\(i)")
            g.node(op, inputs, [out], attributes)
            names.append(out)
        }
        g.model.graph.output = [ONNXGraph.value(rng.chance(8) ? rng.pick(names) : names.last!, nil)]
        return g.bytes
    }

    @Test("≥20 000 random graphs with hostile wiring, sizes and numbers: errors only, bounded time")
    func graphs() throws {
        let summary = runFuzz(target: "onnx-graph", seed: 0x0_4E4E_6772, iterations: 20_000) { rng, _ in
            Self.graph(&rng)
        } body: { input in
            do {
                let loaded = try ModelLoader.load(
                    ModelContents(prototxt: Data(input), prototxtName: "net.onnx", weights: nil), patchSize: nil)
                _ = try ModelReport(model: loaded, preprocessing: Preprocessing())
                return .accepted
            } catch let e as ModelError {
                guard e.message.count > 10 else { throw FuzzInvariantError("undescriptive error: \(e)") }
                return .rejected(e.kind.rawValue)
            }
        }
        #expect(summary.accepted > 0 || FuzzEnvironment.onlyIndex != nil, "some graphs should load")
        #expect(summary.rejected["UNEXPECTED"] == nil)
    }
}

/// The ONNX user audit's messages: each said something untrue of the model it refused.
@Suite("ONNX refusals that name the real problem")
struct ONNXRefusalWordingTests {
    static func load(_ g: ONNXGraph) throws -> LoadedModel {
        try ModelLoader.load(
            ModelContents(prototxt: Data(g.bytes), prototxtName: "m.onnx", weights: nil), patchSize: nil)
    }

    @Test("Several outputs: the one ending in Softmax or Sigmoid is mapped; none or two are refused with extract_model")
    func severalOutputs() throws {
        var g = ONNXGraph(channels: 2)
        g.node("Relu", ["input"], ["logits"])
        g.node("Softmax", ["logits"], ["out"], [ONNXGraph.attribute("axis", int: 1)])
        g.model.graph.output = [ONNXGraph.value("logits", nil), ONNXGraph.value("out", nil)]
        let model = try Self.load(g)
        #expect(model.net.layers.last?.op == .softmax)
        #expect(
            model.notes.contains { $0.contains("Tessera maps 'out', the one that ends in Softmax") }, "\(model.notes)")
        // Two probability outputs: which is the map cannot be told.
        g.node("Sigmoid", ["logits"], ["p2"])
        g.model.graph.output.append(ONNXGraph.value("p2", nil))
        var e = g.loadError()
        #expect(
            e?.message.contains("2 of them end in a Softmax") == true
                && e?.message.contains(
                    "onnx.utils.extract_model('hostile.onnx', 'hostile.one-output.onnx', ['input'], ['out'])")
                    == true,
            "\(e?.description ?? "")")
        // None does.
        g = ONNXGraph(channels: 2)
        g.node("Relu", ["input"], ["a"])
        g.node("Tanh", ["a"], ["out"])
        g.model.graph.output = [ONNXGraph.value("a", nil), ONNXGraph.value("out", nil)]
        e = g.loadError()
        #expect(e?.message.contains("none of them ends in a Softmax") == true, "\(e?.description ?? "")")
    }

    @Test("A node after the output that nothing reads is left out, with a note; one before it too")
    func unusedNodesLeftOut() throws {
        var g = ONNXGraph(channels: 2)
        g.node("Relu", ["input"], ["a"])
        g.node("Tanh", ["a"], ["unused_before"])
        g.node("Sigmoid", ["a"], ["out"])
        g.node("Relu", ["out"], ["unused_after"])
        let model = try Self.load(g)
        #expect(model.net.layers.map(\.op) == [.relu(negativeSlope: 0), .sigmoid], "\(model.net.layers)")
        #expect(
            model.notes.contains { $0.contains("2 nodes the output 'out' does not need left out") }, "\(model.notes)")
    }

    @Test("Max(x, 0) is a ReLU; Max with another constant is refused as Max, not as a sum")
    func maxWithConstant() throws {
        var g = ONNXGraph(channels: 2)
        g.initializer(ONNXGraph.tensor("zero", [], floats: [0]))
        g.node("Max", ["zero", "input"], ["m"])
        g.node("Sigmoid", ["m"], ["out"])
        #expect(try Self.load(g).net.layers.first?.op == .relu(negativeSlope: 0))
        g = ONNXGraph(channels: 2)
        g.initializer(ONNXGraph.tensor("six", [], floats: [6]))
        g.node("Max", ["input", "six"], ["m"])
        g.node("Sigmoid", ["m"], ["out"])
        let e = g.loadError()
        #expect(
            e?.message.contains("Max with a constant input ('six')") == true
                && e?.message.contains("no layer for the maximum with another constant") == true
                && e?.message.contains("sums") == false, "\(e?.description ?? "")")
    }

    @Test("An initializer missing from the file is called undefined, not 'must be a constant'")
    func missingInitializer() throws {
        var g = ONNXGraph(channels: 2)
        g.node("Conv", ["input", "w"], ["c"])
        g.node("Sigmoid", ["c"], ["out"])
        let e = g.loadError()
        #expect(
            e?.message.contains("input 'w' is not defined") == true
                && e?.message.contains("must be a constant") == false,
            "\(e?.description ?? "")")
    }

    @Test("The first bytes of an ONNX file (a truncated copy) are called truncated, not a text file")
    func truncatedHead() throws {
        var g = ONNXGraph(channels: 2)
        g.model.producerName = "pytorch"
        g.node("Sigmoid", ["input"], ["out"])
        let head = Array(g.bytes.prefix(10))
        #expect(head.first == 0x08)
        let e = #expect(throws: ModelError.self) {
            try ModelLoader.load(
                ModelContents(prototxt: Data(head), prototxtName: "m.onnx", weights: nil), patchSize: nil)
        }
        #expect(
            e?.message.contains("truncated or corrupt") == true && e?.message.contains("text file") == false,
            "\(e?.description ?? "")")
    }
}
