import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

@Suite("PNG errors")
struct ImagePNGErrorTests {
    /// A valid 64×64 RGB PNG of noise (so the image data spans many bytes).
    func noisePNG(in directory: TemporaryDirectory) throws -> (path: String, bytes: [UInt8]) {
        var random = SeededGenerator(seed: 42)
        let samples = (0..<(64 * 64 * 3)).map { _ in UInt8.random(in: 0...255, using: &random) }
        let path = directory.file("noise.png")
        try writePNG(PixelImage(width: 64, height: 64, channels: 3, samples: .uint8(samples)), to: path)
        return (path, Array(try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    func expectError(
        _ kind: ImageIOError.Kind, reading path: String, maxPixels: Int = PNGReader.defaultMaxPixels,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            let image = try PNGReader.read(path: path, maxPixels: maxPixels)
            Issue.record(
                "read a \(image.width)×\(image.height) image, expected \(kind)", sourceLocation: sourceLocation)
        } catch let error as ImageIOError {
            #expect(error.kind == kind, "produced \(error)", sourceLocation: sourceLocation)
            #expect(
                error.path == path && error.description.hasPrefix(path),
                "the message must name the file: \(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
        }
    }

    func write(_ bytes: [UInt8], _ name: String, in directory: TemporaryDirectory) throws -> String {
        let path = directory.file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("a missing file, an empty file and a text file")
    func notPNG() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        expectError(.cannotOpen, reading: directory.file("missing.png"))
        expectError(.notPNG, reading: try write([], "empty.png", in: directory))
        expectError(.notPNG, reading: try write(Array("P3\n1 1\n255\n0 0 0\n".utf8), "text.png", in: directory))
    }

    @Test("a truncated file fails cleanly wherever it is cut", arguments: [4, 20, 40, 100, 2000, -12, -1])
    func truncated(cut: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let (_, bytes) = try noisePNG(in: directory)
        let length = cut > 0 ? cut : bytes.count + cut
        let path = try write(Array(bytes.prefix(length)), "cut.png", in: directory)
        expectError(.truncated, reading: path)
    }

    @Test("a corrupted byte fails its CRC check", arguments: [20, 200, 5000])
    func crc(offset: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        var (_, bytes) = try noisePNG(in: directory)
        bytes[offset] ^= 0x10
        expectError(.crcError, reading: try write(bytes, "crc.png", in: directory))
    }

    @Test("the pixel limit is enforced from the header, before any allocation")
    func pixelLimit() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        // 10^12 RGB pixels claimed, no image data at all: reading past the
        // header would report truncation, allocating would take 3 TB.
        let huge = try write(handMadePNG(width: 1_000_000, height: 1_000_000), "huge.png", in: directory)
        let start = ContinuousClock.now
        expectError(.tooLarge, reading: huge)
        #expect(ContinuousClock.now - start < .seconds(1))
        do {
            _ = try PNGReader.header(path: huge)
        } catch let error as ImageIOError {
            #expect(error.detail.contains("1000000×1000000"), "\(error)")
        }
        // The limit is configurable, and exact.
        let (path, _) = try noisePNG(in: directory)
        expectError(.tooLarge, reading: path, maxPixels: 64 * 64 - 1)
        #expect(try PNGReader.read(path: path, maxPixels: 64 * 64).width == 64)
        // A single absurd dimension is refused as well.
        expectError(
            .tooLarge,
            reading: try write(
                handMadePNG(width: 2_000_000_000, height: 1), "wide.png",
                in: directory), maxPixels: 1_000_000)
    }

    @Test("zero and out-of-range dimensions, invalid bit depths")
    func invalidHeaders() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        expectError(.invalidDimensions, reading: try write(handMadePNG(width: 0, height: 5), "w0.png", in: directory))
        expectError(.invalidDimensions, reading: try write(handMadePNG(width: 5, height: 0), "h0.png", in: directory))
        expectError(
            .invalidDimensions,
            reading: try write(handMadePNG(width: 0x8000_0000, height: 1), "w31.png", in: directory))
        expectError(
            .unsupportedBitDepth,
            reading: try write(handMadePNG(width: 4, height: 4, bitDepth: 3), "bd3.png", in: directory))
        expectError(
            .unsupportedBitDepth,
            reading: try write(
                handMadePNG(width: 4, height: 4, bitDepth: 16, colorType: 3), "p16.png",
                in: directory))
        expectError(
            .invalidHeader,
            reading: try write(handMadePNG(width: 4, height: 4, colorType: 5), "ct5.png", in: directory))
    }
}

