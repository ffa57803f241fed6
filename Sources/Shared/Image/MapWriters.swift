import Logging
import TesseraCore

/// Writes the outputs `options` asks for, each row by row from `map` (never a
/// second full-size copy) and atomically (complete or absent under its final
/// name). `image` is needed for the overlay only and must have the map's
/// height and width. Returns the paths written, in order.
@discardableResult
public func writeOutputs(map: ProbabilityMap, image: PixelImage?, options: OutputOptions,
                         logger: Logger? = nil) throws -> [String] {
    try validate(map: map, image: image, options: options)
    var written: [String] = []
    for kind in options.kinds.sorted() {
        switch kind {
        case .prob:
            for index in options.resolvedClasses(classCount: map.classes) {
                let path = options.probabilityPath(forClass: index)
                try writeProbabilityPNG(map: map, classIndex: index, bitDepth: options.bitDepth, to: path,
                                        compressionLevel: options.compressionLevel)
                written.append(path)
            }
        case .labels:
            try writeLabelsPNG(map: map, to: options.labelsPath, compressionLevel: options.compressionLevel)
            written.append(options.labelsPath)
        case .overlay:
            try writeOverlayPNG(map: map, image: image!, classIndex: options.resolvedOverlayClass(classCount: map.classes),
                                opacity: options.overlayOpacity, to: options.overlayPath,
                                compressionLevel: options.compressionLevel)
            written.append(options.overlayPath)
        case .npy:
            try NPY.write(map, to: options.npyPath)
            written.append(options.npyPath)
        }
        logger?.debug("output written", metadata: ["kind": "\(kind.rawValue)", "stem": "\(options.stem)"])
    }
    return written
}

/// Checks everything that can be checked before the first file is written.
private func validate(map: ProbabilityMap, image: PixelImage?, options: OutputOptions) throws {
    let directory = options.directory
    func fail(_ detail: String) -> ImageIOError { ImageIOError(.invalidArgument, path: directory, detail: detail) }
    guard options.bitDepth == 8 || options.bitDepth == 16 else { throw fail("bit depth \(options.bitDepth) is not 8 or 16") }
    guard map.classes > 0, map.height > 0, map.width > 0 else { throw fail("empty map \(map.classes)×\(map.height)×\(map.width)") }
    if options.kinds.contains(.prob) {
        for index in options.resolvedClasses(classCount: map.classes) where !(0..<map.classes).contains(index) {
            throw fail("class \(index) does not exist (the map has \(map.classes) classes)")
        }
    }
    if options.kinds.contains(.overlay) {
        let index = options.resolvedOverlayClass(classCount: map.classes)
        guard (0..<map.classes).contains(index) else {
            throw fail("overlay class \(index) does not exist (the map has \(map.classes) classes)")
        }
        guard let image else { throw fail("the overlay needs the input image") }
        guard image.width == map.width, image.height == map.height else {
            throw ImageIOError(.mismatch, path: options.overlayPath,
                               detail: "image \(image.width)×\(image.height) vs map \(map.width)×\(map.height)")
        }
    }
}

/// Probability → sample: clamped to [0, 1] then rounded to 0…`scale`; NaN → 0.
@inline(__always) private func quantize(_ p: Float, _ scale: Float) -> Float {
    p > 0 ? (min(p, 1) * scale).rounded() : 0
}

/// `<stem>.prob-<class>.png`: gray, `bitDepth` 8 (p × 255) or 16 (p × 65535), one row buffer.
public func writeProbabilityPNG(map: ProbabilityMap, classIndex: Int, bitDepth: Int = 8, to path: String,
                                compressionLevel: Int = 6) throws {
    precondition((0..<map.classes).contains(classIndex), "class \(classIndex) outside the map")
    let width = map.width
    try AtomicFile.write(to: path) { temporary in
        let writer = try PNGRowWriter(path: temporary, width: width, height: map.height, channels: 1,
                                      bitDepth: bitDepth, compressionLevel: compressionLevel)
        try map.data.withUnsafeBufferPointer { data in
            if bitDepth == 8 {
                var row = [UInt8](repeating: 0, count: width)
                for y in 0..<map.height {
                    let source = (classIndex * map.height + y) * width
                    for x in 0..<width { row[x] = UInt8(quantize(data[source + x], 255)) }
                    try row.withUnsafeBufferPointer { try writer.write(row: $0) }
                }
            } else {
                var row = [UInt16](repeating: 0, count: width)
                for y in 0..<map.height {
                    let source = (classIndex * map.height + y) * width
                    for x in 0..<width { row[x] = UInt16(quantize(data[source + x], 65535)) }
                    try row.withUnsafeBufferPointer { try writer.write(row: $0) }
                }
            }
        }
        try writer.finish()
    }
}

