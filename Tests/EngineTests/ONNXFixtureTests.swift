import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// ONNX models against onnxruntime: fixtures made by `Tests/Fixtures/onnx/make_fixtures.py`
/// (models built with onnx.helper, references computed by onnxruntime).
@Suite("ONNX models vs onnxruntime fixtures")
struct ONNXFixtureTests {
    static let root = TestPaths.fixtures.appendingPathComponent("onnx")

    static let names = [
        "bn_lrn_matmul_fp16", "branches", "conv_pool_gemm", "floor_pool", "misc_ops", "padded_residual",
        "resnet_block", "resnet_stem", "seed_net", "view_flatten_op11", "view_flatten_op13", "pooled_heads_op18",
        "pooled_heads_op11", "zero_pad", "float16_model", "relu_pad_maxpool", "keras_head", "abs_activation", "clamps",
        "sparse_pool", "elu_softplus",
    ]

    struct Manifest: Decodable {
        struct Array: Decodable { var file: String; var shape: [Int] }
        struct Patches: Decodable { var input: Array; var probabilities: Array }
        struct Preprocess: Decodable {
            var channel_order: String; var raw_scale: Float; var mean: [Float]; var std: [Float]; var scale: Float
        }
        var name: String; var patch_size: Int; var classes: Int; var exact: Bool; var tolerance: Float
        var preprocess: Preprocess; var patches: Patches; var image: Array; var map: Array
    }

    struct Fixture {
        let dir: URL
        let manifest: Manifest
        let model: LoadedModel

        init(_ name: String) throws {
            dir = ONNXFixtureTests.root.appendingPathComponent(name)
            manifest = try JSONDecoder().decode(
                Manifest.self, from: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
            model = try ModelLoader.load(ModelSource(model: dir.appendingPathComponent("model.onnx").path))
        }

        func floats(_ a: Manifest.Array) throws -> [Float] {
            let data = try Data(contentsOf: dir.appendingPathComponent(a.file))
            #expect(data.count == a.shape.reduce(4, *), "\(a.file) has \(data.count) bytes")
            return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }

        var image: ArrayImage {
            get throws {
                let a = manifest.image
                let bytes = try Data(contentsOf: dir.appendingPathComponent(a.file))
                return ArrayImage(
                    width: a.shape[1], height: a.shape[0], channels: a.shape[2], pixels: bytes.map(Float.init))
            }
        }

        var preprocessing: Preprocessing {
            let p = manifest.preprocess
            return Preprocessing(
                mean: p.mean, rawScale: p.raw_scale, scale: p.scale,
                channelOrder: p.channel_order == "rgb" ? .rgb : .bgr,
                std: p.std)
        }
    }

    static func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    @Test("Every fixture is there")
    func fixturesPresent() {
        for name in Self.names {
            #expect(
                FileManager.default.fileExists(atPath: Self.root.appendingPathComponent("\(name)/model.onnx").path),
                "\(name)")
        }
    }

    @Test("Patch probabilities equal onnxruntime's", arguments: names)
    func patches(_ name: String) throws {
        let f = try Fixture(name)
        let m = f.manifest.patches
        let inputs = try f.floats(m.input), expected = try f.floats(m.probabilities)
        let (n, c, p) = (m.input.shape[0], m.input.shape[1], m.input.shape[2])
        #expect(f.model.patchSize == Size2(square: p))
        #expect(f.model.geometry.classes == f.manifest.classes)
        #expect(f.model.geometry.isExact == f.manifest.exact)
        let runner = try NetRunner(net: f.model.classifier)
        var got: [Float] = []
        for i in 0..<n {
            let patch = Tensor(Shape(c: c, h: p, w: p), values: Array(inputs[(i * c * p * p)..<((i + 1) * c * p * p)]))
            got += try runner.forward(patch, threads: 2).values
        }
        let diff = Self.maxDiff(got, expected)
        #expect(diff <= f.manifest.tolerance, "\(name): max difference \(diff) from onnxruntime")
        // The fully convolutional net (after surgery) gives the same numbers at patch size.
        let fcn = try NetRunner(net: f.model.net)
        let first = Tensor(Shape(c: c, h: p, w: p), values: Array(inputs[0..<(c * p * p)]))
        let d2 = Self.maxDiff(try fcn.forward(first, threads: 2).values, Array(expected[0..<f.manifest.classes]))
        #expect(d2 <= f.manifest.tolerance, "\(name): the fully convolutional net differs by \(d2)")
        print("onnx fixture \(name): patch probabilities vs onnxruntime max |Δ| \(diff), FCN \(d2)")
    }