extension ImagePNGErrorTests {
    /// Found by a user audit: pixels whose index lies past PLTE decoded as black (libpng's
    /// expansion), so a whole image of them mapped as confident nuclei, exit status 0.
    @Test("palette indices past PLTE are an error naming the first pixel, whole-image and banded")
    func paletteIndexPastPLTE() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        // libpng will not write such a file: by hand, 12 × 9, 10 colours, index 200 from (x 4, y 6) on.
        func write(_ name: String, badIndex: Int) throws -> String {
            let path = directory.file(name)
            let (status, output) = try runCommand([
                "python3", "-c",
                """
                import struct, sys, zlib
                def chunk(kind, data):
                    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
                bad = int(sys.argv[2])
                rows = b''.join(b'\\x00' + bytes(bad if (bad and y == 6 and x >= 4) else (x + y) % 10 for x in range(12)) for y in range(9))
                png = (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 12, 9, 8, 3, 0, 0, 0))
                       + chunk(b'PLTE', bytes(range(0, 240, 8))) + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))
                open(sys.argv[1], 'wb').write(png)
                """, path, "\(badIndex)",
            ])
            try #require(status == 0, "\(output)")
            return path
        }
        let path = try write("short-palette.png", badIndex: 200)
        expectError(.corrupt, reading: path)
        do {
            _ = try PNGReader.read(path: path)
        } catch {
            #expect(
                "\(error)".contains("pixel (x 4, y 6) has palette index 200, past the palette's 10 colours"), "\(error)"
            )
        }
        #expect(throws: ImageIOError.self) { _ = try PNGReader.readBands(path: path, bandBytes: 64) { _ in } }
        // The same file with index 9 at most reads, and its colours are the palette's.
        let fine = try write("palette.png", badIndex: 0)
        let image = try PNGReader.read(path: fine)
        #expect(image.channels == 3 && image.allSamples.prefix(6) == [0, 8, 16, 24, 32, 40])
    }

    /// Hostile-input audit: a header cut to fewer rows than the image data holds mapped those rows without a
    /// word (libpng's warning was dropped). Now the read says so.
    @Test("More image data than the header's rows: read as the header says, with a note; an intact file has none")
    func surplusImageData() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let (path, bytes) = try noisePNG(in: directory)
        #expect(try PNGReader.readNoted(path: path).notes.isEmpty)
        // IHDR's height (bytes 20–23) set to 17, its CRC (bytes 29–32) recomputed.
        var short = bytes
        short[20...23] = [0, 0, 0, 17]
        let crc = Array(short[12..<29]).withUnsafeBytes { CRC32.update(0, $0) }
        short[29...32] = [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
        let shortPath = try write(short, "short.png", in: directory)
        let (image, notes) = try PNGReader.readNoted(path: shortPath)
        #expect(image.height == 17 && image.width == 64)
        #expect(notes.contains { $0.contains("Too much image data") }, "\(notes)")
        // The band reader (uploads, the coordinator's transcode) warns of it too, and not of an intact file.
        for (file, expected) in [(shortPath, true), (path, false)] {
            var warned: [String] = []
            var rows = 0
            try PNGReader.readBands(path: file, bandBytes: 64 * 3 * 5, warn: { warned.append($0) }) {
                rows += $0.count / (64 * 3)
            }
            #expect(rows == (expected ? 17 : 64))
            #expect(warned.contains { $0.contains("Too much image data") } == expected, "\(file): \(warned)")
        }
    }
}
