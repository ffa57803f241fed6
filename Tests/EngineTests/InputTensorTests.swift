import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel

@Suite("The net's input from a region")
struct InputTensorTests {
    /// Several threads give the same bytes as one, with and without a std, channels
    /// reordered, and equal NumPy-style arithmetic written out here.
    @Test(arguments: [false, true])
    func threadsDoNotChangeTheInput(withStd: Bool) {
        let (h, w, ch) = (301, 417, 3)  // two blocks of 2¹⁶ pixels and a partial one
        var rng = SystemRandomNumberGenerator()
        let samples = (0..<(h * w * ch)).map { _ in Float(UInt8.random(in: 0...255, using: &rng)) }
        let region = PixelRegion(height: h, width: w, channels: ch, samples: samples)
        let p = Preprocessing(
            mean: [104, 117, 123], rawScale: 1, scale: 1 / 64.0, channelOrder: .bgr,
            std: withStd ? [57, 58, 59] : [])
        let mapping = [2, 1, 0]
        let one = region.tensor(mapping: mapping, preprocessing: p, threads: 1)
        let many = region.tensor(mapping: mapping, preprocessing: p, threads: 8)
        #expect(one.values == many.values)
        for (k, i) in [(0, 0), (1, h * w / 2), (2, h * w - 1)] {
            let raw = samples[i * ch + mapping[k]]
            let want = withStd ? (raw - p.mean[k]) / p.std[k] * p.scale : (raw - p.mean[k]) * p.scale
            #expect(many.values[k * h * w + i] == want, "channel \(k), pixel \(i)")
        }
    }
}
