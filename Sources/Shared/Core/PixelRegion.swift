/// The one region-reading interface every image source implements (PNG in memory,
/// TIFF through libtiff, whole-slide formats through OpenSlide). The engine asks for
/// the rectangle each tile needs, when that tile is computed; the caller mirrors
/// beyond the image's edges itself (`PixelRegion(source:paddedRect:halfPatch:)`).
/// Implementations must be safe to call from several threads at once.
package protocol RegionSource: Sendable {
    /// The file path (what error messages name).
    var name: String { get }
    var width: Int { get }
    var height: Int { get }
    /// 1 (gray) or 3 (RGB, in that order). Alpha is dropped, not composited.
    var channels: Int { get }
    /// 8 or 16: the range of the raw sample values.
    var bitDepth: Int { get }
    /// The raw samples of `rect`, which lies inside the image. Throws (never traps,
    /// never returns silent zeros) on a bad file, naming the file and the tile or level.
    func readRegion(_ rect: PixelRect) throws -> PixelRegion
}

/// An image held in memory that gives any pixel's raw value (0–255 or 0–65535,
/// unscaled): a region source by reading pixel by pixel. The PNG image type conforms.
package protocol PixelSource: RegionSource {
    func value(y: Int, x: Int, channel: Int) -> Float
}

extension PixelSource {
    package var name: String { "image" }
    package var bitDepth: Int { 8 }

    package func readRegion(_ rect: PixelRect) throws -> PixelRegion {
        precondition(
            rect.y >= 0 && rect.x >= 0 && rect.y + rect.height <= height && rect.x + rect.width <= width,
            "region \(rect) outside a \(height)×\(width) image")
        var samples = [Float](repeating: 0, count: rect.height * rect.width * channels)
        var i = 0
        for y in rect.y..<(rect.y + rect.height) {
            for x in rect.x..<(rect.x + rect.width) {
                for k in 0..<channels {
                    samples[i] = value(y: y, x: x, channel: k)
                    i += 1
                }
            }
        }
        return PixelRegion(height: rect.height, width: rect.width, channels: channels, samples: samples)
    }
}

/// A rectangle in pixel (or grid) coordinates: rows `y ..< y + height`, columns `x ..< x + width`.
package struct PixelRect: Hashable, Sendable, CustomStringConvertible {
    package var y: Int
    package var x: Int
    package var height: Int
    package var width: Int
    package init(y: Int, x: Int, height: Int, width: Int) {
        self.y = y
        self.x = x
        self.height = height
        self.width = width
    }
    package var isEmpty: Bool { height <= 0 || width <= 0 }
    /// Inclusive rows and columns, as users count them (user review: Swift's `[128..<256, 0..<64]` in messages).
    package var description: String {
        func span(_ a: Int, _ n: Int) -> String { n <= 0 ? "none from \(a)" : n == 1 ? "\(a)" : "\(a)–\(a + n - 1)" }
        return "rows \(span(y, height)), columns \(span(x, width))"
    }
}

extension PixelRect {
    /// The image rows and columns this rectangle (padded coordinates) reads,
    /// mirrored beyond the image's edges: what every cut of task pixels uses.
    package func mirroredSources(image: Size2, halfPatch: Size2) -> (rows: [Int], cols: [Int]) {
        (
            (0..<height).map { reflectIndex(y + $0 - halfPatch.h, image.h) },
            (0..<width).map { reflectIndex(x + $0 - halfPatch.w, image.w) }
        )
    }
}

/// Symmetric mirroring with the edge pixel repeated (numpy 'symmetric',
/// OpenCV BORDER_REFLECT), repeated as often as needed: never out of bounds.
@inlinable
package func reflectIndex(_ i: Int, _ n: Int) -> Int {
    let period = 2 * n
    var m = i % period
    if m < 0 { m += period }
    return m < n ? m : period - 1 - m
}

/// Raw pixels of a region of the *padded* image (image shifted by the patch
/// half-size a = ⌊P/2⌋ and mirrored beyond its edges): what a task needs and
/// what travels to a worker. Samples are interleaved HWC, unscaled.
package struct PixelRegion: Sendable, Equatable {
    package var height: Int
    package var width: Int
    package var channels: Int
    package var samples: [Float]

    package init(height: Int, width: Int, channels: Int, samples: [Float]) {
        precondition(samples.count == height * width * channels, "region samples do not match its shape")
        self.height = height
        self.width = width
        self.channels = channels
        self.samples = samples
    }

    /// Cuts `rect` (padded coordinates) out of `source`, mirroring beyond its edges:
    /// reads the one rectangle of the image that the mirrored rows and columns span
    /// (the tile and its halo, clamped to the image), then places every sample.
    package init(source: any RegionSource, paddedRect rect: PixelRect, halfPatch: Size2) throws {
        let ch = source.channels
        let (rows, cols) = rect.mirroredSources(image: Size2(source.height, source.width), halfPatch: halfPatch)
        guard let r0 = rows.min(), let r1 = rows.max(), let c0 = cols.min(), let c1 = cols.max() else {
            self.init(height: rect.height, width: rect.width, channels: ch, samples: [])
            return
        }
        let box = try source.readRegion(PixelRect(y: r0, x: c0, height: r1 - r0 + 1, width: c1 - c0 + 1))
        var samples = [Float](repeating: 0, count: rect.height * rect.width * ch)
        box.samples.withUnsafeBufferPointer { src in
            samples.withUnsafeMutableBufferPointer { dst in
                var i = 0
                for r in rows {
                    let base = (r - r0) * box.width
                    for c in cols {
                        let s = (base + c - c0) * ch
                        for k in 0..<ch { dst[i + k] = src[s + k] }
                        i += ch
                    }
                }
            }
        }
        self.init(height: rect.height, width: rect.width, channels: ch, samples: samples)
    }

    /// The same for an image in memory (cannot fail).
    package init(image: some PixelSource, paddedRect rect: PixelRect, halfPatch: Size2) {
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
