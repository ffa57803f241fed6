import Foundation
import Logging
import TesseraCore

/// Rows of a map, read band by band: a map in memory, or a chunked store on disk
/// that never holds the whole map. Writers take one band at a time.
package protocol MapRowSource {
    var classes: Int { get }
    var height: Int { get }
    var width: Int { get }
    /// The values of rows `y` (`classes × y.count × width`, C order).
    func rows(_ y: Range<Int>) throws -> [Float]
    /// Rows per band that read best (a chunked store's chunk height), or nil.
    var preferredBandRows: Int? { get }
    /// The net classes the planes are, when not all of the net's (`--keep-classes`); nil: plane c is class c.
    var keptClasses: [Int]? { get }
    /// How many classes the net has.
    var netClasses: Int { get }
}

extension MapRowSource {
    package var preferredBandRows: Int? { nil }
    package var keptClasses: [Int]? { nil }
    package var netClasses: Int { classes }
    /// Net class `c`'s plane, or nil if the map does not keep it.
    func plane(ofClass c: Int) -> Int? {
        guard let kept = keptClasses else { return (0..<classes).contains(c) ? c : nil }
        return kept.firstIndex(of: c)
    }
}

extension ProbabilityMap: MapRowSource {
    /// Bands of about 1 MiB: the rows are already in memory, so a writer adds only a small copy.
    package var preferredBandRows: Int? { max(1, (1 << 20) / max(1, classes * width * 4)) }

    package func rows(_ y: Range<Int>) throws -> [Float] {
        var out = [Float](repeating: 0, count: classes * y.count * width)
        data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for c in 0..<classes {
                    (dst.baseAddress! + c * y.count * width)
                        .update(from: src.baseAddress! + (c * height + y.lowerBound) * width, count: y.count * width)
                }
            }
        }
        return out
    }
}

/// A map whose planes are some of a net's classes (`--keep-classes`), kept by a store
/// that does not record which (an upload job's raw store): outputs name and check the
/// classes through it.
package struct KeptClassesMap<Base: MapRowSource>: MapRowSource {
    package let base: Base
    package let keptClasses: [Int]?
    package let netClasses: Int

    package init(_ base: Base, kept: [Int]?, netClasses: Int) {
        precondition(kept.map { $0.count == base.classes } ?? (base.classes == netClasses), "one plane per kept class")
        self.base = base
        self.keptClasses = kept
        self.netClasses = netClasses
    }

    package var classes: Int { base.classes }
    package var height: Int { base.height }
    package var width: Int { base.width }
    package var preferredBandRows: Int? { base.preferredBandRows }
    package func rows(_ y: Range<Int>) throws -> [Float] { try base.rows(y) }
}

/// Row bands in order: the source's preferred height, else at most ~32 MiB of floats (at least one row).
func bands(_ map: some MapRowSource) -> [Range<Int>] {
    let rows = map.preferredBandRows ?? max(1, (32 << 20) / max(1, map.classes * map.width * 4))
    return stride(from: 0, to: map.height, by: rows).map { $0..<min($0 + rows, map.height) }
}

/// Writes the outputs `options` asks for, each band by band from `map` (a map in
/// memory or a chunked store: never a second full-size copy) and atomically
/// (complete or absent under its final name). `image` is needed for the overlay
/// only and must have the map's height and width. Returns the paths written, in order.
@discardableResult
package func writeOutputs(
    map: some MapRowSource, image: (any RegionSource)?, options: OutputOptions,
    logger: Logger? = nil
) throws -> [String] {
    try validate(map: map, image: image, options: options)
    var written: [String] = []
    // The overlay first: a PNG input is decoded as the overlay goes down it (`PNGRowSource`), so damage is found
    // only there; first, it leaves no other output written (review: labels were written, then the overlay failed).
    let kinds = options.kinds.sorted()
    for kind in kinds.filter({ $0 == .overlay }) + kinds.filter({ $0 != .overlay }) {
        switch kind {
        case .prob:
            let indices = probabilityClasses(map, options)
            let paths = indices.map { options.probabilityPath(forClass: $0) }
            try writeProbabilityPNGs(
                map: map, classIndices: indices.map { map.plane(ofClass: $0)! }, bitDepth: options.bitDepth,
                to: paths, compressionLevel: options.compressionLevel)
            written += paths
        case .labels:
            try writeLabelsPNG(map: map, to: options.labelsPath, compressionLevel: options.compressionLevel)
            written.append(options.labelsPath)
        case .overlay:
            try writeOverlayPNG(
                map: map, image: image!, classIndex: options.resolvedOverlayClass(classCount: map.classes),
                opacity: options.overlayOpacity, to: options.overlayPath,
                compressionLevel: options.compressionLevel)
            written.append(options.overlayPath)
        case .npy:
            try NPY.write(map, to: options.npyPath)
            written.append(options.npyPath)
        case .zarr, .tiff:
            continue  // written from the chunked store by the caller
        }
        logger?.debug("output written", metadata: ["kind": "\(kind.rawValue)", "stem": "\(options.stem)"])
    }
    return written
}

