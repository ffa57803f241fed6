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
