import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage

@Suite("Tissue detection")
struct TissueMaskTests {
    /// Two stained blobs on white glass: the blobs are tissue, the corners and the gap between them are not.
    @Test func findsTheBlobs() throws {
        let fixtures = try Fixtures.get()
        let fixture = try fixtures.good("tissue_blobs")
        let path = fixtures.path(fixture.file)
        let mask = try TissueMask.detect(path: path, options: .init(maxDimension: 150, dilation: 1))
        #expect(mask.coverWidth == 800 && mask.coverHeight == 600)
        #expect(mask.feature == .saturation)
        #expect(mask.width == 100 && mask.height == 75)  // read from the ¼ level (200×150), cells of 2×2 px
        for blob in try #require(fixture.blobs) {
            let (cy, cx) = (blob[0], blob[1])
            #expect(mask.containsTissue(PixelRect(y: cy - 8, x: cx - 8, height: 16, width: 16), minFraction: 1))
        }
        let background = [
            PixelRect(y: 0, x: 0, height: 64, width: 64), PixelRect(y: 536, x: 736, height: 64, width: 64),
            PixelRect(y: 0, x: 700, height: 100, width: 100), PixelRect(y: 450, x: 0, height: 150, width: 300),
        ]
        for rect in background {
            #expect(!mask.containsTissue(rect), "\(rect)")
        }
        // The blobs cover π(80·120 + 100·90) px of 480 000: about 12 %; dilation adds a little.
        #expect(mask.tissueFraction > 0.10 && mask.tissueFraction < 0.18, "\(mask.tissueFraction)")
        // A tile that only grazes the first blob's edge counts (edges are kept), one 40 px away does not.
        #expect(mask.containsTissue(PixelRect(y: 150, x: 318, height: 10, width: 10)))
        #expect(!mask.containsTissue(PixelRect(y: 150, x: 360, height: 10, width: 10)))
    }

    @Test func deterministicAndConsistentAcrossLevels() throws {
        let fixtures = try Fixtures.get()
        let path = fixtures.path("tissue.tif")
        let a = try TissueMask.detect(path: path, options: .init(maxDimension: 150))
        let b = try TissueMask.detect(path: path, options: .init(maxDimension: 150))
        #expect(a == b)
        // From level 0, strided into 100 cells across: the same regions.
        let full = try TIFFRegionSource(path: path)
        let coarse = try TissueMask.detect(source: full, options: .init(maxDimension: 100, dilation: 0))
        #expect(coarse.width == 100 && coarse.height == 75 && coarse.cellWidth == 8)
        #expect(coarse.containsTissue(PixelRect(y: 140, x: 190, height: 20, width: 20), minFraction: 1))
        #expect(!coarse.containsTissue(PixelRect(y: 0, x: 0, height: 100, width: 100)))
        #expect(abs(coarse.tissueFraction - a.tissueFraction) < 0.05)
    }

    /// A blank slide has no tissue: the threshold floor stops Otsu from splitting noise in two.
    @Test func blankHasNoTissue() throws {
        let source = ConstantSource(width: 300, height: 200, value: [245, 244, 246])
        let mask = try TissueMask.detect(source: source, options: .init(maxDimension: 64))
        #expect(mask.tissueFraction == 0)
        #expect(!mask.containsTissue(PixelRect(y: 0, x: 0, height: 200, width: 300)))
    }

    /// The view is read in blocks of up to 1024²; before each, `watch` hears the fraction read so far, and
    /// returning false stops the detection (user audit: Ctrl-C waited for a full-resolution view to be read).
    @Test func detectionReportsProgressAndStops() throws {
        let source = ConstantSource(width: 4096, height: 3000, value: [245, 244, 246])  // 4 × 3 blocks
        var seen: [Double] = []
        _ = try TissueMask.detect(source: source, options: .init(maxDimension: 64)) {
            seen.append($0); return true
        }
        #expect(seen.count == 12 && seen.first == 0 && seen == seen.sorted() && seen.last! < 1, "\(seen)")
        var calls = 0
        #expect(throws: CancellationError.self) {
            _ = try TissueMask.detect(source: source, options: .init(maxDimension: 64)) { _ in
                calls += 1
                return calls < 3
            }
        }
        #expect(calls == 3)
    }

    /// Fluorescence: bright cells on a near-black background whose noise is strongly
    /// "saturated" ((3, 0, 1) has saturation 1). In colour and in gray, the bright blobs
    /// are the tissue and the background is not (saturation marked the background,
    /// and darkness inverted the gray image: its nuclei were skipped).
    @Test(arguments: [3, 1])
    func darkFieldUsesBrightness(channels: Int) throws {
        let blobs = [(y: 80, x: 100, r: 40), (y: 200, x: 300, r: 50)]
        let source = FunctionSource(width: 400, height: 300, channels: channels) { y, x in
            var rng = SplitMix64(seed: UInt64(y * 400 + x))
            let noise = (0..<channels).map { _ in Float(rng.next() % 7) }
            guard blobs.contains(where: { ($0.y - y) * ($0.y - y) + ($0.x - x) * ($0.x - x) < $0.r * $0.r }) else {
                return noise
            }
            return channels == 3 ? [20, 190, 60] : [170]
        }
        let mask = try TissueMask.detect(source: source, options: .init(maxDimension: 100, dilation: 1))
        #expect(mask.feature == .brightness)
        for blob in blobs {
            #expect(
                mask.containsTissue(PixelRect(y: blob.y - 10, x: blob.x - 10, height: 20, width: 20), minFraction: 1))
        }
        for rect in [PixelRect(y: 0, x: 0, height: 30, width: 30), PixelRect(y: 250, x: 0, height: 50, width: 150)] {
            #expect(!mask.containsTissue(rect), "\(rect)")
        }
        // π(40² + 50²) of 120 000 px: about 11 %, a little more with dilation.
        #expect(mask.tissueFraction > 0.09 && mask.tissueFraction < 0.16, "\(mask.tissueFraction)")
    }

    /// Found by a user audit: gray stored as RGB (R = G = B) has no saturation, so no tissue was found
    /// and nothing was computed; and a fluorescence image mostly covered by tissue has a bright median,
    /// so its mask was inverted. Such images use darkness, or brightness when the border is dark.
    @Test(arguments: [(dark: false, cover: 40), (dark: true, cover: 40), (dark: true, cover: 130)])
    func grayAsRGBAndMostlyTissue(dark: Bool, cover radius: Int) throws {
        let (background, signal): (Float, Float) = dark ? (4, 170) : (235, 120)
        let source = FunctionSource(width: 400, height: 300, channels: 3) { y, x in
            let inside = (y - 150) * (y - 150) + (x - 200) * (x - 200) < radius * radius
            let v = inside ? signal : background + Float((y * 7 + x * 3) % 5)
            return [v, v, v]
        }
        let mask = try TissueMask.detect(source: source, options: .init(maxDimension: 100, dilation: 0))
        #expect(mask.feature == (dark ? .brightness : .darkness))
        #expect(mask.containsTissue(PixelRect(y: 140, x: 190, height: 20, width: 20), minFraction: 1))
        #expect(!mask.containsTissue(PixelRect(y: 0, x: 0, height: 8, width: 8)))
        let expected = Double.pi * Double(radius * radius) / 120_000
        #expect(abs(mask.tissueFraction - expected) < 0.03, "\(mask.tissueFraction) vs \(expected)")
    }

    /// Found by the slide benchmark: with tissue on 1 % of a slide, most cells have no colour; the
    /// slide is still judged by saturation (gray stored as RGB has none anywhere).
    @Test func sparseStainedTissueIsColour() throws {
        let source = FunctionSource(width: 1000, height: 1000, channels: 3) { y, x in
            (y - 300) * (y - 300) + (x - 600) * (x - 600) < 56 * 56 ? [150, 60, 140] : [238, 238, 240]
        }
        let mask = try TissueMask.detect(source: source, options: .init(maxDimension: 250, dilation: 0))
        #expect(mask.feature == .saturation)
        #expect(mask.containsTissue(PixelRect(y: 290, x: 590, height: 20, width: 20), minFraction: 1))
        #expect(abs(mask.tissueFraction - Double.pi * 56 * 56 / 1e6) < 0.005, "\(mask.tissueFraction)")
    }

    /// Found by a user audit: pale stroma beside strongly stained tissue (saturation 0.04, with nuclei in it)
    /// fell below Otsu's saturation threshold and was left out of the map. Darker than the glass, it is tissue;
    /// the glass itself, noisy and brighter in the middle (uneven lighting), is not.
    @Test func paleTissueDarkerThanTheGlass() throws {
        let (width, height) = (600, 400)
        let source = FunctionSource(width: width, height: height, channels: 3) { y, x in
            var rng = SplitMix64(seed: UInt64(y * width + x))
            let noise = Float(rng.next() % 5)
            if (y - 200) * (y - 200) + (x - 150) * (x - 150) < 80 * 80 { return [140, 70, 40 + noise] }  // stained
            if y >= 120 && y < 280 && x >= 360 && x < 520 { return [214 + noise, 210, 216] }  // pale
            // Glass: 240 in the middle, 234 at the corners.
            let d = Float((y - 200) * (y - 200) + (x - 300) * (x - 300)) / Float(200 * 200 + 300 * 300)
            let v = 240 - 6 * d + noise
            return [v, v, v + 2]
        }
        let mask = try TissueMask.detect(source: source, options: .init(maxDimension: 150, dilation: 0))
        #expect(mask.feature == .saturation)
        #expect(mask.containsTissue(PixelRect(y: 190, x: 140, height: 20, width: 20), minFraction: 1))
        #expect(mask.containsTissue(PixelRect(y: 124, x: 364, height: 152, width: 152), minFraction: 1))
        #expect(mask.paleCells > 0 && mask.paleBelow != nil)
        for rect in [
            PixelRect(y: 0, x: 0, height: 40, width: 40), PixelRect(y: 180, x: 260, height: 40, width: 60),
            PixelRect(y: 340, x: 540, height: 60, width: 60),
        ] {
            #expect(!mask.containsTissue(rect), "glass \(rect) counted as tissue")
        }
        // Saturation alone (the rule off) leaves the pale region out: the check can fail.
        let saturationOnly = try TissueMask.detect(
            source: source, options: .init(maxDimension: 150, dilation: 0, paleMargin: nil))
        #expect(!saturationOnly.containsTissue(PixelRect(y: 180, x: 420, height: 40, width: 40)))
        #expect(saturationOnly.paleCells == 0)
    }

    /// `--corrupt-tiles skip`: the damaged part of the view counts as tissue (its tiles are tried), the rest
    /// is judged as usual; without it, the damage is an error naming the tile.
    @Test func damagedViewCountsAsTissue() throws {
        let bad = PixelRect(y: 512, x: 256, height: 256, width: 256)
        let source = FunctionSource(
            width: 1024, height: 1024, channels: 3,
            failing: { r in
                r.y < bad.y + bad.height && bad.y < r.y + r.height && r.x < bad.x + bad.width && bad.x < r.x + r.width
            }
        ) { y, x in
            (y - 200) * (y - 200) + (x - 700) * (x - 700) < 100 * 100 ? [150, 60, 140] : [240, 240, 240]
        }
        #expect { try TissueMask.detect(source: source, options: .init(maxDimension: 128)) } throws: {
            ($0 as? SlideError)?.isCorruptData == true
        }
        let mask = try TissueMask.detect(source: source, options: .init(maxDimension: 128, tolerateDamage: true))
        #expect(mask.feature == .saturation)
        // Only the damaged 256² block (the view is re-read in quarters, down to 32 px), as 32² cells of 8 px.
        #expect(mask.damagedCells == 32 * 32)
        #expect(mask.containsTissue(PixelRect(y: 540, x: 280, height: 200, width: 200), minFraction: 1))
        #expect(mask.containsTissue(PixelRect(y: 190, x: 690, height: 20, width: 20), minFraction: 1))
        #expect(!mask.containsTissue(PixelRect(y: 900, x: 900, height: 100, width: 100)))
        #expect(!mask.containsTissue(PixelRect(y: 0, x: 0, height: 200, width: 200)))
    }

    /// Found by a review: 12-bit fluorescence stored in 16 bits sits below 5 % of the full range, so no
    /// tissue was found; the range the brightest cell fits in is used instead.
    @Test func dimSixteenBitFluorescence() throws {
        let source = FunctionSource(width: 400, height: 300, channels: 1, bitDepth: 16) { y, x in
            let inside = (y - 150) * (y - 150) + (x - 200) * (x - 200) < 60 * 60
            return [inside ? 1500 : 20 + Float((y * 7 + x * 3) % 9)]
        }
        let mask = try TissueMask.detect(source: source, options: .init(maxDimension: 100, dilation: 0))
        #expect(mask.feature == .brightness)
        #expect(mask.containsTissue(PixelRect(y: 140, x: 190, height: 20, width: 20), minFraction: 1))
        #expect(!mask.containsTissue(PixelRect(y: 0, x: 0, height: 60, width: 60)))
        #expect(abs(mask.tissueFraction - Double.pi * 3600 / 120_000) < 0.03, "\(mask.tissueFraction)")
    }

    /// Only damage tied to a region of the file is "damaged data" (`--corrupt-tiles skip` leaves such tiles
    /// empty); an empty or vanished file, and bytes that could not be read, are errors of the job.
    @Test func whatCountsAsDamagedData() {
        let tile = SlideError.TileLocation(index: 3, rect: PixelRect(y: 0, x: 0, height: 8, width: 8), isStrip: false)
        #expect(SlideError(.corruptTile, path: "s", level: 0, tile: tile, detail: "").isCorruptData)
        #expect(SlideError(.truncated, path: "s", level: 0, tile: tile, detail: "").isCorruptData)
        #expect(!SlideError(.truncated, path: "s", detail: "the file is empty (0 bytes)").isCorruptData)
        #expect(!SlideError(.readFailed, path: "s", level: 0, tile: tile, detail: "Read error").isCorruptData)
    }

    @Test func otsuSplitsTwoModes() {
        let mask = TissueMask.otsu([Float](repeating: 0.05, count: 100) + [Float](repeating: 0.6, count: 30))
        #expect(mask > 0.05 && mask <= 0.6)
    }
}

