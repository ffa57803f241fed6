import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraImage
@testable import TesseraModel
@testable import TestSupport

/// The bundled demo (models/demo + examples/ihc.png): a real trained classifier
/// on a real image, where the modes must agree just as on the synthetic nets.
@Suite("Demo model on the demo image")
struct DemoModelTests {
    static let root = TestPaths.packageRoot

    static func load() throws -> (MapEngine, Preprocessing, PixelImage) {
        let model = try ModelLoader.load(
            ModelSource(
                model: root.appendingPathComponent("models/demo/deploy.prototxt").path,
                weights: root.appendingPathComponent("models/demo/nuclei32.caffemodel").path))
        // The flags documented in models/demo/README.md.
        let prep = Preprocessing(mean: [134, 151, 171], rawScale: 1, scale: 0.015625, channelOrder: .bgr)
        let image = try PNGReader.read(path: root.appendingPathComponent("examples/ihc.png").path)
        return (try MapEngine(model: model), prep, image)
    }

    /// A crop of the image, so the naive reference stays quick.
    struct Crop: PixelSource {
        let image: PixelImage, y0: Int, x0: Int, height: Int, width: Int
        var channels: Int { image.channels }
        func value(y: Int, x: Int, channel: Int) -> Float { image.value(y: y0 + y, x: x0 + x, channel: channel) }
    }

    @Test("The demo net is exact: receptive field 32, stride 4")
    func exact() throws {
        let (engine, _, image) = try Self.load()
        #expect(engine.geometry.isExact)
        #expect(engine.geometry.receptiveField == Size2(square: 32) && engine.geometry.stride == Size2(square: 4))
        #expect(image.width == 512 && image.height == 512 && image.channels == 3)
    }

    @Test("dense, shift and naive agree on the demo image; nuclei are found")
    func modesAgree() throws {
        let (engine, prep, image) = try Self.load()
        let mapper = LocalMapper(engine: engine, preprocessing: prep, threads: 2)
        let crop = Crop(image: image, y0: 300, x0: 250, height: 45, width: 61)
        let naive = try mapper.map(crop, mode: .naive)
        let shift = try mapper.map(crop, mode: .shift)
        let dense = try mapper.map(crop, mode: .dense)
        let d1 = zip(naive.data, dense.data).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        let d2 = zip(naive.data, shift.data).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(d1 <= 1e-5, "dense vs naive: \(d1)")
        #expect(d2 <= 1e-5, "shift vs naive: \(d2)")
        // The whole image in dense mode: a real map, with both classes present in sensible amounts.
        let full = try mapper.map(image, mode: .dense)
        let plane = full.height * full.width
        let nuclei = full.data[plane..<(2 * plane)].filter { $0 >= 0.5 }.count
        let fraction = Double(nuclei) / Double(plane)
        #expect(fraction > 0.1 && fraction < 0.6, "nuclei fraction \(fraction)")
    }
}
