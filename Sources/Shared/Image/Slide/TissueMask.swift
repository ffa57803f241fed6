import Foundation
import TesseraCore

/// Which parts of a slide hold tissue, from a low-resolution view, so a tile planner can skip background.
///
/// How: the image is averaged into cells (at most `maxDimension` along the longer side), each cell's mean colour
/// gets its HSV saturation (stained tissue is coloured, glass and background are grey or white), and an Otsu
/// threshold on those saturations splits tissue from background, as the pathology toolkits do. Gray images use
/// darkness (1 − value) instead, and so do colour images without colour (gray stored as RGB). A dark-field
/// image (fluorescence: the cells along its border, where slides show their background, darker than
/// `darkBackground` in the median) uses brightness (the brightest channel) instead: there the signal is
/// bright, and near-black noise has a high saturation. The threshold is never below `minimumThreshold`, so an empty slide's noise
/// is not split in two. In colour, a cell also counts as tissue when it is darker than the glass by `paleMargin`
/// (or by four times the glass's own spread, if larger): pale, barely stained tissue (stroma beside a strong stain,
/// whose saturation Otsu puts with the glass) is darker than the glass even where it is not coloured; the glass's
/// brightness is the median of the view's border cells. The tissue cells are then dilated by `dilation` cells so
/// tissue edges are not cut.
/// Deterministic: the same pixels give the same mask.
///
/// The mask never holds a full-resolution image: the source is read in blocks of about 1024² pixels and
/// only per-cell sums are kept.
package struct TissueMask: Sendable, Equatable {
    package struct Options: Sendable, Equatable {
        /// Cells along the longer side, at most.
        package var maxDimension: Int
        /// Cells of dilation around tissue (Chebyshev distance).
        package var dilation: Int
        /// The smallest saturation (or darkness, for gray images) counted as tissue, whatever Otsu says.
        package var minimumThreshold: Double
        /// Parts of the view whose data is damaged (`SlideError.isCorruptData`) count as tissue, so their
        /// tiles are tried (and left empty if damaged: `--corrupt-tiles skip`); else the damage is an error.
        package var tolerateDamage: Bool
        /// In colour: how much darker than the glass (brightness 0…1) a cell must be to count as tissue whatever
        /// its saturation; nil: saturation alone.
        package var paleMargin: Double?

        package init(
            maxDimension: Int = 1024, dilation: Int = 1, minimumThreshold: Double = 0.05, tolerateDamage: Bool = false,
            paleMargin: Double? = 0.04
        ) {
            self.maxDimension = maxDimension
            self.dilation = dilation
            self.minimumThreshold = minimumThreshold
            self.tolerateDamage = tolerateDamage
            self.paleMargin = paleMargin
        }
    }

    /// What a cell's value is (see the type's comment).
    package enum Feature: String, Sendable, Equatable {
        /// Brightfield colour: HSV saturation of the cell's mean colour.
        case saturation
        /// Brightfield gray: 1 − value.
        case darkness
        /// A dark background (fluorescence, dark field): the brightest channel's value.
        case brightness
    }

    /// Below this median brightness (brightest channel, 0…1) an image is dark-field.
    package static let darkBackground: Float = 0.3

    /// Mask size in cells.
    package let width: Int
    package let height: Int
    /// The coordinate space that queries use (level 0 of the slide, or the source's own pixels).
    package let coverWidth: Int
    package let coverHeight: Int
    /// The size of one cell in cover pixels.
    package let cellWidth: Double
    package let cellHeight: Double
    /// The feature's value above which a cell is tissue, before dilation.
    package let threshold: Double
    /// What was thresholded.
    package let feature: Feature
    /// Cells whose pixels could not be read (damaged data, `Options.tolerateDamage`): counted as tissue.
    package let damagedCells: Int
    /// In colour: the brightness below which a cell is tissue whatever its saturation (pale tissue), if any.
    package let paleBelow: Double?
    /// Cells that are tissue by the pale rule only (before dilation).
    package let paleCells: Int
    /// Row-major, `width × height`: true where there is tissue (after dilation).
    package let cells: [Bool]

    /// The fraction of the whole image marked as tissue.
    package var tissueFraction: Double { Double(cells.lazy.filter { $0 }.count) / Double(max(1, cells.count)) }

    /// Detects tissue in `source`. Queries use `coverWidth × coverHeight` coordinates (default: the source's
    /// own size; give level 0's size when `source` is a lower level of the same slide).
    /// `watch` hears how much of the view is read (0–1) before each block, and stops the detection
    /// (`CancellationError`) by returning false.
    package static func detect(
        source: any RegionSource, coverWidth: Int? = nil, coverHeight: Int? = nil,
        options: Options = Options(), watch: (Double) -> Bool = { _ in true }
    ) throws -> TissueMask {
        guard source.width > 0, source.height > 0 else {
            throw SlideError(.invalidArgument, path: source.name, detail: "an empty image has no tissue mask")
        }
        let grid = try CellGrid(
            source: source, maxDimension: max(1, options.maxDimension), tolerateDamage: options.tolerateDamage,
            watch: watch)
        return TissueMask(
            grid: grid, bitDepth: source.bitDepth, coverWidth: coverWidth ?? source.width,
            coverHeight: coverHeight ?? source.height, options: options)
    }

    /// Detects tissue in the PNG at `path`, decoded a band of rows at a time (an interlaced PNG through a file: `readBands`): the
    /// decoded image is never held, only the cells' sums. Queries use the PNG's pixel coordinates. `watch` hears
    /// how much of the image is decoded (0–1) before each band is added.
    package static func detect(
        png path: String, maxPixels: Int = PNGReader.defaultMaxPixels, options: Options = Options(),
        watch: (Double) -> Bool = { _ in true }
    ) throws -> TissueMask {
        let header = try PNGReader.header(path: path, maxPixels: maxPixels)
        guard header.width > 0, header.height > 0 else {
            throw SlideError(.invalidArgument, path: path, detail: "an empty image has no tissue mask")
        }
        let grid = try CellGrid(
            png: path, header: header, maxPixels: maxPixels, maxDimension: max(1, options.maxDimension), watch: watch)
        return TissueMask(
            grid: grid, bitDepth: header.bitDepth == 16 ? 16 : 8, coverWidth: header.width,
            coverHeight: header.height, options: options)
    }

    /// Detects tissue in a slide or TIFF file from its coarsest level that still has `maxDimension` pixels along
    /// its longer side (or level 0 if none has); queries use level-0 coordinates.
    package static func detect(path: String, options: Options = Options()) throws -> TissueMask {
        let levels = try SlideInfo.inspect(path: path).levels
        let wanted = max(1, options.maxDimension)
        let level = levels.last { max($0.width, $0.height) >= wanted } ?? levels[0]
        let source = try openRegionSource(path: path, level: level.index, cacheBytes: 8 << 20)
        return try detect(
            source: source, coverWidth: levels[0].width, coverHeight: levels[0].height,
            options: options)
    }

    /// Whether `rect` (in cover coordinates) touches a tissue cell, or, with `minFraction` > 0, whether at least
    /// that fraction of the cells it touches are tissue.
    package func containsTissue(_ rect: PixelRect, minFraction: Double = 0) -> Bool {
        let fraction = tissueFraction(in: rect)
        return minFraction <= 0 ? fraction > 0 : fraction >= minFraction
    }

    /// The fraction of the cells `rect` touches that are tissue (0 for an empty or outside rectangle).
    package func tissueFraction(in rect: PixelRect) -> Double {
        guard !rect.isEmpty else { return 0 }
        // Clamped as Doubles before converting: no rectangle, however large, can trap.
        func cell(_ coordinate: Double, _ size: Double, _ count: Int, _ rule: FloatingPointRoundingRule) -> Int {
            Int(min(Double(count), max(0, (coordinate / size).rounded(rule))))
        }
        let x0 = cell(Double(rect.x), cellWidth, width, .down)
        let y0 = cell(Double(rect.y), cellHeight, height, .down)
        let x1 = cell(Double(rect.x) + Double(rect.width), cellWidth, width, .up)
        let y1 = cell(Double(rect.y) + Double(rect.height), cellHeight, height, .up)
        guard x0 < x1, y0 < y1 else { return 0 }
        var count = 0
        for y in y0..<y1 {
            for x in x0..<x1 where cells[y * width + x] { count += 1 }
        }
        return Double(count) / Double((x1 - x0) * (y1 - y0))
    }

    /// Otsu's threshold of values in [0, 1] (256 bins): the bin edge that maximises the between-class variance.
    /// Values above it are the foreground. Public for callers that threshold features of their own.
    package static func otsu(_ values: [Float]) -> Double {
        var histogram = [Double](repeating: 0, count: 256)
        for value in values { histogram[min(255, max(0, Int(value * 256)))] += 1 }
        let total = Double(values.count)
        guard total > 0 else { return 1 }
        let sumAll = histogram.enumerated().reduce(0) { $0 + Double($1.offset) * $1.element }
        var weightBelow = 0.0, sumBelow = 0.0, best = -1.0, bestBin = 0
        for bin in 0..<256 {
            weightBelow += histogram[bin]
            sumBelow += Double(bin) * histogram[bin]
            let weightAbove = total - weightBelow
            guard weightBelow > 0, weightAbove > 0 else { continue }
            let meanBelow = sumBelow / weightBelow, meanAbove = (sumAll - sumBelow) / weightAbove
            let between = weightBelow * weightAbove * (meanBelow - meanAbove) * (meanBelow - meanAbove)
            if between > best {
                best = between
                bestBin = bin
            }
        }
        // Values in bins ≤ bestBin are background: the threshold is that bin's upper edge.
        return best < 0 ? 1 : Double(bestBin + 1) / 256
    }

    /// Square (Chebyshev) dilation, separable: rows then columns.
    static func dilate(_ mask: [Bool], width: Int, height: Int, radius: Int) -> [Bool] {
        guard radius > 0 else { return mask }
        var rows = [Bool](repeating: false, count: mask.count)
        for y in 0..<height {
            for x in 0..<width where mask[y * width + x] {
                for xx in max(0, x - radius)...min(width - 1, x + radius) { rows[y * width + xx] = true }
            }
        }
        var result = [Bool](repeating: false, count: mask.count)
        for y in 0..<height {
            for x in 0..<width where rows[y * width + x] {
                for yy in max(0, y - radius)...min(height - 1, y + radius) { result[yy * width + x] = true }
            }
        }
        return result
    }
}

