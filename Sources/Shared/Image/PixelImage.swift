import TesseraCore

/// A decoded image as compact integer samples: `height` rows of `width`
/// pixels of `channels` samples (1 gray, 3 RGB in that order), interleaved
/// (HWC, C order), 8 or 16 bits each, exactly as stored in the file after
/// palette expansion and alpha removal. No scaling: 8-bit samples are
/// 0…255, 16-bit ones 0…65535. A 20000×20000 RGB 8-bit image is 1.2 GB.
package struct PixelImage: Sendable, Equatable {
    package enum Samples: Sendable, Equatable {
        case uint8([UInt8])
        case uint16([UInt16])
    }

    package let width: Int
    package let height: Int
    /// 1 (gray) or 3 (RGB).
    package let channels: Int
    /// `width * height * channels` samples; sample `(y, x, c)` is at `(y * width + x) * channels + c`.
    package let samples: Samples

    package init(width: Int, height: Int, channels: Int, samples: Samples) {
        precondition(width > 0 && height > 0, "image dimensions must be positive")
        precondition(channels == 1 || channels == 3, "an image has 1 or 3 channels")
        let count: Int
        switch samples {
        case .uint8(let values): count = values.count
        case .uint16(let values): count = values.count
        }
        precondition(count == width * height * channels, "samples do not match the image's shape")
        self.width = width
        self.height = height
        self.channels = channels
        self.samples = samples
    }

    /// 8 or 16.
    package var bitDepth: Int {
        if case .uint8 = samples { return 8 }
        return 16
    }

    /// The largest sample value of the bit depth: 255 or 65535.
    package var maxSampleValue: Float { bitDepth == 8 ? 255 : 65535 }

    /// Samples in one row.
    package var samplesPerRow: Int { width * channels }

    /// The raw sample at `(y, x, channel)`, unscaled. For per-pixel work over
    /// many pixels use `withUnsafeRows`, which avoids this switch per call.
    @inlinable package func value(y: Int, x: Int, channel: Int) -> Float {
        precondition(
            y >= 0 && y < height && x >= 0 && x < width && channel >= 0 && channel < channels,
            "pixel (\(y), \(x), \(channel)) outside a \(height)×\(width)×\(channels) image")
        let index = (y * width + x) * channels + channel
        switch samples {
        case .uint8(let values): return Float(values[index])
        case .uint16(let values): return Float(values[index])
        }
    }

    /// Calls `body` with a view of `rows` (absolute row indices) that points
    /// into this image's storage: nothing is copied. The view is valid only
    /// inside `body`.
    package func withUnsafeRows<R>(_ rows: Range<Int>, _ body: (PixelRows) throws -> R) rethrows -> R {
        precondition(rows.lowerBound >= 0 && rows.upperBound <= height, "rows \(rows) outside 0..<\(height)")
        let start = rows.lowerBound * samplesPerRow
        let count = rows.count * samplesPerRow
        switch samples {
        case .uint8(let values):
            return try values.withUnsafeBufferPointer { all in
                try body(
                    PixelRows(
                        rows: rows, width: width, channels: channels,
                        storage: .uint8(UnsafeBufferPointer(rebasing: all[start..<(start + count)]))))
            }
        case .uint16(let values):
            return try values.withUnsafeBufferPointer { all in
                try body(
                    PixelRows(
                        rows: rows, width: width, channels: channels,
                        storage: .uint16(UnsafeBufferPointer(rebasing: all[start..<(start + count)]))))
            }
        }
    }
}

/// A borrowed view of a band of rows of a `PixelImage` (see `withUnsafeRows`).
package struct PixelRows {
    package enum Storage {
        case uint8(UnsafeBufferPointer<UInt8>)
        case uint16(UnsafeBufferPointer<UInt16>)
    }

    /// The absolute image rows this view covers.
    package let rows: Range<Int>
    package let width: Int
    package let channels: Int
    /// The rows' samples, HWC, the first element being row `rows.lowerBound`, column 0, channel 0.
    package let storage: Storage

    package var samplesPerRow: Int { width * channels }
    package var bitDepth: Int {
        if case .uint8 = storage { return 8 }
        return 16
    }

    /// The 8-bit samples, or nil for a 16-bit image.
    package var uint8: UnsafeBufferPointer<UInt8>? {
        if case .uint8(let buffer) = storage { return buffer }
        return nil
    }

    /// The 16-bit samples (host byte order), or nil for an 8-bit image.
    package var uint16: UnsafeBufferPointer<UInt16>? {
        if case .uint16(let buffer) = storage { return buffer }
        return nil
    }

    /// The raw sample at absolute row `y` (which must lie in `rows`), column `x`, `channel`.
    @inlinable package func value(y: Int, x: Int, channel: Int) -> Float {
        precondition(
            rows.contains(y) && x >= 0 && x < width && channel >= 0 && channel < channels,
            "pixel (\(y), \(x), \(channel)) outside rows \(rows) of width \(width)")
        let index = ((y - rows.lowerBound) * width + x) * channels + channel
        switch storage {
        case .uint8(let buffer): return Float(buffer[index])
        case .uint16(let buffer): return Float(buffer[index])
        }
    }
}

/// A decoded PNG is a region source held in memory.
extension PixelImage: PixelSource {
    package func readRegion(_ rect: PixelRect) throws -> PixelRegion {
        guard rect.y >= 0, rect.x >= 0, rect.height >= 0, rect.width >= 0,
            rect.y + rect.height <= height, rect.x + rect.width <= width
        else {
            throw ImageIOError(
                .invalidArgument, path: "image", detail: "region \(rect) outside a \(height)×\(width) image")
        }
        var out = [Float](repeating: 0, count: rect.height * rect.width * channels)
        let rowCount = rect.width * channels
        func copy<T: BinaryInteger>(_ values: [T]) {
            values.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for r in 0..<rect.height {
                        let s = ((rect.y + r) * width + rect.x) * channels, d = r * rowCount
                        for i in 0..<rowCount { dst[d + i] = Float(src[s + i]) }
                    }
                }
            }
        }
        switch samples {
        case .uint8(let values): copy(values)
        case .uint16(let values): copy(values)
        }
        return PixelRegion(height: rect.height, width: rect.width, channels: channels, samples: out)
    }
}