    @Test("Naive maps equal onnxruntime's; exact nets agree in every mode; tiles are bit-identical", arguments: names)
    func maps(_ name: String) throws {
        let f = try Fixture(name)
        let image = try f.image
        let engine = try MapEngine(model: f.model, allowPadding: !f.manifest.exact)
        let mapper = LocalMapper(engine: engine, preprocessing: f.preprocessing, threads: 2)
        let expected = try f.floats(f.manifest.map)
        let naive = try mapper.map(image, mode: .naive)
        let diff = Self.maxDiff(naive.data, expected)
        #expect(diff <= f.manifest.tolerance, "\(name): naive map differs from onnxruntime's by \(diff)")
        var maps: [MapMode: ProbabilityMap] = [.naive: naive]
        for mode in [MapMode.shift, .dense, .fast] {
            maps[mode] = try mapper.map(image, mode: mode)
        }
        var agreement: [String] = []
        if f.manifest.exact {
            for mode in [MapMode.shift, .dense] {
                let d = Self.maxDiff(maps[mode]!.data, naive.data)
                #expect(d <= 1e-5, "\(name): \(mode) differs from naive by \(d)")
                agreement.append("\(mode) vs naive \(d)")
            }
        } else {
            let d = Self.maxDiff(maps[.shift]!.data, maps[.dense]!.data)
            #expect(d <= 1e-5, "\(name): shift differs from dense by \(d)")
            agreement.append("shift vs dense \(d)")
            // The map of a net that pads is the dense net's own pass over the whole padded image.
            let whole = engine.tasks.wholeImageInput(Size2(image.height, image.width))
            let mapping = try ChannelMapping.resolve(
                imageChannels: 3, netChannels: engine.fcn.inputChannels, order: f.preprocessing.channelOrder)
            let input = PixelRegion(image: image, paddedRect: whole, halfPatch: engine.tasks.halfPatch)
                .tensor(mapping: mapping, preprocessing: f.preprocessing)
            let pass = try NetRunner(net: engine.plan.dense, lrnDilation: engine.plan.lrnDilation)
                .forward(input, threads: 2)
            let w = Self.maxDiff(maps[.dense]!.data, Reference.topLeft(pass, Size2(image.height, image.width)))
            #expect(w <= 1e-5, "\(name): dense differs from the whole-image pass by \(w)")
            agreement.append("dense vs whole-image pass \(w)")
        }
        print("onnx fixture \(name): naive map vs onnxruntime max |Δ| \(diff); \(agreement.joined(separator: ", "))")
        for mode in [MapMode.dense, .shift, .naive] {
            let tiled = try mapper.map(image, mode: mode, tile: mode == .shift ? 4 : 5)
            #expect(tiled.data == maps[mode]!.data, "\(name): tiled \(mode) is not bit-identical to untiled")
        }
    }

    @Test("The seed-shaped ONNX net maps as its Caffe twin (same weights) does")
    func seedNetEqualsCaffe() throws {
        let f = try Fixture("seed_net")
        let caffe = try ModelLoader.load(
            ModelSource(
                model: f.dir.appendingPathComponent("deploy.prototxt").path,
                weights: f.dir.appendingPathComponent("weights.caffemodel").path))
        #expect(caffe.geometry == f.model.geometry)
        let image = try f.image
        for mode in [MapMode.dense, .naive] {
            let a = try LocalMapper(
                engine: MapEngine(model: f.model), preprocessing: f.preprocessing, threads: 2
            ).map(image, mode: mode)
            let b = try LocalMapper(
                engine: MapEngine(model: caffe), preprocessing: f.preprocessing, threads: 2
            ).map(image, mode: mode)
            let d = Self.maxDiff(a.data, b.data)
            #expect(d <= 1e-5, "\(mode): ONNX and Caffe maps differ by \(d)")
            print("onnx fixture seed_net: \(mode) map ONNX vs Caffe max |Δ| \(d)")
        }
        if Seed.available {
            // The fixture's prototxt is the seed's net: the same layers with the seed's own file.
            let seed = try ModelLoader.load(
                ModelSource(
                    model: Seed.path("efficient-pixelwise/deploy.prototxt"),
                    weights: f.dir.appendingPathComponent("weights.caffemodel").path))
            #expect(seed.net.layers == caffe.net.layers)
        }
    }

    @Test("A residual net that pads is refused without allowing padding, with the layers that pad; runs with it")
    func paddedResidualRefusedWithReasons() throws {
        let f = try Fixture("padded_residual")
        #expect(!f.model.geometry.isExact)
        let error = #expect(throws: ModelError.self) { try f.model.requireExact(allowApproximate: false) }
        #expect(error?.kind == .inexact)
        let text = error?.description ?? ""
        for layer in ["conv_1", "conv_4", "conv_5", "averagepool_10"] {
            #expect(text.contains(layer), "\(text) should name \(layer)")
        }
        #expect(throws: ModelError.self) { try MapEngine(model: f.model, allowPadding: false) }
        _ = try MapEngine(model: f.model, allowPadding: true)
    }

    @Test("A ResNet basic block (identity shortcut): the Add takes the larger window; refused without padding allowed")
    func resnetBlock() throws {
        let f = try Fixture("resnet_block")
        let g = f.model.geometry
        #expect(!g.isExact)
        // The Add meets the shortcut (window 3, from conv_1) and conv_1 → conv_4 → conv_7 (window 7),
        // both centred on the same pixel: the block's output window is the 7×7 one (origin −3), so
        // after MAX 2/2, AVE 3/1 pad 1 and the 8×8 global pool: 7 + 1 + 4 + 14 = 26, origin −3 − 2.
        #expect(g.receptiveField == Size2(square: 26) && g.origin == Size2(square: -5) && g.stride == Size2(square: 2))
        let error = #expect(throws: ModelError.self) { try f.model.requireExact(allowApproximate: false) }
        #expect(error?.kind == .inexact)
        let text = error?.description ?? ""
        for layer in ["conv_1", "conv_4", "conv_7", "averagepool_12"] {
            #expect(text.contains(layer), "\(text) should name \(layer)")
        }
        #expect(!text.contains("add_9"), "\(text): the Add is not at fault")
        #expect(throws: ModelError.self) { try MapEngine(model: f.model, allowPadding: false) }
        _ = try MapEngine(model: f.model, allowPadding: true)
    }
}