/// `<stem>.labels.png`: the argmax class per pixel as its raw index (ties go
/// to the lower class, NaN never wins); 8-bit gray, 16-bit above 256 classes.
/// Raw indices look black in a viewer for few classes: stretch the contrast.
public func writeLabelsPNG(map: ProbabilityMap, to path: String, compressionLevel: Int = 6) throws {
    let width = map.width, height = map.height, classes = map.classes
    let bitDepth = classes <= 256 ? 8 : 16
    try AtomicFile.write(to: path) { temporary in
        let writer = try PNGRowWriter(path: temporary, width: width, height: height, channels: 1,
                                      bitDepth: bitDepth, compressionLevel: compressionLevel)
        var best = [Float](repeating: 0, count: width)
        var label = [UInt16](repeating: 0, count: width)
        var row8 = [UInt8](repeating: 0, count: bitDepth == 8 ? width : 0)
        try map.data.withUnsafeBufferPointer { data in
            for y in 0..<height {
                for x in 0..<width {
                    best[x] = -.infinity
                    label[x] = 0
                }
                for c in 0..<classes {
                    let source = (c * height + y) * width
                    for x in 0..<width where data[source + x] > best[x] {
                        best[x] = data[source + x]
                        label[x] = UInt16(c)
                    }
                }
                if bitDepth == 8 {
                    for x in 0..<width { row8[x] = UInt8(truncatingIfNeeded: label[x]) }
                    try row8.withUnsafeBufferPointer { try writer.write(row: $0) }
                } else {
                    try label.withUnsafeBufferPointer { try writer.write(row: $0) }
                }
            }
        }
        try writer.finish()
    }
}

/// `<stem>.overlay.png`: 8-bit RGB. Each pixel is the input (gray expanded to
/// RGB; 16-bit input stretched so that its brightest sample is 255) blended
/// with the viridis colour of the class probability p at opacity `opacity × p`:
/// unlikely pixels show the image, likely ones turn yellow.
public func writeOverlayPNG(map: ProbabilityMap, image: PixelImage, classIndex: Int, opacity: Float = 0.6,
                            to path: String, compressionLevel: Int = 6) throws {
    precondition((0..<map.classes).contains(classIndex), "class \(classIndex) outside the map")
    guard image.width == map.width, image.height == map.height else {
        throw ImageIOError(.mismatch, path: path,
                           detail: "image \(image.width)×\(image.height) vs map \(map.width)×\(map.height)")
    }
    let width = map.width, height = map.height, channels = image.channels
    // One pass over 16-bit images for their brightest sample (microscopes often fill 12 of 16 bits).
    var imageScale: Float = 1
    if case .uint16(let samples) = image.samples {
        imageScale = 255 / Float(max(samples.max() ?? 1, 1))
    }
    let colors = ColorMap.viridis
    try AtomicFile.write(to: path) { temporary in
        let writer = try PNGRowWriter(path: temporary, width: width, height: height, channels: 3, bitDepth: 8,
                                      compressionLevel: compressionLevel)
        var row = [UInt8](repeating: 0, count: width * 3)
        try map.data.withUnsafeBufferPointer { data in
            for y in 0..<height {
                let source = (classIndex * height + y) * width
                image.withUnsafeRows(y..<(y + 1)) { pixels in
                    for x in 0..<width {
                        let p = quantize(data[source + x], 255)
                        let color = colors[Int(p)]
                        let alpha = opacity * p / 255
                        let keep = 1 - alpha
                        let base = x * channels
                        for (c, tint) in [color.r, color.g, color.b].enumerated() {
                            let sample: Float
                            switch pixels.storage {
                            case .uint8(let s): sample = Float(s[base + (channels == 3 ? c : 0)])
                            case .uint16(let s): sample = Float(s[base + (channels == 3 ? c : 0)]) * imageScale
                            }
                            row[x * 3 + c] = UInt8(min(max((sample * keep + tint * alpha).rounded(), 0), 255))
                        }
                    }
                }
                try row.withUnsafeBufferPointer { try writer.write(row: $0) }
            }
        }
        try writer.finish()
    }
}
