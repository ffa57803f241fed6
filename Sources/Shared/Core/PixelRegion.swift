/// Where the engine reads image pixels: anything that can give the raw value
/// (0–255 or 0–65535, unscaled) of a pixel's channel. The PNG image type conforms.
public protocol PixelSource {
    var width: Int { get }
    var height: Int { get }
    /// 1 (gray) or 3 (RGB, in that order).
    var channels: Int { get }
    func value(y: Int, x: Int, channel: Int) -> Float
}

/// A rectangle in pixel (or grid) coordinates: rows `y ..< y + height`, columns `x ..< x + width`.
public struct PixelRect: Hashable, Sendable, CustomStringConvertible {
    public var y: Int
    public var x: Int
    public var height: Int
    public var width: Int
    public init(y: Int, x: Int, height: Int, width: Int) {
        self.y = y
        self.x = x
        self.height = height
        self.width = width
    }
    public var isEmpty: Bool { height <= 0 || width <= 0 }
    public var description: String { "[\(y)..<\(y + height), \(x)..<\(x + width)]" }
}

extension PixelRect {
    /// The image rows and columns this rectangle (padded coordinates) reads,
    /// mirrored beyond the image's edges: what every cut of task pixels uses.
    public func mirroredSources(image: Size2, halfPatch: Size2) -> (rows: [Int], cols: [Int]) {
        ((0..<height).map { reflectIndex(y + $0 - halfPatch.h, image.h) },
         (0..<width).map { reflectIndex(x + $0 - halfPatch.w, image.w) })
    }
}

/// Symmetric mirroring with the edge pixel repeated (numpy 'symmetric',
/// OpenCV BORDER_REFLECT), repeated as often as needed: never out of bounds.
@inlinable
public func reflectIndex(_ i: Int, _ n: Int) -> Int {
    let period = 2 * n
    var m = i % period
    if m < 0 { m += period }
    return m < n ? m : period - 1 - m
}

/// Raw pixels of a region of the *padded* image (image shifted by the patch
/// half-size a = ⌊P/2⌋ and mirrored beyond its edges): what a task needs and
/// what travels to a worker. Samples are interleaved HWC, unscaled.
public struct PixelRegion: Sendable, Equatable {
    public var height: Int
    public var width: Int
    public var channels: Int
    public var samples: [Float]

    public init(height: Int, width: Int, channels: Int, samples: [Float]) {
        precondition(samples.count == height * width * channels, "region samples do not match its shape")
        self.height = height
        self.width = width
        self.channels = channels
        self.samples = samples
    }

    /// Cuts `rect` (padded coordinates) out of `image`, mirroring beyond its edges.
    public init(image: PixelSource, paddedRect rect: PixelRect, halfPatch: Size2) {
        let ch = image.channels
        let (rows, cols) = rect.mirroredSources(image: Size2(image.height, image.width), halfPatch: halfPatch)
        var samples = [Float](repeating: 0, count: rect.height * rect.width * ch)
        var i = 0
        for r in rows {
            for c in cols {
                for k in 0..<ch {
                    samples[i] = image.value(y: r, x: c, channel: k)
                    i += 1
                }
            }
        }
        self.init(height: rect.height, width: rect.width, channels: ch, samples: samples)
    }
}
