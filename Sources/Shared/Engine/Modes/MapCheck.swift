import Foundation
import TesseraCore
import TesseraModel
import TesseraPlan

/// `--check`: a computed map against the exact patch classifier at sampled pixels.
/// For a net that pads, `dense`/`shift`/`fast` give the fully convolutional
/// approximation; this says what that costs, pixel by pixel, in probability and in
/// decisions. The map's values are taken from its tiles as they are computed, so
/// checking needs no second pass over the map.
package struct MapCheck: Sendable, Codable, Equatable {
    /// The sampled pixels, `[y, x]`, in sampling order.
    package var pixels: [[Int]]
    /// Per pixel, the map's class probabilities and the classifier's.
    package var map: [[Float]]
    package var classifier: [[Float]]

    package var count: Int { pixels.count }

    /// Largest |map − classifier| over every sampled pixel and class.
    package var maxAbsDeviation: Float {
        zip(map, classifier).map { zip($0, $1).map { abs($0 - $1) }.max() ?? 0 }.max() ?? 0
    }

    /// Mean |map − classifier| over every sampled pixel and class.
    package var meanAbsDeviation: Double {
        let all = zip(map, classifier).flatMap { zip($0, $1).map { Double(abs($0 - $1)) } }
        return all.isEmpty ? 0 : all.reduce(0, +) / Double(all.count)
    }

    /// Fraction of sampled pixels whose most likely class is the same in both (a one-class
    /// map: whose value is on the same side of 0.5, the labels PNG's decision).
    package var argmaxAgreement: Double {
        func argmax(_ v: [Float]) -> Int {
            if v.count == 1 { return v[0] > 0.5 ? 1 : 0 }
            return v.indices.max { v[$0] < v[$1] || (v[$0] == v[$1] && $0 > $1) } ?? 0
        }
        let same = zip(map, classifier).filter { argmax($0) == argmax($1) }.count
        return count == 0 ? 1 : Double(same) / Double(count)
    }

    /// One line for the log.
    package var summary: String {
        String(
            format: "%d pixels: max |Δp| %.3g, mean |Δp| %.3g, same decision at %.1f%%", count,
            maxAbsDeviation, meanAbsDeviation, argmaxAgreement * 100)
    }

    /// The JSON report written next to the outputs.
    package func json() throws -> Data {
        struct Report: Encodable {
            let pixels: Int, maxAbsDeviation: Float, meanAbsDeviation: Double, argmaxAgreement: Double
            let samples: MapCheck
        }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase  // as `status --json` and `inspect --json`
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(
            Report(
                pixels: count, maxAbsDeviation: maxAbsDeviation,
                meanAbsDeviation: meanAbsDeviation, argmaxAgreement: argmaxAgreement,
                samples: self))
    }
}

/// Collects a map's values at sampled pixels while its tiles stream past, then runs
/// the exact classifier there.
package struct MapChecker {
    package let pixels: [(y: Int, x: Int)]
    private var values: [Int: [Float]] = [:]

    /// `count` pixels of an `image`-sized map drawn with a fixed seed, among those
    /// `keep` accepts (the tissue, when tiles are skipped); fewer if few qualify.
    package init(count: Int, image: Size2, seed: UInt64 = 0x7E55_E7A0, keep: ((Int, Int) -> Bool)? = nil) {
        var rng = SplitMix64(seed: seed)
        var chosen: [(y: Int, x: Int)] = []
        var seen = Set<Int>()
        var tries = 0
        while chosen.count < min(count, image.h * image.w) && tries < 200 * max(count, 1) {
            tries += 1
            let y = Int(rng.next() % UInt64(image.h)), x = Int(rng.next() % UInt64(image.w))
            guard keep?(y, x) ?? true, seen.insert(y * image.w + x).inserted else { continue }
            chosen.append((y, x))
        }
        pixels = chosen
    }

    /// Takes the sampled pixels' values out of a finished tile.
    package mutating func record(_ tile: MapTile) {
        let r = tile.rect
        for (i, p) in pixels.enumerated() where p.y >= r.y && p.y < r.y + r.height && p.x >= r.x && p.x < r.x + r.width
        {
            values[i] = (0..<tile.values.classes).map { tile.values[$0, p.y - r.y, p.x - r.x] }
        }
    }

    /// The exact classifier (`naive`) at every sampled pixel whose tile was computed, against the map.
    package func finish(_ mapper: LocalMapper, image: any RegionSource) throws -> MapCheck {
        let size = Size2(image.height, image.width)
        let geometry = mapper.engine.tasks
        let mapping = try ChannelMapping.resolve(
            imageChannels: image.channels,
            netChannels: mapper.engine.fcn.inputChannels,
            order: mapper.preprocessing.channelOrder)
        var check = MapCheck(pixels: [], map: [], classifier: [])
        for (i, p) in pixels.enumerated() {
            guard let mapped = values[i] else { continue }
            let task = TileTask(mode: .naive, rect: PixelRect(y: p.y, x: p.x, height: 1, width: 1), image: size)
            let region = try PixelRegion(
                source: image, paddedRect: geometry.inputRect(task),
                halfPatch: geometry.halfPatch)
            let out = try mapper.engine.run(
                task,
                input: region.tensor(
                    mapping: mapping,
                    preprocessing: mapper.preprocessing),
                threads: mapper.threads)
            check.pixels.append([p.y, p.x])
            check.map.append(mapped)
            check.classifier.append(out.values)
        }
        return check
    }
}
