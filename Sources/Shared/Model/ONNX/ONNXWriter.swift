import Foundation
import TesseraCore

/// Writes a `Net` as an ONNX model (opset 17), so the fully convolutional net Tessera
/// computes can be checked in onnxruntime or used elsewhere. Caffe's semantics are kept
/// where ONNX has a choice: pooling rounds up (`ceil_mode=1`) unless the net's layer rounds
/// down, average pooling counts its padding (`count_include_pad=1`), Softmax runs over the channels.
package enum ONNXWriter {
    package static let opset: Int64 = 17

    /// The model's bytes. `input` fixes the input's height × width; nil leaves them
    /// dynamic ("height", "width"), the natural choice for a fully convolutional net.
    package static func write(_ net: Net, input: Size2?) throws -> [UInt8] {
        var w = Writer()
        try w.add(net)
        var graph = Onnx_GraphProto()
        graph.name = net.name.isEmpty ? "tessera" : net.name
        graph.node = w.nodes
        graph.initializer = w.initializers
        graph.input = [
            valueInfo(
                net.inputName,
                [
                    .param("N"), .value(net.inputChannels), input.map { .value($0.h) } ?? .param("height"),
                    input.map { .value($0.w) } ?? .param("width"),
                ])
        ]
        var output = Onnx_ValueInfoProto()
        output.name = w.current[net.outputName] ?? net.outputName
        output.type.tensorType.elemType = 1
        graph.output = [output]
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.producerName = "tessera"
        if let patch = net.patchSize {
            // A fully convolutional net's input is dynamic: its patch size travels as metadata.
            var entry = Onnx_StringStringEntryProto()
            entry.key = ONNXImporter.patchSizeKey
            entry.value = "\(patch.h)x\(patch.w)"
            model.metadataProps = [entry]
        }
        var opsetID = Onnx_OperatorSetIdProto()
        opsetID.domain = ""
        opsetID.version = opset
        model.opsetImport = [opsetID]
        model.graph = graph
        do {
            return try model.serializedBytes()
        } catch {
            throw ModelError("cannot write the net as ONNX (\(error)): over protobuf's 2 GiB")
        }
    }

    enum Dim {
        case value(Int)
        case param(String)
    }

    static func valueInfo(_ name: String, _ dims: [Dim]) -> Onnx_ValueInfoProto {
        var v = Onnx_ValueInfoProto()
        v.name = name
        v.type.tensorType.elemType = 1
        v.type.tensorType.shape.dim = dims.map {
            var d = Onnx_TensorShapeProto.Dimension()
            switch $0 {
            case .value(let n): d.dimValue = Int64(n)
            case .param(let p): d.dimParam = p
            }
            return d
        }
        return v
    }

    /// Builds the nodes: Caffe's in-place layers get fresh output names (ONNX tensors
    /// are written once); `current` maps each blob to its latest tensor.
    struct Writer {
        var nodes: [Onnx_NodeProto] = []
        var initializers: [Onnx_TensorProto] = []
        var current: [String: String] = [:]
        var used: Set<String> = []
        /// Blobs flattened by an InnerProduct (N × features).
        var flat: Set<String> = []

        mutating func fresh(_ base: String) -> String {
            var name = base
            var k = 1
            while used.contains(name) {
                k += 1
                name = "\(base)_\(k)"
            }
            used.insert(name)
            return name
        }

        mutating func constant(_ name: String, _ dims: [Int], _ values: [Float]) -> String {
            var t = Onnx_TensorProto()
            t.name = fresh(name)
            t.dims = dims.map { Int64($0) }
            t.dataType = 1
            t.rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }
            initializers.append(t)
            return t.name
        }

        mutating func node(
            _ op: String, _ name: String, _ inputs: [String], attributes: [Onnx_AttributeProto] = []
        ) -> String {
            var n = Onnx_NodeProto()
            n.opType = op
            n.name = fresh(name)
            n.input = inputs
            n.output = [n.name]
            n.attribute = attributes
            nodes.append(n)
            return n.name
        }

        static func ints(_ name: String, _ v: [Int]) -> Onnx_AttributeProto {
            var a = Onnx_AttributeProto()
            a.name = name
            a.type = .ints
            a.ints = v.map { Int64($0) }
            return a
        }
        static func int(_ name: String, _ v: Int) -> Onnx_AttributeProto {
            var a = Onnx_AttributeProto()
            a.name = name
            a.type = .int
            a.i = Int64(v)
            return a
        }
        static func float(_ name: String, _ v: Float) -> Onnx_AttributeProto {
            var a = Onnx_AttributeProto()
            a.name = name
            a.type = .float
            a.f = v
            return a
        }

        mutating func add(_ net: Net) throws {
            used.insert(net.inputName)
            current[net.inputName] = net.inputName
            for layer in net.layers {
                let ins = try layer.bottoms.map { b -> String in
                    guard let t = current[b] else {
                        throw ModelError(layer: layer.name, "input blob '\(b)' is not produced by any earlier layer")
                    }
                    return t
                }
                let isFlat = layer.bottoms.contains(where: flat.contains)
                let out = try emit(layer, ins, flat: isFlat)
                for top in layer.tops {
                    current[top] = out
                    if isFlat { flat.insert(top) } else { flat.remove(top) }
                }
                if case .innerProduct = layer.op { layer.tops.forEach { flat.insert($0) } }
            }
        }

        /// A per-channel constant shaped to broadcast over N×C×H×W (or N×C when flat).
        mutating func perChannel(_ name: String, _ v: [Float], flat: Bool) -> String {
            constant(name, flat ? [v.count] : [v.count, 1, 1], v)
        }

        mutating func emit(_ layer: Layer, _ ins: [String], flat: Bool) throws -> String {
            let name = layer.name
            let x = ins[0]
            switch layer.op {
            case .convolution(let c):
                var inputs = [
                    x, constant("\(name).weight", [c.outputs, c.inputsPerGroup, c.kernel.h, c.kernel.w], c.weights),
                ]
                if let b = c.bias { inputs.append(constant("\(name).bias", [b.count], b)) }
                return node(
                    "Conv", name, inputs,
                    attributes: [
                        Self.ints("kernel_shape", [c.kernel.h, c.kernel.w]),
                        Self.ints("strides", [c.stride.h, c.stride.w]),
                        Self.ints("pads", [c.pad.h, c.pad.w, c.pad.h, c.pad.w]),
                        Self.ints("dilations", [c.dilation.h, c.dilation.w]), Self.int("group", c.group),
                    ])
            case .pooling(let p):
                if p.global { return node(p.method == .max ? "GlobalMaxPool" : "GlobalAveragePool", name, [x]) }
                guard p.dilation == .one else {
                    throw ModelError(
                        .unsupported, layer: name, "a dilated pooling window (the dense net's) is not written as ONNX")
                }
                var attributes = [
                    Self.ints("kernel_shape", [p.kernel.h, p.kernel.w]),
                    Self.ints("strides", [p.stride.h, p.stride.w]),
                    Self.ints("pads", [p.pad.h, p.pad.w, p.pad.h, p.pad.w]), Self.int("ceil_mode", p.roundsUp ? 1 : 0),
                ]
                if p.method == .average { attributes.append(Self.int("count_include_pad", 1)) }
                return node(p.method == .max ? "MaxPool" : "AveragePool", name, [x], attributes: attributes)
            case .innerProduct(let ip):
                let flatX = flat ? x : node("Flatten", name + "_flatten", [x], attributes: [Self.int("axis", 1)])
                var inputs = [flatX, constant("\(name).weight", [ip.outputs, ip.inputs], ip.weights)]
                if let b = ip.bias { inputs.append(constant("\(name).bias", [b.count], b)) }
                return node("Gemm", name, inputs, attributes: [Self.int("transB", 1)])
            case .relu(let slope):
                return slope == 0
                    ? node("Relu", name, [x]) : node("LeakyRelu", name, [x], attributes: [Self.float("alpha", slope)])
            case .sigmoid: return node("Sigmoid", name, [x])
            case .tanh: return node("Tanh", name, [x])
            case .elu(let alpha): return node("Elu", name, [x], attributes: [Self.float("alpha", alpha)])
            case .softplus: return node("Softplus", name, [x])
            case .lrn(let l):
                guard l.region == .acrossChannels else {
                    throw ModelError(.unsupported, layer: name, "ONNX has no WITHIN_CHANNEL LRN")
                }
                return node(
                    "LRN", name, [x],
                    attributes: [
                        Self.int("size", l.size), Self.float("alpha", l.alpha), Self.float("beta", l.beta),
                        Self.float("bias", l.k),
                    ])
            case .batchNorm(let bn):
                let c = bn.mean.count
                let inputs = [
                    x, constant("\(name).scale", [c], bn.scale ?? [Float](repeating: 1, count: c)),
                    constant("\(name).bias", [c], bn.bias ?? [Float](repeating: 0, count: c)),
                    constant("\(name).mean", [c], bn.mean), constant("\(name).var", [c], bn.variance),
                ]
                return node("BatchNormalization", name, inputs, attributes: [Self.float("epsilon", bn.eps)])
            case .scale(let s):
                let scaled = node("Mul", name, [x, perChannel("\(name).scale", s.scale, flat: flat)])
                guard let b = s.bias else { return scaled }
                return node("Add", name + "_bias", [scaled, perChannel("\(name).bias", b, flat: flat)])
            case .identity: return node("Identity", name, [x])
            case .softmax: return node("Softmax", name, [x], attributes: [Self.int("axis", 1)])
            case .concat: return node("Concat", name, ins, attributes: [Self.int("axis", 1)])
            case .eltwise(let e):
                switch e.operation {
                case .product:
                    var acc = ins[0]
                    for other in ins.dropFirst() { acc = node("Mul", name, [acc, other]) }
                    return acc
                case .max:
                    return node("Max", name, ins)
                case .sum:
                    let terms = ins.enumerated().map { i, t -> String in
                        let k = i < e.coefficients.count ? e.coefficients[i] : 1
                        return k == 1
                            ? t : node("Mul", "\(name)_coeff\(i)", [t, constant("\(name).coeff\(i)", [], [k])])
                    }
                    return terms.count == 1 ? node("Identity", name, terms) : node("Sum", name, terms)
                }
            }
        }
    }
}