/// An in-memory RGB source with one colour everywhere.
final class ConstantSource: RegionSource, @unchecked Sendable {
    let name = "constant"
    let width: Int
    let height: Int
    let channels = 3
    let bitDepth = 8
    let value: [Float]
    init(width: Int, height: Int, value: [Float]) {
        self.width = width
        self.height = height
        self.value = value
    }
    func readRegion(_ rect: PixelRect) throws -> PixelRegion {
        let samples = (0..<(rect.height * rect.width)).flatMap { _ in value }
        return PixelRegion(height: rect.height, width: rect.width, channels: 3, samples: samples)
    }
}

/// An in-memory source whose pixel (y, x) is `pixel(y, x)` (`channels` samples).
final class FunctionSource: RegionSource, @unchecked Sendable {
    let name = "function"
    let width: Int
    let height: Int
    let channels: Int
    let bitDepth: Int
    let pixel: (Int, Int) -> [Float]
    /// Regions for which reading fails as damaged data (a corrupt tile).
    let failing: (PixelRect) -> Bool
    init(
        width: Int, height: Int, channels: Int, bitDepth: Int = 8,
        failing: @escaping (PixelRect) -> Bool = { _ in false }, pixel: @escaping (Int, Int) -> [Float]
    ) {
        self.width = width
        self.height = height
        self.channels = channels
        self.bitDepth = bitDepth
        self.failing = failing
        self.pixel = pixel
    }
    func readRegion(_ rect: PixelRect) throws -> PixelRegion {
        if failing(rect) { throw SlideError(.corruptTile, path: name, detail: "damaged in \(rect)") }
        var samples: [Float] = []
        samples.reserveCapacity(rect.height * rect.width * channels)
        for y in rect.y..<(rect.y + rect.height) {
            for x in rect.x..<(rect.x + rect.width) { samples += pixel(y, x) }
        }
        return PixelRegion(height: rect.height, width: rect.width, channels: channels, samples: samples)
    }
}
