import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// The test images, written once per test run by make_fixtures.py (python3 + tifffile + tiffcp) into a fresh
/// temporary directory, with the samples each level must read back as.
struct Fixtures: Sendable {
    struct Level: Decodable, Sendable {
        let raw: String
        let height: Int
        let width: Int
        let channels: Int
        let bits: Int
    }

    struct Good: Decodable, Sendable {
        let file: String
        let tolerance: Int?
        let levels: [Level]?
        let mpp: [Double]?
        let blobs: [[Int]]?
    }

    struct Bad: Decodable, Sendable {
        let file: String
        let kind: String
        let tile: Int?
        let at: String?
    }

    struct Manifest: Decodable, Sendable {
        let good: [String: Good]
        let bad: [String: Bad]
    }

    let directory: String
    let manifest: Manifest

    static let shared: Result<Fixtures, FixtureError> = Result { try Fixtures() }.mapError { FixtureError("\($0)") }

    static func get() throws -> Fixtures { try shared.get() }

    private init() throws {
        let prefix = "slide-src-tests-"
        ProcessScratch.removeStale(prefix: prefix)
        directory = NSTemporaryDirectory() + prefix + "\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.removeItem(atPath: directory)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("make_fixtures.py")
        try run(["python3", script.path, directory])
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/manifest.json"))
        manifest = try JSONDecoder().decode(Manifest.self, from: data)
    }

    func path(_ file: String) -> String { directory + "/" + file }

    func good(_ name: String) throws -> Good {
        guard let entry = manifest.good[name] else { throw FixtureError("no fixture \(name)") }
        return entry
    }

    /// The expected samples of one level, as Float.
    func expected(_ level: Level) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(level.raw)))
        if level.bits == 8 { return data.map { Float($0) } }
        return data.withUnsafeBytes { raw in raw.bindMemory(to: UInt16.self).map { Float($0) } }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command, failing with its output when it fails.
func run(_ arguments: [String]) throws {
    let (status, output) = try runCommand(arguments)
    guard status == 0 else {
        throw FixtureError("\(arguments.joined(separator: " ")) failed: \(output)")
    }
}

/// The crop `rect` of an HWC image of width `width`.
func crop(_ samples: [Float], width: Int, channels: Int, _ rect: PixelRect) -> [Float] {
    var result: [Float] = []
    result.reserveCapacity(rect.height * rect.width * channels)
    for y in rect.y..<(rect.y + rect.height) {
        let start = (y * width + rect.x) * channels
        result.append(contentsOf: samples[start..<(start + rect.width * channels)])
    }
    return result
}

/// The largest absolute difference between two equally long sample arrays (infinity if the lengths differ).
func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    var worst: Float = 0
    for i in a.indices { worst = max(worst, abs(a[i] - b[i])) }
    return worst
}

/// Rectangles that cross tile boundaries and touch the image edges, plus seeded random ones.
func testRects(height: Int, width: Int, seed: UInt64 = 7) -> [PixelRect] {
    var rects = [
        PixelRect(y: 0, x: 0, height: height, width: width),
        PixelRect(y: 0, x: 0, height: 1, width: 1),
        PixelRect(y: height - 1, x: width - 1, height: 1, width: 1),
        PixelRect(y: height / 3, x: width / 3, height: height - height / 3, width: width - width / 3),
        PixelRect(y: 0, x: width / 2, height: height, width: 1),
        PixelRect(y: height / 2, x: 0, height: 1, width: width),
    ]
    var random = SplitMix64(seed: seed)
    for _ in 0..<12 {
        let h = 1 + Int(random.next() % UInt64(height)), w = 1 + Int(random.next() % UInt64(width))
        let y = Int(random.next() % UInt64(height - h + 1)), x = Int(random.next() % UInt64(width - w + 1))
        rects.append(PixelRect(y: y, x: x, height: h, width: w))
    }
    return rects
}

/// Runs `body`, which must throw a `SlideError`; returns it (or records an issue and returns nil).
func slideError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> SlideError? {
    do {
        try body()
        Issue.record("expected a SlideError, got success", sourceLocation: sourceLocation)
    } catch let error as SlideError {
        return error
    } catch {
        Issue.record("expected a SlideError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