extension TissueMask {
    /// The mask of a source's cell means (`detect`): `bitDepth` is the source's, the cover size the query space.
    private init(grid: CellGrid, bitDepth: Int, coverWidth: Int, coverHeight: Int, options: Options) {
        let (values, feature) = grid.values(
            gray: grid.channels == 1, maxValue: grid.effectiveMaximum(bitDepth: bitDepth),
            minimumSaturation: Float(options.minimumThreshold))
        let readable = values.indices.filter { !grid.damaged[$0] }.map { values[$0] }
        let threshold = max(Self.otsu(readable), options.minimumThreshold)
        var tissue = values.indices.map { grid.damaged[$0] || Double(values[$0]) > threshold }
        var paleBelow: Double?
        var paleCells = 0
        if feature == .saturation, let margin = options.paleMargin,
            case let brightness = grid.brightness(maxValue: grid.effectiveMaximum(bitDepth: bitDepth)),
            let glass = grid.glass(brightness)
        {
            let below = glass.median - max(margin, 4 * glass.spread)
            for i in tissue.indices where !tissue[i] && Double(brightness[i]) < below {
                tissue[i] = true
                paleCells += 1
            }
            paleBelow = below
        }
        let dilated = Self.dilate(tissue, width: grid.width, height: grid.height, radius: max(0, options.dilation))
        self.init(
            width: grid.width, height: grid.height, coverWidth: coverWidth, coverHeight: coverHeight,
            cellWidth: Double(grid.cell) * Double(coverWidth) / Double(grid.sourceWidth),
            cellHeight: Double(grid.cell) * Double(coverHeight) / Double(grid.sourceHeight),
            threshold: threshold, feature: feature, damagedCells: grid.damaged.lazy.filter { $0 }.count,
            paleBelow: paleBelow, paleCells: paleCells, cells: dilated)
    }
}