/// The classes written as probability PNGs: those asked for, else the kept ones, else the default.
private func probabilityClasses(_ map: some MapRowSource, _ options: OutputOptions) -> [Int] {
    options.classes ?? map.keptClasses ?? OutputOptions.defaultClasses(classCount: map.netClasses)
}

/// Checks everything that can be checked before the first file is written.
private func validate(map: some MapRowSource, image: (any RegionSource)?, options: OutputOptions) throws {
    let directory = options.directory
    func fail(_ detail: String) -> ImageIOError { ImageIOError(.invalidArgument, path: directory, detail: detail) }
    guard options.bitDepth == 8 || options.bitDepth == 16 else {
        throw fail("bit depth \(options.bitDepth) is not 8 or 16")
    }
    guard map.classes > 0, map.height > 0, map.width > 0 else {
        throw fail("empty map \(map.classes)×\(map.height)×\(map.width)")
    }
    if options.kinds.contains(.prob) {
        for index in probabilityClasses(map, options) where map.plane(ofClass: index) == nil {
            if let kept = map.keptClasses, (0..<map.netClasses).contains(index) {
                throw fail("class \(index) is not in the map: it keeps only classes \(kept) (--keep-classes)")
            }
            throw fail("class \(index) does not exist (the map has \(map.netClasses) classes)")
        }
    }
    if let kept = map.keptClasses, !options.kinds.isDisjoint(with: [.labels, .overlay]) {
        throw fail(
            "labels and overlays need every class, and the map keeps only classes \(kept) (--keep-classes)")
    }
    if options.kinds.contains(.overlay) {
        let index = options.resolvedOverlayClass(classCount: map.classes)
        guard (0..<map.classes).contains(index) else {
            throw fail("overlay class \(index) does not exist (the map has \(map.classes) classes)")
        }
        guard let image else { throw fail("the overlay needs the input image") }
        guard image.width == map.width, image.height == map.height else {
            throw ImageIOError(
                .mismatch, path: options.overlayPath,
                detail: "image \(image.width)×\(image.height) vs map \(map.width)×\(map.height)")
        }
    }
}

/// `<stem>.prob-<class>.png`: gray, `bitDepth` 8 (p × 255) or 16 (p × 65535), one row buffer.
package func writeProbabilityPNG(
    map: some MapRowSource, classIndex: Int, bitDepth: Int = 8, to path: String,
    compressionLevel: Int = 6
) throws {
    try writeProbabilityPNGs(
        map: map, classIndices: [classIndex], bitDepth: bitDepth, to: [path], compressionLevel: compressionLevel)
}

/// One probability PNG per plane in `classIndices` (to `paths`, in order), up to 64
/// at a time in one pass over the map's bands: a chunked map is read once per 64
/// classes, not once per class. Each file is atomic; if one of a pass fails, none
/// of that pass is left.
package func writeProbabilityPNGs(
    map: some MapRowSource, classIndices: [Int], bitDepth: Int = 8, to paths: [String],
    compressionLevel: Int = 6
) throws {
    precondition(classIndices.count == paths.count, "one path per class")
    for index in classIndices { precondition((0..<map.classes).contains(index), "class \(index) outside the map") }
    let group = 64  // open files per pass
    if paths.count > group {
        for start in stride(from: 0, to: paths.count, by: group) {
            let end = min(start + group, paths.count)
            try writeProbabilityPNGs(
                map: map, classIndices: Array(classIndices[start..<end]), bitDepth: bitDepth,
                to: Array(paths[start..<end]), compressionLevel: compressionLevel)
        }
        return
    }
    guard !paths.isEmpty else { return }
    let width = map.width
    // Nested atomic writes: the innermost body writes every file; a throw removes every temporary.
    func write(_ k: Int, _ temporaries: [String]) throws {
        if k < paths.count {
            try AtomicFile.write(to: paths[k]) { try write(k + 1, temporaries + [$0]) }
            return
        }
        let writers = try temporaries.map {
            try PNGRowWriter(
                path: $0, width: width, height: map.height, channels: 1, bitDepth: bitDepth,
                compressionLevel: compressionLevel)
        }
        var row8 = [UInt8](repeating: 0, count: bitDepth == 8 ? width : 0)
        var row16 = [UInt16](repeating: 0, count: bitDepth == 8 ? 0 : width)
        for band in bands(map) {
            let data = try map.rows(band)
            for y in 0..<band.count {
                for (writer, classIndex) in zip(writers, classIndices) {
                    let source = (classIndex * band.count + y) * width
                    if bitDepth == 8 {
                        for x in 0..<width { row8[x] = UInt8(quantize(data[source + x], 255)) }
                        try row8.withUnsafeBufferPointer { try writer.write(row: $0) }
                    } else {
                        for x in 0..<width { row16[x] = UInt16(quantize(data[source + x], 65535)) }
                        try row16.withUnsafeBufferPointer { try writer.write(row: $0) }
                    }
                }
            }
        }
        for writer in writers { try writer.finish() }
    }
    try write(0, [])
}

