import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraImage
@testable import TestSupport

@Suite("Output writers")
struct ImageOutputWriterTests {
    /// A 3-class map over 7×5 with a known argmax pattern, including NaN and out-of-range values.
    func sampleMap(classes: Int = 3, height: Int = 5, width: Int = 7) -> ProbabilityMap {
        var map = ProbabilityMap(classes: classes, height: height, width: width)
        for y in 0..<height {
            for x in 0..<width {
                let winner = (x + y) % classes
                for c in 0..<classes { map[c, y, x] = c == winner ? 0.7 : 0.3 / Float(classes - 1) }
            }
        }
        map[0, 0, 0] = .nan
        map[1, 0, 1] = 1.5
        map[1, 0, 2] = -0.25
        return map
    }

    @Test("probability PNGs: 8-bit and 16-bit, p × 255 or p × 65535, clamped, NaN as 0", arguments: [8, 16])
    func probability(bitDepth: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let map = sampleMap()
        let options = OutputOptions(directory: directory.path, stem: "img", kinds: [.prob], bitDepth: bitDepth)
        let written = try writeOutputs(map: map, image: nil, options: options)
        #expect(written == (0..<3).map { directory.file("img.prob-\($0).png") })
        let scale: Float = bitDepth == 8 ? 255 : 65535
        for c in 0..<3 {
            let image = try PNGReader.read(path: options.probabilityPath(forClass: c))
            #expect(image.channels == 1 && image.bitDepth == bitDepth && image.width == 7 && image.height == 5)
            for y in 0..<5 {
                for x in 0..<7 {
                    let p = map[c, y, x]
                    let expected = p.isNaN ? 0 : (min(max(p, 0), 1) * scale).rounded()
                    #expect(image.value(y: y, x: x, channel: 0) == expected, "class \(c) at (\(y), \(x))")
                }
            }
        }
    }

    /// Hostile-input audit 27: `run --tile 32768` (the largest allowed) on a 128² PNG allocated 8 GiB chunks and
    /// aborted. One tile covers an image no larger than it, so the store's chunk is the image's size (rounded up
    /// for the zarr pyramid's halvings); the outputs are those of a small tile.
    @Test("A tile far larger than the image: the chunked outputs' chunks are the image's size, the outputs unchanged")
    func hugeTileOnASmallImage() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let map = sampleMap()
        var written: [[UInt8]] = []
        for (tile, stem) in [(32768, "huge"), (8, "small")] {
            let options = OutputOptions(directory: directory.path, stem: stem, kinds: [.prob, .zarr])
            let sink = try ChunkedMapOutput(
                options: options, classes: 3, height: 5, width: 7, tile: tile, levels: 2)
            #expect(sink.store.layout.tileSize == 8, "tile \(tile): chunks of \(sink.store.layout.tileSize)")
            try sink.write(PixelRect(y: 0, x: 0, height: 5, width: 7), values: map)
            try sink.finish(image: nil)
            written.append(try #require(try FileIO.read(directory.file("\(stem).prob-1.png"))))
        }
        #expect(written[0] == written[1])
    }

    @Test("default classes: all but 0 for two classes, all otherwise")
    func defaultClasses() throws {
        #expect(OutputOptions.defaultClasses(classCount: 2) == [1])
        #expect(OutputOptions.defaultClasses(classCount: 3) == [0, 1, 2])
        #expect(OutputOptions.defaultClasses(classCount: 1) == [0])
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let options = OutputOptions(directory: directory.path, stem: "two", kinds: [.prob])
        try writeOutputs(map: sampleMap(classes: 2), image: nil, options: options)
        #expect(try directory.contents() == ["two.prob-1.png"])
    }

