import TesseraCore
import TesseraModel

extension PixelRegion {
    /// The net's input for this region: `(raw · rawScale − mean[c]) · scale`, or
    /// `(raw · rawScale − mean[c]) / std[c] · scale` with a std, channels reordered by
    /// `mapping` (from `ChannelMapping.resolve`).
    package func tensor(mapping: [Int], preprocessing p: Preprocessing) -> Tensor {
        let t = Tensor(Shape(c: mapping.count, h: height, w: width))
        let n = height * width
        for (k, source) in mapping.enumerated() {
            let dst = t.plane(k)
            let mean = p.mean(channel: k)
            samples.withUnsafeBufferPointer { s in
                var j = source
                if let std = p.std(channel: k) {
                    for i in 0..<n {
                        dst[i] = (s[j] * p.rawScale - mean) / std * p.scale
                        j += channels
                    }
                } else {
                    for i in 0..<n {
                        dst[i] = (s[j] * p.rawScale - mean) * p.scale
                        j += channels
                    }
                }
            }
        }
        return t
    }
}