/// `<stem>.labels.png`: the argmax class per pixel as its raw index (ties go
/// to the lower class, NaN never wins); 8-bit gray, 16-bit above 256 classes.
/// A one-class map (a sigmoid head: the probability of the class) is labelled 1
/// where it is above 0.5, else 0 (an argmax of one class would be 0 everywhere).
/// Raw indices look black in a viewer for few classes: stretch the contrast.
package func writeLabelsPNG(map: some MapRowSource, to path: String, compressionLevel: Int = 6) throws {
    let width = map.width, height = map.height, classes = map.classes
    let bitDepth = classes <= 256 ? 8 : 16
    try AtomicFile.write(to: path) { temporary in
        let writer = try PNGRowWriter(
            path: temporary, width: width, height: height, channels: 1,
            bitDepth: bitDepth, compressionLevel: compressionLevel)
        var best = [Float](repeating: 0, count: width)
        var label = [UInt16](repeating: 0, count: width)
        var row8 = [UInt8](repeating: 0, count: bitDepth == 8 ? width : 0)
        for band in bands(map) {
            let data = try map.rows(band)
            for y in 0..<band.count {
                for x in 0..<width {
                    best[x] = -.infinity
                    label[x] = 0
                }
                if classes == 1 {
                    let source = y * width
                    for x in 0..<width where data[source + x] > 0.5 { label[x] = 1 }
                }
                for c in 0..<classes where classes > 1 {
                    let source = (c * band.count + y) * width
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
package func writeOverlayPNG(
    map: some MapRowSource, image: any RegionSource, classIndex: Int, opacity: Float = 0.6,
    to path: String, compressionLevel: Int = 6
) throws {
    precondition((0..<map.classes).contains(classIndex), "class \(classIndex) outside the map")
    guard image.width == map.width, image.height == map.height else {
        throw ImageIOError(
            .mismatch, path: path,
            detail: "image \(image.width)×\(image.height) vs map \(map.width)×\(map.height)")
    }
    let width = map.width, height = map.height, channels = image.channels
    func imageRows(_ band: Range<Int>) throws -> [Float] {
        try image.readRegion(PixelRect(y: band.lowerBound, x: 0, height: band.count, width: width)).samples
    }
    // One pass over 16-bit images for their brightest sample (microscopes often fill 12 of 16 bits).
    var imageScale: Float = 1
    if image.bitDepth == 16 {
        var brightest: Float = 0
        for band in bands(map) { brightest = max(brightest, try imageRows(band).max() ?? 0) }
        imageScale = 255 / max(brightest, 1)
    }
    let colors = ColorMap.viridis
    try AtomicFile.write(to: path) { temporary in
        let writer = try PNGRowWriter(
            path: temporary, width: width, height: height, channels: 3, bitDepth: 8,
            compressionLevel: compressionLevel)
        var row = [UInt8](repeating: 0, count: width * 3)
        for band in bands(map) {
            let data = try map.rows(band)
            let pixels = try imageRows(band)
            for y in 0..<band.count {
                let source = (classIndex * band.count + y) * width
                for x in 0..<width {
                    let p = quantize(data[source + x], 255)
                    let color = colors[Int(p)]
                    let alpha = opacity * p / 255
                    let keep = 1 - alpha
                    let base = (y * width + x) * channels
                    for (c, tint) in [color.r, color.g, color.b].enumerated() {
                        let raw = pixels[base + (channels == 3 ? c : 0)]
                        let sample = image.bitDepth == 16 ? raw * imageScale : raw
                        row[x * 3 + c] = UInt8(min(max((sample * keep + tint * alpha).rounded(), 0), 255))
                    }
                }
                try row.withUnsafeBufferPointer { try writer.write(row: $0) }
            }
        }
        try writer.finish()
    }
}
