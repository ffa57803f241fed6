import Foundation
import SwiftProtobuf
import Testing

@testable import TesseraCluster
@testable import TesseraCore
@testable import TesseraModel
@testable import TestSupport

/// ONNX import: what loads, and each kind of broken or unsupported model gives a clear
/// ModelError naming the file, node and numbers; none crashes.
@Suite("ONNX import")
struct ONNXImportTests {
    static let fixtures = TestPaths.fixtures.appendingPathComponent("onnx")
    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent("\(name)/model.onnx").path }

    static func proto(_ name: String) throws -> Onnx_ModelProto {
        try ONNXFiles.read(fixture(name))
    }

    /// Writes `model` as `net.onnx` in a new folder; returns its path.
    static func write(_ model: Onnx_ModelProto, name: String = "net.onnx") throws -> String {
        let dir = try temporaryDirectory()
        return try writeFile(dir, name, Data(model.serializedBytes() as [UInt8]))
    }

    static func loadError(_ path: String, patchSize: Int? = nil) -> ModelError? {
        #expect(throws: ModelError.self) { try ModelLoader.load(ModelSource(model: path, patchSize: patchSize)) }
    }

    @Test("The fixtures import as the layers their nodes describe")
    func importsLayers() throws {
        let m = try ModelLoader.load(ModelSource(model: Self.fixture("conv_pool_gemm")))
        let types = m.classifier.layers.map(\.op.typeName)
        #expect(
            types == [
                "Convolution", "ReLU", "Convolution", "ReLU", "Pooling", "Pooling", "Convolution", "InnerProduct",
                "TanH", "InnerProduct", "Softmax",
            ], "\(types)")
        // ReLU runs in place after its convolution, as Caffe nets write it (the engine fuses it).
        #expect(m.classifier.layers[1].bottoms == m.classifier.layers[1].tops)
        // Surgery: Gemm becomes a convolution with the flattened input's size as kernel.
        guard case .convolution(let c) = m.net.layers[7].op else {
            Issue.record("fc after surgery is \(m.net.layers[7].op.typeName)")
            return
        }
        #expect(c.kernel == Size2(square: 3) && c.outputs == 16)
        #expect(m.patchSize == Size2(square: 19) && m.patchSizeSource.contains("ONNX"))
        // MatMul + Add: one InnerProduct with its bias; global pooling → a patch-sized window.
        let b = try ModelLoader.load(ModelSource(model: Self.fixture("bn_lrn_matmul_fp16")))
        let ips = b.classifier.layers.compactMap { l -> InnerProduct? in
            if case .innerProduct(let ip) = l.op { return ip } else { return nil }
        }
        #expect(ips.count == 1 && ips[0].bias?.count == 3)
        let pools = b.net.layers.compactMap { l -> Pooling? in
            if case .pooling(let p) = l.op { return p } else { return nil }
        }
        #expect(pools.last.map { !$0.global && $0.kernel == Size2(square: 4) } == true)
    }

    @Test("Weights from float16 initializers and external data; a bundle carries them inside")
    func externalDataAndBundles() throws {
        let path = Self.fixture("seed_net")
        let direct = try ModelLoader.load(ModelSource(model: path))
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let bytes = try ONNXFiles.selfContainedBytes(path)
        #expect(bytes.count > raw.count + 100_000, "the external weights are put inside")
        // What a worker receives: bytes only, named like a prototxt.
        let bundle = ModelBundle(prototxt: bytes, weights: [])
        let (_, planned) = try EngineSettings().plan(bundle)
        #expect(planned.classifier == direct.classifier)
        // The raw file alone (no folder) cannot be loaded: the error says why.
        let e = #expect(throws: ModelError.self) {
            try ModelLoader.load(ModelContents(prototxt: raw, weights: nil), patchSize: nil)
        }
        #expect(e?.description.contains("external") == true, "\(e?.description ?? "")")
        // A model without external data travels as its own file.
        let plain = Self.fixture("branches")
        #expect(try ONNXFiles.selfContainedBytes(plain) == [UInt8](try Data(contentsOf: URL(fileURLWithPath: plain))))
    }

    @Test("A truncated file, a text file, junk: clear errors")
    func unreadableFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixture("conv_pool_gemm")))
        let cut = try writeFile(dir, "cut.onnx", data.prefix(data.count / 2))
        let e1 = Self.loadError(cut)
        #expect(e1?.kind == .unreadable && e1?.file == cut)
        #expect(e1?.message.contains("truncated or corrupt") == true, "\(e1?.description ?? "")")
        let text = try writeFile(dir, "text.onnx", "name: \"net\"\nlayer { }\n")
        #expect(Self.loadError(text)?.message.contains("text file, not an ONNX model") == true)
        let junk = try writeFile(dir, "junk.onnx", Data([0x08, 0x07, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01]))
        #expect(Self.loadError(junk)?.kind == .unreadable)
        let empty = try writeFile(dir, "empty.onnx", Data())
        #expect(Self.loadError(empty)?.message.contains("empty") == true)
        // An ONNX model given with weights, or as the weights.
        let both = #expect(throws: ModelError.self) {
            try ModelLoader.load(ModelSource(model: Self.fixture("branches"), weights: cut))
        }
        #expect(both?.message.contains("holds its own weights") == true)
        let asWeights = #expect(throws: ModelError.self) {
            try ModelLoader.load(ModelSource(weights: Self.fixture("branches")))
        }
        #expect(asWeights?.message.contains("as the model") == true)
    }

    @Test("An unsupported operator is refused, naming the node, its type and what to do; ReLU6 is read")
    func unsupportedOperator() throws {
        var m = try Self.proto("conv_pool_gemm")
        let i = m.graph.node.firstIndex { $0.opType == "Tanh" }!
        m.graph.node[i].opType = "Selu"
        let e = Self.loadError(try Self.write(m))
        let text = e?.description ?? ""
        #expect(e?.kind == .unsupported)
        #expect(
            text.contains("node '\(m.graph.node[i].name)' (Selu)") && text.contains("no such layer"), "\(text)")
        // A custom domain, and Clip as ReLU6 (numbers: the `clamps` fixture).
        m = try Self.proto("conv_pool_gemm")
        m.graph.node[i].domain = "com.example"
        #expect(Self.loadError(try Self.write(m))?.message.contains("custom domain 'com.example'") == true)
        m = try Self.proto("bn_lrn_matmul_fp16")
        let clip = m.graph.node.firstIndex { $0.opType == "Clip" }!
        var six = Onnx_TensorProto()
        six.name = "clip_max"
        six.dataType = 1
        six.floatData = [6]
        m.graph.initializer.append(six)
        m.graph.node[clip].input.append("clip_max")
        let relu6 = try ModelLoader.load(ModelSource(model: try Self.write(m)))
        #expect(
            relu6.notes.contains { $0.contains("to [0.0, 6.0] is computed as 4 ReLU and Scale layers") },
            "\(relu6.notes)")
    }

    @Test("A dynamic input shape needs the patch size")
    func dynamicInput() throws {
        var m = try Self.proto("branches")
        m.graph.input[0].type.tensorType.shape.dim[2].dimParam = "height"
        m.graph.input[0].type.tensorType.shape.dim[3].dimParam = "width"
        let path = try Self.write(m)
        let e = Self.loadError(path)
        #expect(e?.kind == .patchSize)
        #expect(e?.message.contains("dynamic height × width ('height'×'width')") == true, "\(e?.description ?? "")")
        let loaded = try ModelLoader.load(ModelSource(model: path, patchSize: 14))
        #expect(loaded.patchSize == Size2(square: 14) && loaded.patchSizeSource == "--patch-size")
        #expect(!loaded.notes.contains { $0.contains("overrides") }, "nothing to override: \(loaded.notes)")
        // A fixed input overridden: the global pooling head runs at 20 too, as another classifier.
        let fixed = try ModelLoader.load(ModelSource(model: Self.fixture("resnet_block"), patchSize: 20))
        #expect(fixed.patchSize == Size2(square: 20))
        #expect(fixed.notes.contains { $0.hasPrefix("--patch-size 20") && $0.contains("overrides") }, "\(fixed.notes)")
        let same = try ModelLoader.load(ModelSource(model: Self.fixture("resnet_block"), patchSize: 16))
        #expect(!same.notes.contains { $0.contains("overrides") }, "\(same.notes)")
    }

    @Test("Initializers whose shapes do not fit their node are refused with the numbers")
    func mismatchedInitializers() throws {
        // A conv bias with too few values.
        var m = try Self.proto("conv_pool_gemm")
        let bias = m.graph.initializer.firstIndex { $0.name == "conv_1.bias" }!
        m.graph.initializer[bias].dims = [5]
        m.graph.initializer[bias].rawData = m.graph.initializer[bias].rawData.prefix(20)
        var e = Self.loadError(try Self.write(m))
        #expect(e?.kind == .weights)
        #expect(e?.message.contains("has 5 values (shape 5) for 8 output channels") == true, "\(e?.description ?? "")")
        // Dims that do not match the stored values.
        m = try Self.proto("conv_pool_gemm")
        m.graph.initializer[bias].dims = [9]
        e = Self.loadError(try Self.write(m))
        #expect(
            e?.message.contains("its shape 9 holds 9 values but it stores 32 bytes") == true, "\(e?.description ?? "")")
        // A Gemm whose weights take another number of inputs than the flattened activation.
        m = try Self.proto("conv_pool_gemm")
        let w = m.graph.initializer.firstIndex { $0.name == "fc_9.weight" }!
        m.graph.initializer[w].dims = [16, 27]
        m.graph.initializer[w].rawData = m.graph.initializer[w].rawData.prefix(16 * 27 * 4)
        e = Self.loadError(try Self.write(m))
        #expect(
            e?.message.contains("take 27 inputs, but its input is 6×3×3 = 54 values") == true, "\(e?.description ?? "")"
        )
    }

    @Test("External data: a missing file and a path leaving the model's folder are refused; links are followed")
    func externalDataErrors() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = try Data(contentsOf: URL(fileURLWithPath: Self.fixture("seed_net")))
        let alone = try writeFile(dir, "model.onnx", src)
        let e = Self.loadError(alone)
        #expect(e?.kind == .weights)
        #expect(
            e?.message.contains("external-data file 'model.onnx.data' does not exist") == true,
            "\(e?.description ?? "")")
        #expect(throws: ModelError.self) { try ONNXFiles.selfContainedBytes(alone) }
        var m = try Onnx_ModelProto(serializedBytes: src)
        for i in m.graph.initializer.indices {
            for j in m.graph.initializer[i].externalData.indices
            where m.graph.initializer[i].externalData[j].key == "location" {
                m.graph.initializer[i].externalData[j].value = "../outside/model.onnx.data"
            }
        }
        let escaping = Self.loadError(try writeFile(dir, "escaping.onnx", Data(m.serializedBytes() as [UInt8])))
        #expect(escaping?.message.contains("leaves the model's folder") == true, "\(escaping?.description ?? "")")
        for i in m.graph.initializer.indices {
            for j in m.graph.initializer[i].externalData.indices
            where m.graph.initializer[i].externalData[j].key == "location" {
                m.graph.initializer[i].externalData[j].value = "/etc/passwd"
            }
        }
        let absolute = Self.loadError(try writeFile(dir, "absolute.onnx", Data(m.serializedBytes() as [UInt8])))
        #expect(absolute?.message.contains("leaves the model's folder") == true)

        // The Hugging Face hub cache: the snapshot's files are links to blobs outside its folder.
        let fm = FileManager.default
        let blobs = dir.appendingPathComponent("blobs"), snapshot = dir.appendingPathComponent("snapshots/abc")
        try fm.createDirectory(at: blobs, withIntermediateDirectories: true)
        try fm.createDirectory(at: snapshot, withIntermediateDirectories: true)
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixture("seed_net") + ".data"))
        _ = try writeFile(blobs, "1f2e", src)
        _ = try writeFile(blobs, "9c8d", data)
        try fm.createSymbolicLink(atPath: snapshot.path + "/model.onnx", withDestinationPath: "../../blobs/1f2e")
        try fm.createSymbolicLink(atPath: snapshot.path + "/model.onnx.data", withDestinationPath: "../../blobs/9c8d")
        let linked = try ModelLoader.load(ModelSource(model: snapshot.path + "/model.onnx"))
        #expect(linked.classifier == (try ModelLoader.load(ModelSource(model: Self.fixture("seed_net")))).classifier)
        // A coordinator reading for others keeps links within its roots (here: the snapshot folder).
        let inSnapshot = { (path: String) in
            URL(fileURLWithPath: path).resolvingSymlinksInPath().path.hasPrefix(snapshot.resolvingSymlinksInPath().path)
        }
        let outside = #expect(throws: ModelError.self) {
            try ONNXFiles.selfContainedBytes(snapshot.path + "/model.onnx", dataWithin: inSnapshot)
        }
        #expect(outside?.message.contains("leads outside") == true, "\(outside?.description ?? "")")
        _ = try ONNXFiles.selfContainedBytes(snapshot.path + "/model.onnx", dataWithin: { _ in true })
    }

    @Test("ceil_mode=0 rounds the pooled size down where a last window is partial; ceil_mode=1 rounds up")
    func poolingRounding() throws {
        // At P = 20 the MaxPool 3/2 sees 14 rows: rounded down 6 windows (the 14th row in none),
        // which the AveragePool 2/2 turns into the 3×3 the Gemm's 54 inputs expect.
        var m = try Self.proto("conv_pool_gemm")
        m.graph.input[0].type.tensorType.shape.dim[2].dimValue = 20
        m.graph.input[0].type.tensorType.shape.dim[3].dimValue = 20
        let model = try ModelLoader.load(ModelSource(model: try Self.write(m)))
        let pools = model.net.layers.compactMap { l -> Pooling? in
            if case .pooling(let p) = l.op { return p } else { return nil }
        }
        #expect(pools.count == 2 && pools.allSatisfy { !$0.roundsUp })
        let shapes = try model.net.shapes(input: Size2(square: 20)).layers
        let maxPool = model.net.layers.firstIndex { $0.op.typeName == "Pooling" }!
        #expect(shapes[maxPool].spatial == Size2(square: 6))
        // Rounding down leaves no partial window: the net is still exact.
        #expect(model.geometry.isExact, "\(model.geometry.inexactReasons)")
        // Rounded up, the MaxPool gives 7, its last window partial: the attribute is read.
        let node = m.graph.node.firstIndex { $0.opType == "MaxPool" }!
        var ceil = Onnx_AttributeProto()
        ceil.name = "ceil_mode"
        ceil.type = .int
        ceil.i = 1
        m.graph.node[node].attribute.append(ceil)
        let up = try ModelLoader.load(ModelSource(model: try Self.write(m)))
        let upShapes = try up.net.shapes(input: Size2(square: 20)).layers
        #expect(upShapes[maxPool].spatial == Size2(square: 7))
        #expect(up.geometry.inexactReasons.joined().contains("partial last window"))
    }

    @Test("Layers Tessera cannot represent are refused with the reason")
    func unrepresentable() throws {
        // Asymmetric padding.
        var m = try Self.proto("padded_residual")
        let conv = m.graph.node.firstIndex { $0.opType == "Conv" }!
        var pads = Onnx_AttributeProto()
        pads.name = "pads"
        pads.type = .ints
        pads.ints = [0, 0, 1, 1]
        m.graph.node[conv].attribute.removeAll { $0.name == "pads" }
        m.graph.node[conv].attribute.append(pads)
        var e = Self.loadError(try Self.write(m))
        #expect(e?.message.contains("asymmetric pads [0, 0, 1, 1]") == true, "\(e?.description ?? "")")
        // Average pooling that does not count the padding.
        m = try Self.proto("padded_residual")
        let avg = m.graph.node.firstIndex { $0.opType == "AveragePool" }!
        m.graph.node[avg].attribute.removeAll { $0.name == "count_include_pad" }
        e = Self.loadError(try Self.write(m))
        #expect(e?.message.contains("count_include_pad=0") == true, "\(e?.description ?? "")")
        // An opset older than 9.
        m = try Self.proto("padded_residual")
        m.opsetImport[0].version = 8
        e = Self.loadError(try Self.write(m))
        #expect(e?.message.contains("opset 8 is older than opset 9") == true, "\(e?.description ?? "")")
    }

    @Test("A Softmax over flattened features wider than the channels is refused, not run per channel")
    func softmaxOverFlattenedFeatures() throws {
        // conv_pool_gemm: Conv (spatial > 1×1 at patch size) → Flatten → Gemm; a Softmax put between
        // Flatten and Gemm runs over all C×H×W features (user audit: it was computed per channel).
        var m = try Self.proto("conv_pool_gemm")
        let gemm = m.graph.node.firstIndex { $0.opType == "Gemm" }!
        var softmax = Onnx_NodeProto()
        softmax.opType = "Softmax"
        softmax.name = "feature_softmax"
        softmax.input = [m.graph.node[gemm].input[0]]
        softmax.output = ["softmaxed"]
        m.graph.node[gemm].input[0] = "softmaxed"
        m.graph.node.insert(softmax, at: gemm)
        let e = Self.loadError(try Self.write(m))
        #expect(e?.message.contains("node 'feature_softmax'") == true, "\(e?.description ?? "")")
        #expect(e?.message.contains("flattened features") == true, "\(e?.description ?? "")")
        // The model's own Softmax (after the last Gemm, 1×1) still loads.
        _ = try ModelLoader.load(ModelSource(model: Self.fixture("conv_pool_gemm")))
    }

    @Test("Per-channel std: checked, described, applied")
    func stdPreprocessing() throws {
        let p = Preprocessing(
            mean: [0.485, 0.456, 0.406], rawScale: 1 / 255, scale: 1, channelOrder: .rgb, std: [0.229, 0.224, 0.225])
        #expect(try p.validated(channels: 3) == p)
        #expect(p.descriptionLines.contains("value = (raw × \(Float(1) / 255) − mean[c]) / std[c] × 1.0"))
        #expect(throws: ModelError.self) { try p.validated(channels: 1) }
        var zero = p
        zero.std = [0.2, 0, 0.2]
        let e = #expect(throws: ModelError.self) { try zero.validated(channels: 3) }
        #expect(e?.kind == .preprocessing)
    }
}