/// Per-cell colour means of a source, accumulated block by block.
struct CellGrid {
    /// Cell size in source pixels.
    let cell: Int
    let width: Int
    let height: Int
    let channels: Int
    /// The source's size in pixels.
    let sourceWidth: Int
    let sourceHeight: Int
    /// Mean of each channel per cell, row-major, interleaved.
    let means: [Float]
    /// Per cell: some of its pixels could not be read (damaged data; only with `tolerateDamage`).
    let damaged: [Bool]

    /// - Parameters:
    ///   - watch: asked before each block of up to 1024² pixels is read: the fraction of the view read so far;
    ///     returns false to stop (the init throws `CancellationError`).
    init(
        source: any RegionSource, maxDimension: Int, tolerateDamage: Bool = false,
        watch: (Double) -> Bool = { _ in true }
    ) throws {
        var sums = CellSums(
            sourceWidth: source.width, sourceHeight: source.height, channels: source.channels,
            maxDimension: maxDimension)
        let (cell, width) = (sums.cell, sums.width)
        var damaged = [Bool](repeating: false, count: sums.width * sums.height)
        // Re-reads of damaged parts, bounded: past `maxFailures`, a failing block counts whole.
        var failures = 0
        let maxFailures = 256
        func add(_ rect: PixelRect) throws {
            let region: PixelRegion
            do {
                region = try source.readRegion(rect)
            } catch let error as SlideError where tolerateDamage && error.isCorruptData {
                // Read it again in quarters (down to 32 pixels), so only the damaged parts count as unreadable.
                let smallest = max(cell, 32 / cell * cell)
                failures += 1
                guard (rect.height > smallest || rect.width > smallest) && failures <= maxFailures else {
                    for y in (rect.y / cell)...((rect.y + rect.height - 1) / cell) {
                        for x in (rect.x / cell)...((rect.x + rect.width - 1) / cell) { damaged[y * width + x] = true }
                    }
                    return
                }
                // Halves on cell boundaries (a cell is never split between two reads).
                func halves(_ start: Int, _ length: Int) -> [(Int, Int)] {
                    let half = max(cell, (length / 2 + cell - 1) / cell * cell)
                    return half >= length ? [(start, length)] : [(start, half), (start + half, length - half)]
                }
                for (y, h) in halves(rect.y, rect.height) {
                    for (x, w) in halves(rect.x, rect.width) { try add(PixelRect(y: y, x: x, height: h, width: w)) }
                }
                return
            }
            sums.add(region.samples, rect: rect) { Double($0) }
        }
        let block = max(cell, 1024 / cell * cell)
        let blocksAcross = (source.width + block - 1) / block
        let blocks = Double(blocksAcross * ((source.height + block - 1) / block))
        for (row, by) in stride(from: 0, to: source.height, by: block).enumerated() {
            for (column, bx) in stride(from: 0, to: source.width, by: block).enumerated() {
                guard watch(Double(row * blocksAcross + column) / blocks) else { throw CancellationError() }
                try add(
                    PixelRect(
                        y: by, x: bx, height: min(block, source.height - by), width: min(block, source.width - bx)))
            }
        }
        self.init(sums, damaged: damaged)
    }

