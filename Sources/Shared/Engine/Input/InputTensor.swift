import Dispatch
import TesseraCore
import TesseraModel

extension PixelRegion {
    /// The net's input for this region: `(raw · rawScale − mean[c]) · scale`, or
    /// `(raw · rawScale − mean[c]) / std[c] · scale` with a std, channels reordered by
    /// `mapping` (from `ChannelMapping.resolve`). Each value is computed alone, so the
    /// result is the same for any `threads`; a GPU worker runs this between two tiles'
    /// compute, where one thread took ~16 ms of a 2048² tile.
    package func tensor(mapping: [Int], preprocessing p: Preprocessing, threads: Int = 1) -> Tensor {
        let t = Tensor(Shape(c: mapping.count, h: height, w: width))
        let n = height * width
        let blockSize = 1 << 16
        let blocks = (n + blockSize - 1) / blockSize
        let planes = (0..<mapping.count).map { UnsafeMutablePointerSendable(t.plane($0)) }
        samples.withUnsafeBufferPointer { s in
            let samples = UnsafeBufferPointerSendable(s)
            let work = { @Sendable (block: Int) in
                let range = (block * blockSize)..<min(n, (block + 1) * blockSize)
                for (k, source) in mapping.enumerated() {
                    Self.convert(
                        samples.buffer, from: source, stride: self.channels, into: planes[k].pointer, range,
                        mean: p.mean(channel: k), std: p.std(channel: k), rawScale: p.rawScale, scale: p.scale)
                }
            }
            if threads <= 1 || blocks == 1 {
                for b in 0..<blocks { work(b) }
            } else {
                DispatchQueue.concurrentPerform(iterations: blocks, execute: work)
            }
        }
        return t
    }

    private static func convert(
        _ s: UnsafeBufferPointer<Float>, from source: Int, stride: Int, into dst: UnsafeMutablePointer<Float>,
        _ range: Range<Int>, mean: Float, std: Float?, rawScale: Float, scale: Float
    ) {
        var j = source + range.lowerBound * stride
        if let std {
            for i in range {
                dst[i] = (s[j] * rawScale - mean) / std * scale
                j += stride
            }
        } else {
            for i in range {
                dst[i] = (s[j] * rawScale - mean) * scale
                j += stride
            }
        }
    }
}

/// Raw buffers handed to `concurrentPerform`'s blocks, each writing its own range.
private struct UnsafeMutablePointerSendable: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}

private struct UnsafeBufferPointerSendable: @unchecked Sendable {
    let buffer: UnsafeBufferPointer<Float>
    init(_ buffer: UnsafeBufferPointer<Float>) { self.buffer = buffer }
}
