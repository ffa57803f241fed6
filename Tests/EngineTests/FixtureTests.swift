import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// The engine against an independent implementation: fixtures made by
/// `tools/fixtures/make_fixtures.py` with OpenCV's dnn module (or NumPy, where
/// OpenCV cannot read a layer). See `Tests/Fixtures/README.md`.
@Suite("Engine vs OpenCV/NumPy fixtures")
struct FixtureTests {
    static let root = TestPaths.fixtures

    static var names: [String] {
        let items = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return items.filter {
            FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/manifest.json").path)
        }
        .sorted()
    }

    struct Manifest: Decodable {
        struct Array: Decodable { var file: String; var shape: [Int] }
        struct Patches: Decodable { var input: Array; var probabilities: Array }
        struct Preprocess: Decodable { var raw_scale: Float; var mean: [Float]; var scale: Float }
        struct MapPart: Decodable {
            var image: Array; var channel_order: String; var preprocess: Preprocess
            var preprocessed: Array; var map: Array
        }
        /// A net that pads: its own pass over the mirror-padded image (`input` rows × columns).
        struct WholeImagePass: Decodable { var input: [Int]; var output: Array }
        var name: String; var patch_size: Int; var classes: Int; var reference: String; var tolerance: Float
        var patches: Patches; var map: MapPart
        var whole_image_pass: WholeImagePass?
    }

    struct Fixture {
        let dir: URL
        let manifest: Manifest
        let model: LoadedModel

        init(_ name: String) throws {
            dir = FixtureTests.root.appendingPathComponent(name)
            manifest = try JSONDecoder().decode(
                Manifest.self, from: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
            model = try ModelLoader.load(
                ModelSource(
                    model: dir.appendingPathComponent("deploy.prototxt").path,
                    weights: dir.appendingPathComponent("weights.caffemodel").path))
        }

        func floats(_ a: Manifest.Array) throws -> [Float] {
            let data = try Data(contentsOf: dir.appendingPathComponent(a.file))
            #expect(data.count == a.shape.reduce(4, *), "\(a.file) has \(data.count) bytes")
            return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }

        var image: ArrayImage {
            get throws {
                let a = manifest.map.image
                let bytes = try Data(contentsOf: dir.appendingPathComponent(a.file))
                return ArrayImage(
                    width: a.shape[1], height: a.shape[0], channels: a.shape[2], pixels: bytes.map(Float.init))
            }
        }

        var preprocessing: Preprocessing {
            let p = manifest.map.preprocess
            return Preprocessing(
                mean: p.mean, rawScale: p.raw_scale, scale: p.scale,
                channelOrder: manifest.map.channel_order == "rgb" ? .rgb : .bgr)
        }
    }

    static func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    @Test("There are fixtures to check against")
    func fixturesPresent() {
        #expect(Self.names.count >= 6, "found \(Self.names) under \(Self.root.path)")
    }

    @Test("Patch classifier outputs match", arguments: names)
    func patches(_ name: String) throws {
        let f = try Fixture(name)
        let m = f.manifest.patches
        let inputs = try f.floats(m.input), expected = try f.floats(m.probabilities)
        let (n, c, p) = (m.input.shape[0], m.input.shape[1], m.input.shape[2])
        let runner = try NetRunner(net: f.model.classifier)
        var got: [Float] = []
        for i in 0..<n {
            let patch = Tensor(Shape(c: c, h: p, w: p), values: Array(inputs[(i * c * p * p)..<((i + 1) * c * p * p)]))
            got += try runner.forward(patch, threads: 2).values
        }
        let diff = Self.maxDiff(got, expected)
        #expect(got.count == expected.count)
        #expect(diff <= f.manifest.tolerance, "\(name) (\(f.manifest.reference)): max difference \(diff)")
    }

