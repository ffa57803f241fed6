import TesseraCore

/// One resolution level of a slide or pyramidal TIFF.
package struct SlideLevel: Sendable, Equatable, CustomStringConvertible {
    package let index: Int
    package let width: Int
    package let height: Int
    /// Level-0 pixels per pixel of this level (OpenSlide's value; for TIFF the mean of both axes' ratios).
    package let downsample: Double
    /// Micrometres per pixel along x, when the file declares a resolution.
    /// A level-0 µm/px a file records, if plausible (0.001 to 10 000 µm per pixel: from
    /// electron-microscopy scales to a photo of a whole slide); nil otherwise. A damaged or
    /// hostile value (`MPP = 1e308`) otherwise became infinite at the next level and failed
    /// the job after its map was computed (user audit).
    package static func plausibleMPP(_ value: Double?) -> Double? {
        guard let value, value.isFinite, value >= 1e-3, value <= 1e4 else { return nil }
        return value
    }

    /// A note when a file's pixels are not square (x and y µm/px differ by over 1 %): Tessera,
    /// like the viewers, maps the slide's own pixel grid, so the net sees the tissue stretched;
    /// `--mpp` chooses by the x size, and the maps' scale has both. Nil when square or either is unknown.
    package static func nonSquareNote(x: Double?, y: Double?) -> String? {
        guard let x = plausibleMPP(x), let y = plausibleMPP(y), abs(y / x - 1) > 0.01 else { return nil }
        return "its pixels are not square (\(formatMPP(x)) µm wide, \(formatMPP(y)) µm high): they are read as "
            + "stored, so the net sees the tissue squeezed \(formatMPP(max(x, y) / min(x, y)))× "
            + "\(y > x ? "vertically" : "horizontally") (unless it was trained on such slides); --mpp chooses by the "
            + "width, and the maps record both sizes"
    }

    static func formatMPP(_ value: Double) -> String {
        String(format: "%.4g", value)
    }

    package let mpp: Double?
    /// Micrometres per pixel along y, when the file records a height that differs from the width (OME-XML's
    /// PhysicalSizeY, YResolution, OpenSlide's mpp-y); nil: square, or unknown.
    package let mppY: Double?
    /// The tile size; nil for a striped TIFF directory (or when OpenSlide does not say).
    package let tileWidth: Int?
    package let tileHeight: Int?

    package init(
        index: Int, width: Int, height: Int, downsample: Double, mpp: Double?, mppY: Double? = nil, tileWidth: Int?,
        tileHeight: Int?
    ) {
        self.index = index
        self.width = width
        self.height = height
        self.downsample = downsample
        self.mpp = mpp
        // Square within rounding (a level's x and y sizes come from different ratios): no y size
        // (verification audit 37 N2: square OME files got a y size an ulp off).
        if let mpp, let mppY, abs(mppY / mpp - 1) > 1e-9 { self.mppY = mppY } else { self.mppY = nil }
        self.tileWidth = tileWidth
        self.tileHeight = tileHeight
    }

    package var description: String {
        var text = "level \(index): \(width)×\(height), downsample \(formatNumber(downsample))"
        if let mpp { text += ", \(formatNumber(mpp)) µm/px" }
        if let tileWidth, let tileHeight { text += ", tiles \(tileWidth)×\(tileHeight)" }
        return text
    }
}

/// Chooses a level: by index, or the one whose µm/px is nearest `mpp` (relative difference at most `tolerance`).
enum LevelChoice {
    static func choose(
        levels: [SlideLevel], level: Int?, mpp: Double?, tolerance: Double, path: String
    ) throws
        -> Int
    {
        switch (level, mpp) {
        case (.some, .some):
            throw SlideError(.invalidArgument, path: path, detail: "give a level or a resolution (mpp), not both")
        case (.some(let index), nil):
            guard levels.indices.contains(index) else {
                throw SlideError(
                    .noSuchLevel(index), path: path, level: index,
                    detail: "the file has \(levels.count) level(s): \(listing(levels))")
            }
            return index
        case (nil, .some(let wanted)):
            guard wanted.isFinite, wanted > 0 else {
                throw SlideError(.invalidArgument, path: path, detail: "mpp must be positive, got \(wanted)")
            }
            let candidates = levels.compactMap { level in level.mpp.map { (level.index, abs($0 - wanted) / wanted) } }
            guard let best = candidates.min(by: { $0.1 < $1.1 }) else {
                throw SlideError(
                    .noLevelNearMPP(wanted), path: path,
                    detail: "the file declares no resolution (µm/px); levels: \(listing(levels))")
            }
            guard best.1 <= tolerance else {
                throw SlideError(
                    .noLevelNearMPP(wanted), path: path,
                    detail: "none within \(formatNumber(tolerance * 100))%; levels: \(listing(levels))")
            }
            return best.0
        case (nil, nil):
            return 0
        }
    }

    static func listing(_ levels: [SlideLevel]) -> String {
        levels.map { level in
            "\(level.index) (\(level.width)×\(level.height)"
                + (level.mpp.map { ", \(formatNumber($0)) µm/px" } ?? ", µm/px unknown") + ")"
        }.joined(separator: ", ")
    }
}

/// A number with at most 4 decimals and no trailing zeros ("0.25", "4", "1.0001").
func formatNumber(_ value: Double) -> String {
    guard value.isFinite else { return "\(value)" }
    let scaled = (value * 10000).rounded() / 10000
    if scaled == scaled.rounded() && abs(scaled) < 1e15 { return String(Int(scaled)) }
    return "\(scaled)"
}
