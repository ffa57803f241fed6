import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage

@Suite("TIFF region source (libtiff)")
struct TIFFRegionSourceTests {
    static let lossless = [
        "rgb8_tiled_none", "rgb8_tiled_lzw", "rgb8_tiled_zlib", "rgb8_tiled_packbits", "rgb8_tiled_zstd",
        "rgb8_tiled_lzma", "rgb8_subifds_big", "rgba8_tiled", "grayalpha8_striped", "rgb16_tiled",
        "gray16_striped", "gray8_striped", "gray8_miniswhite", "rgb8_bigtiff", "rgb8_planar_tiled",
        "rgba16_planar_striped", "rgb8_striped_zlib_pred", "rgb8_tiled_zlib_pred_be", "rgb16_tiled_zlib_pred",
    ]
    static let jpeg = ["jpeg_ycbcr", "jpeg_rgb", "jpeg_tables", "svs"]

    /// Every level, whole and in crops across tiles and edges, equals the written samples exactly.
    @Test(arguments: lossless)
    func losslessLevelsMatchExactly(name: String) throws {
        let fixtures = try Fixtures.get()
        let fixture = try fixtures.good(name)
        let levels = try #require(fixture.levels)
        for (index, level) in levels.enumerated() {
            let source = try TIFFRegionSource(path: fixtures.path(fixture.file), level: index)
            #expect(source.levels.count == levels.count)
            #expect(source.width == level.width && source.height == level.height)
            #expect(source.channels == level.channels && source.bitDepth == level.bits)
            let expected = try fixtures.expected(level)
            for rect in testRects(height: level.height, width: level.width) {
                let region = try source.readRegion(rect)
                #expect(region.height == rect.height && region.width == rect.width)
                let want = crop(expected, width: level.width, channels: level.channels, rect)
                #expect(region.samples == want, "\(name) level \(index) \(rect)")
            }
        }
    }

    /// JPEG tiles (YCbCr, RGB, shared JPEGTables, Aperio-like) agree with tifffile + imagecodecs to 1 level.
    @Test(arguments: jpeg)
    func jpegMatchesIndependentDecoder(name: String) throws {
        let fixtures = try Fixtures.get()
        let fixture = try fixtures.good(name)
        let levels = try #require(fixture.levels)
        for (index, level) in levels.enumerated() {
            let source = try TIFFRegionSource(path: fixtures.path(fixture.file), level: index)
            #expect(source.channels == 3 && source.bitDepth == 8)
            let expected = try fixtures.expected(level)
            for rect in testRects(height: level.height, width: level.width) {
                let region = try source.readRegion(rect)
                let want = crop(expected, width: level.width, channels: 3, rect)
                #expect(maxDifference(region.samples, want) <= Float(fixture.tolerance ?? 0), "\(name) \(rect)")
            }
        }
    }

    /// A 40000 px/cm resolution is 0.25 µm/px; the levels scale it; mpp chooses the nearest level.
    @Test func resolutionAndMPPSelection() throws {
        let fixtures = try Fixtures.get()
        let path = fixtures.path("rgb8_tiled_zlib.tif")
        let source = try TIFFRegionSource(path: path, mpp: 0.55)
        #expect(source.level == 1)
        #expect(source.levels.map(\.mpp) == [0.25, 0.5, 1.0])
        #expect(source.levels.map(\.downsample) == [1, 2, 4])
        #expect(source.levels[0].tileWidth == 48 && source.levels[0].tileHeight == 64)
        let far = slideError { _ = try TIFFRegionSource(path: path, mpp: 2.0) }
        #expect(far?.kind == .noLevelNearMPP(2.0))
        #expect(far?.description.contains("0.25 µm/px") == true && far?.description.contains(path) == true)
        let none = slideError { _ = try TIFFRegionSource(path: fixtures.path("rgb8_bigtiff.tif"), mpp: 0.5) }
        #expect(none?.kind == .noLevelNearMPP(0.5))
        #expect(none?.detail.contains("declares no resolution") == true)
    }

    /// Many threads reading overlapping regions through a tiny cache get the same pixels as one thread.
    @Test(arguments: ["jpeg_ycbcr", "rgb8_tiled_zlib", "gray8_striped"])
    func concurrentReadsAgree(name: String) throws {
        let fixtures = try Fixtures.get()
        let fixture = try fixtures.good(name)
        let level = try #require(fixture.levels?.first)
        let source = try TIFFRegionSource(path: fixtures.path(fixture.file), cacheBytes: 40_000, maxHandles: 3)
        let rects = testRects(height: level.height, width: level.width, seed: 99)
        let reference = try rects.map { try source.readRegion($0).samples }
        let results = ResultBox(count: rects.count * 4)
        DispatchQueue.concurrentPerform(iterations: rects.count * 4) { i in
            results.set(i, (try? source.readRegion(rects[i % rects.count]).samples) ?? [])
        }
        for i in 0..<(rects.count * 4) { #expect(results.get(i) == reference[i % rects.count]) }
        #expect(source.cachedBytes <= 40_000)
    }

    @Test func regionOutsideTheImageIsRefused() throws {
        let fixtures = try Fixtures.get()
        let source = try TIFFRegionSource(path: fixtures.path("rgb8_tiled_zlib.tif"))
        for rect in [PixelRect(y: -1, x: 0, height: 2, width: 2), PixelRect(y: 0, x: 290, height: 2, width: 11)] {
            let error = slideError { _ = try source.readRegion(rect) }
            #expect(error?.kind == .invalidArgument)
        }
        #expect(try source.readRegion(PixelRect(y: 5, x: 5, height: 0, width: 3)).samples.isEmpty)
    }
}

/// Thread-safe slots for results written from concurrentPerform.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [[Float]]
    init(count: Int) { values = Array(repeating: [], count: count) }
    func set(_ index: Int, _ value: [Float]) { lock.withLock { values[index] = value } }
    func get(_ index: Int) -> [Float] { lock.withLock { values[index] } }
}