/// Hostile-peer audit 54 F9: each tensor's external data was checked against its file only, so tensors that each
/// named a whole sparse 1 GiB file made the coordinator hold N GiB before protobuf's 2 GiB refused the model.
@Suite("ONNX external data: the total is bounded before it is read")
struct ONNXExternalTotalTests {
    @Test("three tensors of 1 GiB each are refused without reading them")
    func totalBounded() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("w.bin").path
        #expect(FileManager.default.createFile(atPath: data, contents: nil) && truncate(data, 1 << 30) == 0)
        let fixture = ONNXImportTests.fixture("seed_net")
        _ = try writeFile(dir, "model.onnx.data", Data(contentsOf: URL(fileURLWithPath: fixture + ".data")))
        var m = try Onnx_ModelProto(serializedBytes: Data(contentsOf: URL(fileURLWithPath: fixture)))
        var tensor = Onnx_TensorProto()
        tensor.dataType = 1
        tensor.dims = [1 << 28]
        tensor.dataLocation = .external
        for (key, value) in [("location", "w.bin"), ("offset", "0"), ("length", "\(1 << 30)")] {
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            tensor.externalData.append(entry)
        }
        for n in 0..<3 {
            tensor.name = "unused\(n)"
            m.graph.initializer.append(tensor)
        }
        let path = try writeFile(dir, "model.onnx", Data(m.serializedBytes() as [UInt8]))
        #expect {
            try ONNXFiles.selfContainedBytes(path)
        } throws: { error in
            "\(error)".contains("more than 2 GiB") && "\(error)".contains("unused1")
        }
        // (Counted before any tensor is read: the whole 2 GiB was in memory before protobuf refused it.)
    }
}
