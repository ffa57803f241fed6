import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// Memory audit 50 F4: the coordinator decoded a whole PNG for its `--tissue` view (818 MiB for a 16 000² RGB
/// PNG, outside `--max-preparing-mib`). The view is now summed a band of rows at a time.
@Suite("Tissue detection of a PNG, band by band")
struct TissueMaskPNGTests {
    /// Every colour type and bit depth (Adam7 too): the cells' means from bands of a few rows, which split cells,
    /// equal those of the decoded image.
    @Test("band-by-band cell means equal the decoded image's", arguments: PNGCase.all)
    func sameMeans(_ pngCase: PNGCase) throws {
        var pngCase = pngCase
        pngCase.width = 41
        pngCase.height = 37
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("view.png")
        try pngCase.make().0.write(to: path)
        let header = try PNGReader.header(path: path)
        let rowBytes = header.width * header.channels * header.bitDepth / 8
        let decoded = try CellGrid(source: PNGReader.read(path: path), maxDimension: 8)
        for rows in [1, 3, 37] {
            let banded = try CellGrid(
                png: path, header: header, maxPixels: PNGReader.defaultMaxPixels, maxDimension: 8,
                bandBytes: rows * rowBytes)
            #expect(banded.cell == 6 && banded.width == 7 && banded.height == 7)
            #expect(banded.means == decoded.means, "bands of \(rows) rows")
        }
    }

    /// A stained blob on glass, 8- and 16-bit: the same mask as from the decoded image, the blob found.
    @Test(arguments: [8, 16])
    func sameMaskAsDecoded(bitDepth: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let (width, height) = (300, 200)
        let scale = bitDepth == 16 ? 257 : 1
        var samples: [Int] = []
        for y in 0..<height {
            for x in 0..<width {
                let inside = (y - 100) * (y - 100) + (x - 120) * (x - 120) < 50 * 50
                let noise = (x * 7 + y * 13) % 5
                samples += inside ? [150 + noise, 60 + noise, 170] : [240 - noise, 238, 241]
            }
        }
        let image = PixelImage(
            width: width, height: height, channels: 3,
            samples: bitDepth == 16
                ? .uint16(samples.map { UInt16($0 * scale) }) : .uint8(samples.map { UInt8($0) }))
        let path = directory.file("blob.png")
        try writePNG(image, to: path)
        let options = TissueMask.Options(maxDimension: 64)
        let banded = try TissueMask.detect(png: path, options: options)
        #expect(banded == (try TissueMask.detect(source: PNGReader.read(path: path), options: options)))
        #expect(banded.feature == .saturation && banded.coverWidth == width && banded.coverHeight == height)
        #expect(banded.containsTissue(PixelRect(y: 90, x: 110, height: 20, width: 20), minFraction: 1))
        #expect(!banded.containsTissue(PixelRect(y: 0, x: 220, height: 60, width: 80)))
    }

    /// Progress is asked before each band, and false stops the view.
    @Test func stops() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("gray.png")
        try writePNG(
            PixelImage(width: 50, height: 40, channels: 1, samples: .uint8(.init(repeating: 200, count: 2000))),
            to: path)
        let header = try PNGReader.header(path: path)
        var seen: [Double] = []
        #expect(throws: CancellationError.self) {
            _ = try CellGrid(
                png: path, header: header, maxPixels: PNGReader.defaultMaxPixels, maxDimension: 10,
                bandBytes: 10 * 50
            ) { fraction in
                seen.append(fraction)
                return seen.count < 3
            }
        }
        #expect(seen == [0, 0.25, 0.5])
    }

    static let probeVariable = "TESSERA_TISSUE_PNG_MEMORY_PROBE"

    /// The coordinator's view of a 7000² RGB PNG (140 MiB of samples) holds a band (32 MiB), not the image.
    @Test("the --tissue view of a PNG holds a band of rows, not the decoded image")
    func memory() throws {
        if let resultPath = ProcessInfo.processInfo.environment[Self.probeVariable] {
            let directory = try TemporaryDirectory()
            defer { directory.cleanup() }
            let side = 7000
            let path = directory.file("big.png")
            do {
                var samples = [UInt8](repeating: 235, count: side * side * 3)
                for y in 1400..<4200 {
                    for x in 2100..<4900 { samples[(y * side + x) * 3 + 1] = 90 }
                }
                try writePNG(
                    PixelImage(width: side, height: side, channels: 3, samples: .uint8(samples)), to: path,
                    compressionLevel: 1)
            }
            let header = try ImageInput.header(path: path)
            _ = try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
            let before = ImageMemoryTests.residentMemory().current
            let mask = try ImageInput.tissueMask(path: path, header: header)
            let extra = ImageMemoryTests.residentMemory().peak - before
            try "\(extra) \(mask.tissueFraction)".write(toFile: resultPath, atomically: true, encoding: .utf8)
            return
        }
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let resultPath = directory.file("result.txt")
        let child = try runProbeChild(
            suite: "TissueMaskPNGTests/memory", variable: Self.probeVariable, value: resultPath,
            resultPath: resultPath)
        let fields = child.result?.split(separator: " ").compactMap { Double($0) } ?? []
        guard fields.count == 2 else {
            Issue.record("the probe child wrote no result (status \(child.status)): \(child.output.suffix(2000))")
            return
        }
        // A 32 MiB band, the cells' sums and counts (1000² cells here: 32 MiB) and some slack; the decoded image
        // alone is 140 MiB.
        #expect(Int(fields[0]) < 100 << 20, "the view took \(Int(fields[0]) >> 20) MiB")
        // The green-less square is 16 % of the image; dilation adds a rim.
        #expect(fields[1] > 0.15 && fields[1] < 0.18, "tissue fraction \(fields[1])")
    }
}

