import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage

/// A deflate tile or strip is read only when its whole stream inflates with a correct Adler-32: libtiff stops
/// once the chunk is full, so damage it never reached, a wrong checksum, or a stream that overflows the chunk
/// (with libdeflate) used to be read as a good chunk of wrong pixels (whole-slide audit 35 F1).
@Suite("Deflate chunks: damage is an error, never wrong pixels")
struct DeflateIntegrityTests {
    /// No predictor (checked from the decoded bytes), the 8-bit horizontal predictor (redone, then checked),
    /// big-endian 8-bit, and 16-bit with the predictor (inflated again): single-byte flips across chunk 1's
    /// stream either fail as a corrupt tile or read the original pixels exactly; a flip in the stored Adler-32
    /// always fails.
    @Test(arguments: ["rgb8_tiled_zlib", "rgb8_striped_zlib_pred", "rgb8_tiled_zlib_pred_be", "rgb16_tiled_zlib_pred"])
    func flippedBytesNeverGiveWrongPixels(name: String) throws {
        let fixtures = try Fixtures.get()
        let fixture = try fixtures.good(name)
        let level = try #require(fixture.levels?.first)
        let expected = try fixtures.expected(level)
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(fixture.file))))
        let handle = try TIFFHandle(path: fixtures.path(fixture.file))
        let info = try handle.select(.directory(0), level: 0)
        let (offset, count) = try #require(handle.chunkLocation(1))
        // Chunk 1: the second tile of the first row, or the second strip.
        let rect =
            info.tiled != 0
            ? PixelRect(
                y: 0, x: Int(info.tile_width), height: min(Int(info.tile_height), level.height),
                width: min(Int(info.tile_width), level.width - Int(info.tile_width)))
            : PixelRect(
                y: Int(info.tile_height), x: 0,
                height: min(Int(info.tile_height), level.height - Int(info.tile_height)),
                width: level.width)
        let want = crop(expected, width: level.width, channels: level.channels, rect)
        let path = fixtures.path("flipped-\(fixture.file)")
        defer { unlink(path) }
        var outcomes = (failed: 0, same: 0)
        let stride = max(1, Int(count) / 60)
        let positions =
            Array(Swift.stride(from: 2, to: Int(count) - 4, by: stride)) + Array((Int(count) - 4)..<Int(count))
        for position in positions {
            var bytes = original
            bytes[Int(offset) + position] ^= 0x5A
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let source = try TIFFRegionSource(path: path)
            do {
                let region = try source.readRegion(rect)
                #expect(region.samples == want, "\(name): a flip at byte \(position) of \(count) read wrong pixels")
                #expect(position < Int(count) - 4, "\(name): a flip in the stored Adler-32 was not noticed")
                outcomes.same += 1
            } catch let error as SlideError {
                #expect(error.kind == .corruptTile && error.tile?.index == 1, "\(error)")
                outcomes.failed += 1
            }
        }
        // Most flips inflate to other bytes: they must all have been refused.
        #expect(outcomes.failed >= positions.count / 2, "\(name): \(outcomes)")
    }
}