    /// The grid of `sums`, all added.
    private init(_ sums: CellSums, damaged: [Bool]) {
        (cell, width, height, channels) = (sums.cell, sums.width, sums.height, sums.channels)
        (sourceWidth, sourceHeight) = (sums.sourceWidth, sums.sourceHeight)
        self.damaged = damaged
        means = sums.means
    }

    /// The cells of the PNG at `path` (its `header`), decoded a band of rows at a time; `watch` as above, asked
    /// before each band is added.
    init(
        png path: String, header: PNGHeader, maxPixels: Int, maxDimension: Int, bandBytes: Int = 32 << 20,
        watch: (Double) -> Bool = { _ in true }
    ) throws {
        var sums = CellSums(
            sourceWidth: header.width, sourceHeight: header.height, channels: header.channels,
            maxDimension: maxDimension)
        let rowSamples = header.width * header.channels
        var row = 0
        let read = try PNGReader.readBands(path: path, maxPixels: maxPixels, bandBytes: bandBytes) { bytes in
            guard watch(Double(row) / Double(header.height)) else { throw CancellationError() }
            let rows: Int
            if header.bitDepth == 16 {
                rows = bytes.count / 2 / rowSamples
                bytes.withUnsafeBytes { raw in
                    raw.withMemoryRebound(to: UInt16.self) { samples in
                        sums.add(samples, rect: PixelRect(y: row, x: 0, height: rows, width: header.width)) {
                            Double($0)
                        }
                    }
                }
            } else {
                rows = bytes.count / rowSamples
                sums.add(bytes, rect: PixelRect(y: row, x: 0, height: rows, width: header.width)) { Double($0) }
            }
            row += rows
        }
        guard read == header, row == header.height else {
            throw ImageIOError(.truncated, path: path, detail: "the PNG changed while its tissue view was read")
        }
        self.init(sums, damaged: [Bool](repeating: false, count: sums.width * sums.height))
    }

    /// The value of full brightness: 2^bitDepth − 1, but for images of more than 8 bits the
    /// range their brightest cell fits in (2^k − 1, at least 255): 16-bit files often hold
    /// 12-bit data, whose dim fluorescence would sit below every threshold of the full range.
    func effectiveMaximum(bitDepth: Int) -> Float {
        let full = Float((1 << bitDepth) - 1)
        guard bitDepth > 8 else { return full }
        var brightest: Float = 0
        for i in 0..<(width * height) where !damaged[i] {
            for c in 0..<channels { brightest = max(brightest, means[i * channels + c]) }
        }
        var range: Float = 255
        while range < brightest && range < full { range = range * 2 + 1 }
        return min(range, full)
    }

