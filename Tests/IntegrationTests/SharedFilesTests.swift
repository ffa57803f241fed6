import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport
@testable import Worker

/// Memory audit 50 F5: a worker decoded each PNG of its shared-storage tasks into memory (732 MiB for a 16 000²
/// RGB PNG). It now decodes it band by band into a raw file in its temporary folder, unlinked once open.
@Suite("A worker's PNG inputs, decoded to its temporary folder")
struct SharedFilesTests {
    @Test("the regions of a PNG decoded to disk equal the decoded image's; no file is left behind", arguments: [8, 16])
    func decodedToDisk(bitDepth: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("input.png")
        var random = SeededGenerator(seed: UInt64(bitDepth))
        let count = 207 * 301 * 3
        try writePNG(
            PixelImage(
                width: 301, height: 207, channels: 3,
                samples: bitDepth == 16
                    ? .uint16((0..<count).map { _ in UInt16.random(in: 0...65535, using: &random) })
                    : .uint8((0..<count).map { _ in UInt8.random(in: 0...255, using: &random) })),
            to: path)
        let scratch = directory.file("tmp")
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: false)
        var files = SharedFiles(roots: [directory.path], temporaryFolder: scratch)
        var warnings: [String] = []
        let source = try files.image(path, image: 1, level: 0) { warnings.append($0) }
        #expect(source is RawPixelFile && warnings.isEmpty, "\(type(of: source)): \(warnings)")
        #expect(source.name == path && source.bitDepth == bitDepth && source.channels == 3)
        // A file without a name: nothing in the folder, the open file in it marked deleted (O_TMPFILE's too).
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).isEmpty)
        let links = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")
        }
        #expect(links.contains { $0.hasPrefix(scratch + "/") && $0.hasSuffix("(deleted)") }, "\(links)")
        let decoded = try PNGReader.read(path: path)
        for rect in [
            PixelRect(y: 0, x: 0, height: 207, width: 301), PixelRect(y: 100, x: 37, height: 50, width: 1),
            PixelRect(y: 206, x: 300, height: 1, width: 1),
        ] {
            #expect(try source.readRegion(rect) == decoded.readRegion(rect), "\(rect)")
        }
        // Cached: the same file.
        #expect(try files.image(path, image: 1, level: 0) as AnyObject === source as AnyObject)
    }

    /// Review 29b L5: the cache was keyed by path, so a PNG written again at the same path was served stale.
    @Test func replacedFileIsReadAgain() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("input.png")
        func write(_ value: UInt8) throws {
            try writePNG(
                PixelImage(width: 8, height: 6, channels: 1, samples: .uint8(.init(repeating: value, count: 48))),
                to: path)
        }
        try write(10)
        var files = SharedFiles(roots: [directory.path], temporaryFolder: directory.path)
        let rect = PixelRect(y: 0, x: 0, height: 1, width: 1)
        #expect(try files.image(path, image: 1, level: 0).readRegion(rect).samples == [10])
        try write(200)  // a new file (AtomicFile: written aside, renamed over the old one)
        #expect(try files.image(path, image: 1, level: 0).readRegion(rect).samples == [200])
    }

    /// A temporary folder that cannot take the image (missing, full): the PNG is decoded in memory, with a word.
    @Test func temporaryFolderUnusable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("input.png")
        try writePNG(
            PixelImage(width: 13, height: 11, channels: 1, samples: .uint8((0..<143).map { UInt8($0) })), to: path)
        var files = SharedFiles(roots: [directory.path], temporaryFolder: directory.file("missing"))
        var warnings: [String] = []
        let source = try files.image(path, image: 1, level: 0) { warnings.append($0) }
        #expect(!(source is RawPixelFile))
        #expect(
            try source.readRegion(PixelRect(y: 0, x: 0, height: 11, width: 13))
                == PNGReader.read(path: path).readRegion(PixelRect(y: 0, x: 0, height: 11, width: 13)))
        #expect(
            warnings.count == 1 && warnings[0].contains("held in memory") && warnings[0].contains(path), "\(warnings)")
    }

    /// A PNG that is not one (damaged) is the task's error, naming the PNG, not a temporary-folder problem.
    @Test func damagedPNGNamesIt() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("cut.png")
        try writeDamagedPNG(to: path, width: 120, height: 90, seed: 9)
        var files = SharedFiles(roots: [directory.path], temporaryFolder: directory.path)
        var warnings: [String] = []
        let error = try #require(throws: ImageIOError.self) {
            _ = try files.image(path, image: 1, level: 0) { warnings.append($0) }
        }
        #expect(error.path == path && warnings.isEmpty, "\(error) \(warnings)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["cut.png"])
    }
}
