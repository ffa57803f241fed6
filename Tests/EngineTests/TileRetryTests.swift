import Foundation
import Synchronization
import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// `LocalMapper.mapTiles(retryAfter:)`: a tile whose read fails is computed again when
/// the caller asks (a failed read on storage that may recover), and the map is the same.
@Suite("A tile whose read fails is tried again when asked")
struct TileRetryTests {
    struct ReadFailure: Error {}

    /// `image`, except that reads whose number (from 1) is in `failing` throw.
    final class FlakySource: RegionSource, @unchecked Sendable {
        let image: ArrayImage
        let failing: Set<Int>
        let reads = Mutex(0)
        init(_ image: ArrayImage, failing: Set<Int>) { (self.image, self.failing) = (image, failing) }
        var name: String { "flaky" }
        var width: Int { image.width }
        var height: Int { image.height }
        var channels: Int { image.channels }
        var bitDepth: Int { 8 }
        func readRegion(_ rect: PixelRect) throws -> PixelRegion {
            let n = reads.withLock {
                $0 += 1; return $0
            }
            if failing.contains(n) { throw ReadFailure() }
            return try image.readRegion(rect)
        }
    }

    static let preprocessing = ModeAgreementTests.preprocessing

    @Test("Failed reads retried: the same map; asked-for waits and failure counts as given")
    func retriedTilesGiveTheSameMap() throws {
        let mapper = LocalMapper(
            engine: try MapEngine(classifier: TestNets.seedLike), preprocessing: Self.preprocessing, threads: 2)
        let image = ArrayImage.random(height: 23, width: 37, seed: 7)
        let tile = 2 * mapper.engine.tasks.stride.h
        var reference = ProbabilityMap(classes: mapper.engine.classes, height: 23, width: 37)
        try mapper.mapTiles(image, mode: .dense, tile: tile) { reference.place($0) }

        // Reads 1, 2 (the first tile, twice) and 5 fail; the tile is asked again each time.
        let flaky = FlakySource(image, failing: [1, 2, 5])
        var asked: [Int] = []
        var map = ProbabilityMap(classes: mapper.engine.classes, height: 23, width: 37)
        var lastProgress = (0, 0)
        let counts = try mapper.mapTiles(
            flaky, mode: .dense, tile: tile,
            retryAfter: { error, failures in
                #expect(error is ReadFailure)
                asked.append(failures)
                return failures < 3 ? 0.01 : nil
            },
            progress: { lastProgress = ($0, $1) }
        ) { map.place($0) }
        #expect(asked == [1, 2, 1], "failures counted per tile: \(asked)")
        #expect(map.data == reference.data, "a retried tile gives the same values")
        #expect(counts.computed > 2 && lastProgress.0 == lastProgress.1, "progress ends complete: \(lastProgress)")

        // Without a retry, or once the retries are used up, the read's error ends the map.
        #expect(throws: ReadFailure.self) {
            try mapper.mapTiles(FlakySource(image, failing: [1]), mode: .dense, tile: tile) { _ in }
        }
        #expect(throws: ReadFailure.self) {
            try mapper.mapTiles(
                FlakySource(image, failing: [1, 2, 3]), mode: .dense, tile: tile,
                retryAfter: { _, failures in failures < 3 ? 0 : nil }
            ) { _ in }
        }
    }
}
