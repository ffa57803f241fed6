import TesseraCore
/// One resolution level of a slide or pyramidal TIFF.
public struct SlideLevel: Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let width: Int
    public let height: Int
    /// Level-0 pixels per pixel of this level (OpenSlide's value; for TIFF the mean of both axes' ratios).
    public let downsample: Double
    /// Micrometres per pixel along x, when the file declares a resolution.
    public let mpp: Double?
    /// The tile size; nil for a striped TIFF directory (or when OpenSlide does not say).
    public let tileWidth: Int?
    public let tileHeight: Int?

    public init(index: Int, width: Int, height: Int, downsample: Double, mpp: Double?, tileWidth: Int?,
                tileHeight: Int?) {
        self.index = index
        self.width = width
        self.height = height
        self.downsample = downsample
        self.mpp = mpp
        self.tileWidth = tileWidth
        self.tileHeight = tileHeight
    }

    public var description: String {
        var text = "level \(index): \(width)×\(height), downsample \(formatNumber(downsample))"
        if let mpp { text += ", \(formatNumber(mpp)) µm/px" }
        if let tileWidth, let tileHeight { text += ", tiles \(tileWidth)×\(tileHeight)" }
        return text
    }
}

/// Chooses a level: by index, or the one whose µm/px is nearest `mpp` (relative difference at most `tolerance`).
enum LevelChoice {
    static func choose(levels: [SlideLevel], level: Int?, mpp: Double?, tolerance: Double, path: String) throws
        -> Int {
        switch (level, mpp) {
        case (.some, .some):
            throw SlideError(.invalidArgument, path: path, detail: "give a level or a resolution (mpp), not both")
        case (.some(let index), nil):
            guard levels.indices.contains(index) else {
                throw SlideError(.noSuchLevel(index), path: path, level: index,
                                 detail: "the file has \(levels.count) level(s): \(listing(levels))")
            }
            return index
        case (nil, .some(let wanted)):
            guard wanted.isFinite, wanted > 0 else {
                throw SlideError(.invalidArgument, path: path, detail: "mpp must be positive, got \(wanted)")
            }
            let candidates = levels.compactMap { level in level.mpp.map { (level.index, abs($0 - wanted) / wanted) } }
            guard let best = candidates.min(by: { $0.1 < $1.1 }) else {
                throw SlideError(.noLevelNearMPP(wanted), path: path,
                                 detail: "the file declares no resolution (µm/px); levels: \(listing(levels))")
            }
            guard best.1 <= tolerance else {
                throw SlideError(.noLevelNearMPP(wanted), path: path,
                                 detail: "no level within \(formatNumber(tolerance * 100))% of "
                                     + "\(formatNumber(wanted)) µm/px; levels: \(listing(levels))")
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