    @Test("Preprocessing and naive maps match; exact modes agree", arguments: names)
    func maps(_ name: String) throws {
        let f = try Fixture(name)
        let image = try f.image
        let engine = try MapEngine(model: f.model, allowPadding: true)
        let mapper = LocalMapper(engine: engine, preprocessing: f.preprocessing, threads: 2)

        // Preprocessing: the engine's input for the whole image (no padding) vs the fixture's.
        let mapping = try ChannelMapping.resolve(
            imageChannels: image.channels, netChannels: f.model.net.inputChannels,
            order: f.preprocessing.channelOrder)
        let region = PixelRegion(
            image: image, paddedRect: PixelRect(y: 0, x: 0, height: image.height, width: image.width),
            halfPatch: .zero)
        let input = region.tensor(mapping: mapping, preprocessing: f.preprocessing)
        let preDiff = Self.maxDiff(input.values, try f.floats(f.manifest.map.preprocessed))
        #expect(preDiff <= 1e-6, "preprocessing differs by \(preDiff)")

        let expected = try f.floats(f.manifest.map.map)
        let naive = try mapper.map(image, mode: .naive)
        let diff = Self.maxDiff(naive.data, expected)
        #expect(diff <= f.manifest.tolerance, "\(name): naive map differs by \(diff)")
        if engine.geometry.isExact {
            for mode in [MapMode.shift, .dense] {
                let d = Self.maxDiff(try mapper.map(image, mode: mode).data, expected)
                #expect(d <= f.manifest.tolerance, "\(name): \(mode) map differs by \(d)")
            }
        }
    }

    static var wholeImagePassNames: [String] {
        names.filter { (try? Fixture($0).manifest.whole_image_pass) != nil }
    }

    /// A net that pads, with poolings whose last window in the whole-image pass is partial before
    /// padded convolutions: every mode's map equals, at its grid points, the net's own pass over the
    /// mirror-padded image as OpenCV (Caffe's semantics) computes it. Tessera's pass left those
    /// windows out, so its last rows and columns padded one output early (fuzz audit F1).
    @Test(
        "A padded net's map equals its own whole-image pass (partial pooling windows kept) at grid points",
        arguments: wholeImagePassNames)
    func wholeImagePass(_ name: String) throws {
        let f = try Fixture(name)
        let pass = try #require(f.manifest.whole_image_pass)
        let image = try f.image
        let engine = try MapEngine(model: f.model, allowPadding: true)
        #expect(!engine.geometry.isExact && engine.tasks.pads)
        let whole = engine.tasks.wholeImageInput(Size2(image.height, image.width))
        #expect([whole.height, whole.width] == pass.input, "the fixture's pass reads another input")
        let (k, oh, ow) = (pass.output.shape[0], pass.output.shape[1], pass.output.shape[2])
        let reference = try f.floats(pass.output)
        let s = engine.tasks.stride
        #expect(oh >= (image.height + s.h - 1) / s.h && ow >= (image.width + s.w - 1) / s.w)
        let mapper = LocalMapper(engine: engine, preprocessing: f.preprocessing, threads: 2)
        for (mode, tile) in [(MapMode.dense, 64), (.dense, 8), (.shift, 8), (.fast, 64), (.fast, 8)] {
            let map = try mapper.map(image, mode: mode, tile: tile)
            var worst: Float = 0
            for c in 0..<k {
                for y in stride(from: 0, to: image.height, by: s.h) {
                    for x in stride(from: 0, to: image.width, by: s.w) {
                        worst = max(worst, abs(map[c, y, x] - reference[(c * oh + y / s.h) * ow + x / s.w]))
                    }
                }
            }
            #expect(worst <= f.manifest.tolerance, "\(name) \(mode) tile \(tile): differs by \(worst)")
        }
        // A job of this net and image begun before placement 4 is not resumed with these numbers.
        let size = Size2(image.height, image.width)
        #expect(engine.plan.placementChange(since: 3, exact: false, image: size)?.contains("partial") == true)
        #expect(engine.plan.placementChange(since: TaskGeometry.placementVersion, exact: false, image: size) == nil)
    }
}