/// Memory audit 50 F5: `run --outputs overlay` and `export --outputs overlay` decoded the whole PNG again for
/// the overlay (975 MiB for a 16 000² PNG); it is now decoded as the overlay goes down the image.
@Suite("PNG rows read in order")
struct PNGRowSourceTests {
    @Test("regions read in order, skipped, and read again give the decoded image's samples", arguments: [8, 16])
    func sameSamples(bitDepth: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("rows.png")
        var pngCase = PNGCase(colorType: 2, bitDepth: bitDepth)
        pngCase.width = 23
        pngCase.height = 29
        try pngCase.make().0.write(to: path)
        let decoded = try PNGReader.read(path: path)
        let rows = try #require(try PNGRowSource(path: path))
        #expect(rows.width == 23 && rows.height == 29 && rows.channels == 3 && rows.bitDepth == bitDepth)
        let rects = [
            PixelRect(y: 0, x: 0, height: 5, width: 23), PixelRect(y: 5, x: 3, height: 4, width: 7),
            PixelRect(y: 17, x: 0, height: 1, width: 23), PixelRect(y: 2, x: 0, height: 10, width: 23),
            PixelRect(y: 12, x: 22, height: 17, width: 1), PixelRect(y: 28, x: 0, height: 1, width: 23),
            PixelRect(y: 0, x: 0, height: 29, width: 23),
        ]
        for rect in rects { #expect(try rows.readRegion(rect) == decoded.readRegion(rect), "\(rect)") }
    }

    /// An interlaced PNG has no rows before its last pass: read in order (an overlay) it is decoded into a file
    /// of TMPDIR first, not held whole as it was; with neither a folder nor rows in order it is in memory.
    @Test func interlacedIsDecodedIntoAFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("adam7.png")
        let (raw, expected, _) = PNGCase(colorType: 2, bitDepth: 8, interlaced: true).make()
        try raw.write(to: path)
        #expect(try PNGRowSource(path: path) == nil)
        let opened = try ImageInput.open(path: path, rowsInOrder: true)
        let file = try #require(opened.source as? RawPixelFile)
        #expect(try file.read(PixelRect(y: 0, x: 0, height: 11, width: 13)).allSamples == expected)
        #expect(try ImageInput.open(path: directory.file("adam7.png"), rowsInOrder: false).source is NamedImage)
    }

    /// A PNG damaged half-way: the band that reaches the damage fails naming the file, after the bands above it
    /// were read.
    @Test func damaged() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("damaged.png")
        try writeDamagedPNG(to: path, width: 300, height: 200, seed: 5)
        let rows = try #require(try PNGRowSource(path: path))
        _ = try rows.readRegion(PixelRect(y: 0, x: 0, height: 10, width: 300))
        let error = try #require(throws: ImageIOError.self) {
            _ = try rows.readRegion(PixelRect(y: 10, x: 0, height: 190, width: 300))
        }
        #expect("\(error)".contains(path))
    }
}

/// Review of 4c75201: `readBands` decodes an interlaced PNG whole, without the room check `read` has, and the
/// coordinator's `--tissue` view and the worker's decode now use it: a 3 MB interlaced 32 000² PNG aborted both.
@Suite("An interlaced PNG decoded whole needs the room")
struct InterlacedRoomTests {
    static let probeVariable = "TESSERA_INTERLACED_ROOM_PROBE"

    @Test("readBands of an interlaced PNG larger than the process may use is refused, not a crash")
    func refused() throws {
        if let spec = ProcessInfo.processInfo.environment[Self.probeVariable] {
            // Child: "<png>:<result>", under a 2 GiB address-space limit.
            let parts = spec.split(separator: ":").map(String.init)
            var limit = rlimit(rlim_cur: 2 << 30, rlim_max: 2 << 30)
            setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit)
            var outcome = "read"
            do {
                // (A folder that cannot take it: held in memory, as before a file was tried.)
                try PNGReader.readBands(path: parts[0], maxPixels: Int.max, temporaryFolder: "/nonexistent") { _ in }
            } catch let error as ImageIOError {
                outcome = "\(error.kind): \(error)"
            }
            try outcome.write(toFile: parts[1], atomically: true, encoding: .utf8)
            return
        }
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let png = directory.file("interlaced.png"), result = directory.file("result.txt")
        try Self.writeInterlacedHeader(to: png, side: 32_000)
        let child = try runProbeChild(
            suite: "InterlacedRoomTests/refused", variable: Self.probeVariable, value: "\(png):\(result)",
            resultPath: result)
        let outcome = try #require(child.result, "no result (status \(child.status)): \(child.output.suffix(2000))")
        #expect(outcome.hasPrefix("outOfMemory") && outcome.contains("interlaced"), "\(outcome)")
    }

    /// A PNG whose header declares an interlaced `side`² RGB image, with image data long enough to pass the
    /// reader's size check (deflate's best ratio) but never decoded.
    static func writeInterlacedHeader(to path: String, side: Int) throws {
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            let crc = body.withUnsafeBytes { CRC32.update(0, $0) }
            return withUnsafeBytes(of: UInt32(data.count).bigEndian, Array.init) + body
                + withUnsafeBytes(of: crc.bigEndian, Array.init)
        }
        let size = withUnsafeBytes(of: UInt32(side).bigEndian, Array.init)
        let header = size + size + [8, 2, 0, 0, 1]
        let data = [UInt8](repeating: 0, count: side * side * 3 / 1000)
        let bytes = [137, 80, 78, 71, 13, 10, 26, 10] + chunk("IHDR", header) + chunk("IDAT", data) + chunk("IEND", [])
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}