    @Test("labels: the argmax class index per pixel, raw")
    func labels() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        var map = sampleMap()
        map[0, 0, 0] = 0.1  // no NaN here: check the plain argmax
        let options = OutputOptions(directory: directory.path, stem: "img", kinds: [.labels])
        try writeOutputs(map: map, image: nil, options: options)
        let labels = try PNGReader.read(path: options.labelsPath)
        #expect(labels.channels == 1 && labels.bitDepth == 8)
        for y in 0..<5 {
            for x in 0..<7 {
                let expected = (0..<3).max { map[$0, y, x] < map[$1, y, x] }!
                #expect(labels.value(y: y, x: x, channel: 0) == Float(expected), "at (\(y), \(x))")
            }
        }
    }

    @Test("labels of a one-class map (a sigmoid head): 1 where the probability is above 0.5")
    func oneClassLabels() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        var map = ProbabilityMap(classes: 1, height: 3, width: 4)
        let values: [Float] = [0, 0.2, 0.5, 0.50001, 0.9, 1, .nan, 0.49, 0.7, 0.1, 0.6, 0.5]
        for (i, v) in values.enumerated() { map[0, i / 4, i % 4] = v }
        let options = OutputOptions(directory: directory.path, stem: "one", kinds: [.labels])
        try writeOutputs(map: map, image: nil, options: options)
        let labels = try PNGReader.read(path: options.labelsPath)
        let read = (0..<12).map { labels.value(y: $0 / 4, x: $0 % 4, channel: 0) }
        #expect(read == values.map { $0 > 0.5 ? 1 : 0 }, "\(read)")
        // --check's decision agreement uses the same rule.
        let check = MapCheck(pixels: [[0, 0], [0, 1]], map: [[0.6], [0.4]], classifier: [[0.7], [0.6]])
        #expect(check.argmaxAgreement == 0.5)
    }

    @Test("overlay: the image where p = 0, the colour map blended in proportion to p", arguments: [1, 3])
    func overlay(channels: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let width = 64, height = 48
        let samples = (0..<(width * height * channels)).map { UInt8(($0 * 7) % 200) }
        let image = PixelImage(width: width, height: height, channels: channels, samples: .uint8(samples))
        var map = ProbabilityMap(classes: 2, height: height, width: width)
        for y in 0..<height {
            for x in 0..<width {
                map[1, y, x] = Float(x) / Float(width - 1)
                map[0, y, x] = 1 - map[1, y, x]
            }
        }
        let options = OutputOptions(directory: directory.path, stem: "synthetic", kinds: [.overlay])
        try writeOutputs(map: map, image: image, options: options)
        let overlay = try PNGReader.read(path: options.overlayPath)
        #expect(overlay.channels == 3 && overlay.bitDepth == 8 && overlay.width == width && overlay.height == height)
        for y in [0, 17, 47] {
            for c in 0..<3 {
                let source = image.value(y: y, x: 0, channel: channels == 3 ? c : 0)
                #expect(overlay.value(y: y, x: 0, channel: c) == source, "p = 0 must show the image")
                let top = ColorMap.viridis[255]
                let tint = [top.r, top.g, top.b][c]
                let edge = image.value(y: y, x: width - 1, channel: channels == 3 ? c : 0)
                #expect(overlay.value(y: y, x: width - 1, channel: c) == (edge * 0.4 + tint * 0.6).rounded())
            }
        }
        // A mismatched image is refused before anything is written.
        let small = PixelImage(width: 3, height: 3, channels: 1, samples: .uint8([UInt8](repeating: 0, count: 9)))
        #expect(throws: ImageIOError.self) { try writeOutputs(map: map, image: small, options: options) }
    }

    @Test("a synthetic overlay to look at (kept in TESSERA_KEEP_OVERLAY when set)")
    func syntheticOverlayForViewing() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let width = 256, height = 192
        // A gray "tissue" texture with two round cells; the map is high inside the cells.
        var samples = [UInt16](repeating: 0, count: width * height)
        var map = ProbabilityMap(classes: 2, height: height, width: width)
        let cells = [(x: 80.0, y: 90.0, r: 40.0), (x: 180.0, y: 70.0, r: 28.0)]
        for y in 0..<height {
            for x in 0..<width {
                var p = 0.0
                for cell in cells {
                    let d = ((Double(x) - cell.x) * (Double(x) - cell.x) + (Double(y) - cell.y) * (Double(y) - cell.y))
                        .squareRoot()
                    p = max(p, 1 / (1 + exp((d - cell.r) / 3)))
                }
                let texture = 0.5 + 0.25 * sin(Double(x) / 5) * cos(Double(y) / 7)
                samples[y * width + x] = UInt16((texture * (1 - 0.5 * p) * 4095).rounded())  // 12-bit data
                map[1, y, x] = Float(p)
                map[0, y, x] = Float(1 - p)
            }
        }
        let image = PixelImage(width: width, height: height, channels: 1, samples: .uint16(samples))
        let keep = ProcessInfo.processInfo.environment["TESSERA_KEEP_OVERLAY"]
        let options = OutputOptions(directory: keep ?? directory.path, stem: "synthetic-cells", kinds: [.overlay])
        try writeOutputs(map: map, image: image, options: options)
        let overlay = try PNGReader.read(path: options.overlayPath)
        #expect(overlay.width == width && overlay.channels == 3)
        // Inside a cell the overlay is yellow-ish (red and green above blue).
        #expect(overlay.value(y: 90, x: 80, channel: 0) > overlay.value(y: 90, x: 80, channel: 2))
    }

    @Test("all outputs at once: names, no temporary files left")
    func allOutputs() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let map = sampleMap(classes: 2)
        let image = PixelImage(width: 7, height: 5, channels: 3, samples: .uint8([UInt8](repeating: 99, count: 105)))
        let options = OutputOptions(directory: directory.path, stem: OutputOptions.stem(forInput: "/data/slide 1.PNG"))
        let written = try writeOutputs(map: map, image: image, options: options)
        let names = ["slide 1.labels.png", "slide 1.npy", "slide 1.overlay.png", "slide 1.prob-1.png"]
        #expect(try directory.contents() == names)
        #expect(written.count == 4)
    }

    @Test("--outputs, --bit-depth and --classes values parse, and bad ones are named")
    func parsing() throws {
        #expect(try OutputOptions.parseKinds("prob,labels") == [.prob, .labels])
        #expect(try OutputOptions.parseKinds("npy, overlay") == [.npy, .overlay])
        #expect(try OutputOptions.parseKinds("all") == Set(OutputKind.all))
        #expect(try OutputOptions.parseKinds("zarr,tiff,npy") == [.zarr, .tiff, .npy])
        #expect(throws: OutputOptionError.self) { try OutputOptions.parseKinds("prob,jpeg") }
        #expect(try OutputOptions.parseBitDepth("16") == 16)
        #expect(throws: OutputOptionError.self) { try OutputOptions.parseBitDepth("12") }
        #expect(try OutputOptions.parseClasses("1, 2") == [1, 2])
        #expect(throws: OutputOptionError.self) { try OutputOptions.parseClasses("x") }
        #expect(OutputOptions.stem(forInput: "a/b/c.png") == "c")
        #expect(OutputOptions.stem(forInput: "c.tif") == "c")
        #expect(OutputOptions.stem(forInput: "/slides/case 7.SVS") == "case 7")
        #expect(OutputOptions.stem(forInput: "notes.txt") == "notes.txt")
        #expect(OutputOptions.stem(forInput: ".png") == ".png")
    }

    @Test("a write that fails leaves nothing under the final name, nor a temporary file")
    func atomicity() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("out.png")
        struct Injected: Error {}
        // A body that writes half a file then fails.
        #expect(throws: Injected.self) {
            try AtomicFile.write(to: path) { temporary in
                try Data([1, 2, 3]).write(to: URL(fileURLWithPath: temporary))
                throw Injected()
            }
        }
        #expect(try directory.contents().isEmpty)
        // An existing file keeps its old content when the new write fails.
        try Data([42]).write(to: URL(fileURLWithPath: path))
        #expect(throws: ImageIOError.self) {
            try AtomicFile.write(to: path) { temporary in
                let writer = try PNGRowWriter(path: temporary, width: 4, height: 4, channels: 1, bitDepth: 8)
                try [UInt8](repeating: 7, count: 4).withUnsafeBufferPointer { try writer.write(row: $0) }
                try writer.finish()  // 1 of 4 rows: refused
            }
        }
        #expect(try directory.contents() == ["out.png"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data([42]))
        // A directory that does not exist: a clean error naming the file.
        let options = OutputOptions(directory: directory.file("missing"), stem: "x", kinds: [.prob, .npy])
        #expect(throws: ImageIOError.self) { try writeOutputs(map: sampleMap(), image: nil, options: options) }
    }

    /// Counts the bands read (a chunked store decodes its chunks on each read).
    final class CountingSource: MapRowSource {
        let map: ProbabilityMap
        var reads = 0
        init(_ map: ProbabilityMap) { self.map = map }
        var classes: Int { map.classes }
        var height: Int { map.height }
        var width: Int { map.width }
        var preferredBandRows: Int? { 2 }
        func rows(_ y: Range<Int>) throws -> [Float] {
            reads += 1
            return try map.rows(y)
        }
    }

    @Test("probability PNGs of many classes read the map once per 64 classes; a failure leaves none of its pass")
    func probabilityOnePass() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let source = CountingSource(sampleMap(classes: 70))
        let options = OutputOptions(directory: directory.path, stem: "many", kinds: [.prob])
        let written = try writeOutputs(map: source, image: nil, options: options)
        #expect(written.count == 70)
        #expect(source.reads == 2 * 3)  // 5 rows in bands of 2: 3 bands, two passes (64 + 6 classes)
        for c in [0, 63, 64, 69] {
            let image = try PNGReader.read(path: options.probabilityPath(forClass: c))
            for y in 0..<5 {
                for x in 0..<7 {
                    let p = source.map[c, y, x]
                    let expected = p.isNaN ? 0 : (min(max(p, 0), 1) * 255).rounded()
                    #expect(image.value(y: y, x: x, channel: 0) == expected, "class \(c) at (\(y), \(x))")
                }
            }
        }
        let fresh = try TemporaryDirectory()
        defer { fresh.cleanup() }
        #expect(throws: (any Error).self) {
            try writeProbabilityPNGs(
                map: sampleMap(), classIndices: [0, 1],
                to: [fresh.file("a.png"), fresh.file("missing/b.png")])
        }
        #expect(try fresh.contents() == [])
    }
}