    /// Per cell, the feature `TissueMask` thresholds, and which it is: brightness (the
    /// brightest channel / maxValue) when the median of the cells along the border is
    /// darker than `TissueMask.darkBackground`; else HSV saturation of the mean colour,
    /// or darkness (1 − value / maxValue) for gray images and for colour images with
    /// (almost) no cell at `minimumSaturation` (gray stored as RGB).
    func values(gray: Bool, maxValue: Float, minimumSaturation: Float) -> ([Float], TissueMask.Feature) {
        let readable = (0..<(width * height)).filter { !damaged[$0] }
        let saturation = (0..<(width * height)).map { index -> Float in
            guard !gray && channels >= 3 else { return 0 }
            let r = means[index * 3], g = means[index * 3 + 1], b = means[index * 3 + 2]
            let high = max(r, g, b), low = min(r, g, b)
            return high > 0 ? (high - low) / high : 0
        }
        // Colour if a few cells (0.1 %, at least one) are saturated: tissue may cover only 1 % of a slide.
        let saturated = readable.lazy.filter { saturation[$0] >= minimumSaturation }.count
        let colour = saturated > 0 && saturated >= readable.count / 1000
        let brightness = brightness(maxValue: maxValue, gray: gray)
        let border = borderBrightness(brightness)
        if !border.isEmpty, border[border.count / 2] < TissueMask.darkBackground { return (brightness, .brightness) }
        if !colour { return (brightness.map { 1 - $0 }, .darkness) }
        return (saturation, .saturation)
    }

    /// Each cell's brightness, 0…1: its brightest channel's mean (its mean, for gray).
    func brightness(maxValue: Float, gray: Bool = false) -> [Float] {
        (0..<(width * height)).map { index in
            (!gray && channels >= 3
                ? max(means[index * 3], means[index * 3 + 1], means[index * 3 + 2]) : means[index * channels])
                / maxValue
        }
    }

    /// The readable border cells' brightness, ascending: slides show their background along the border
    /// (the glass around the tissue).
    func borderBrightness(_ brightness: [Float]) -> [Float] {
        (0..<(width * height)).filter { i in
            !damaged[i] && (i / width == 0 || i / width == height - 1 || i % width == 0 || i % width == width - 1)
        }.map { brightness[$0] }.sorted()
    }

    /// The glass's brightness (the border cells' median) and spread (their median absolute deviation).
    func glass(_ brightness: [Float]) -> (median: Double, spread: Double)? {
        let border = borderBrightness(brightness)
        guard !border.isEmpty else { return nil }
        let median = Double(border[border.count / 2])
        let deviations = border.map { abs(Double($0) - median) }.sorted()
        return (median, deviations[deviations.count / 2])
    }
}

/// Per-cell sums of a source's samples, added a rectangle at a time.
private struct CellSums {
    let cell: Int
    let width: Int
    let height: Int
    let channels: Int
    let sourceWidth: Int
    let sourceHeight: Int
    private var sums: [Double]
    private var counts: [Double]

    /// Cells of `cell²` pixels, `cell` the smallest that puts at most `maxDimension` along the longer side.
    init(sourceWidth: Int, sourceHeight: Int, channels: Int, maxDimension: Int) {
        cell = max(1, (max(sourceWidth, sourceHeight) + maxDimension - 1) / maxDimension)
        width = (sourceWidth + cell - 1) / cell
        height = (sourceHeight + cell - 1) / cell
        (self.sourceWidth, self.sourceHeight) = (sourceWidth, sourceHeight)
        self.channels = channels
        sums = [Double](repeating: 0, count: width * height * channels)
        counts = [Double](repeating: 0, count: width * height)
    }

    /// Adds the interleaved samples of `rect` (row-major, `channels` per pixel).
    @inline(__always)
    mutating func add<Samples: RandomAccessCollection>(
        _ samples: Samples, rect: PixelRect, _ value: (Samples.Element) -> Double
    ) where Samples.Index == Int {
        let start = samples.startIndex
        for y in 0..<rect.height {
            let cellRow = (rect.y + y) / cell * width
            for x in 0..<rect.width {
                let index = cellRow + (rect.x + x) / cell
                counts[index] += 1
                let at = start + (y * rect.width + x) * channels
                for c in 0..<channels { sums[index * channels + c] += value(samples[at + c]) }
            }
        }
    }

    /// Each cell's mean per channel, interleaved.
    var means: [Float] { sums.indices.map { Float(sums[$0] / max(1, counts[$0 / channels])) } }
}
