import Foundation
import TestSupport
import Testing

@testable import TesseraCore
@testable import TesseraImage

@Suite("Bad input: clear errors, never a crash or silent garbage")
struct BadInputTests {
    /// Each damaged or unsupported file throws the listed kind, naming the file (and the tile when it applies).
    @Test(arguments: [
        "bad_jpeg_tile", "bad_jpeg_tables_tile", "bad_zlib_tile", "truncated_tiles",
        "truncated_directory", "jpeg2000", "float32", "not_a_tiff", "bad_svs_tile",
    ])
    func badFileThrows(name: String) throws {
        let fixtures = try Fixtures.get()
        let bad = try #require(fixtures.manifest.bad[name])
        let path = fixtures.path(bad.file)
        let error = slideError {
            let source = try openRegionSource(path: path)
            _ = try source.readRegion(PixelRect(y: 0, x: 0, height: source.height, width: source.width))
        }
        #expect(error?.kind.code == bad.kind, "\(name): \(String(describing: error))")
        #expect(error?.description.contains(path) == true)
        if bad.tile == -1 { #expect(error?.tile != nil, "\(String(describing: error))") }
        if let tile = bad.tile, tile >= 0 {
            #expect(error?.tile?.index == tile, "\(String(describing: error))")
            #expect(error?.description.contains("tile \(tile) rows ") == true)
        }
        if bad.tile != nil { #expect(error?.level == 0) }
    }

    /// Tiles other than the corrupt one still read, and the corrupt one keeps failing (not cached, not zeros).
    @Test func corruptJPEGTileFailsAloneAndEveryTime() throws {
        let fixtures = try Fixtures.get()
        let source = try TIFFRegionSource(path: fixtures.path("bad_jpeg_tile.tif"))
        let good = try fixtures.expected(try #require(try fixtures.good("jpeg_rgb").levels?.first))
        let fine = PixelRect(y: 0, x: 0, height: 64, width: 260)  // tile row 0
        #expect(maxDifference(try source.readRegion(fine).samples, crop(good, width: 260, channels: 3, fine)) <= 1)
        let tile5 = PixelRect(y: 64, x: 0, height: 64, width: 64)
        for _ in 0..<2 {
            let error = slideError { _ = try source.readRegion(PixelRect(y: 100, x: 10, height: 5, width: 5)) }
            #expect(error?.kind == .corruptTile && error?.tile?.rect == tile5)
            #expect(error?.detail.contains("JPEG") == true, "\(String(describing: error))")
        }
    }

    /// Threads racing for the corrupt tile all get the error (none waits forever, none gets pixels); the
    /// threads reading good tiles at the same time get the right pixels.
    @Test func corruptTileUnderConcurrency() throws {
        let fixtures = try Fixtures.get()
        let source = try TIFFRegionSource(path: fixtures.path("bad_zlib_tile.tif"), maxHandles: 2)
        let level = try #require(try fixtures.good("rgb8_tiled_zlib").levels?.first)
        let expected = try fixtures.expected(level)
        // Tile 3 of the 48-wide, 64-high tiles: columns 144..<192 of rows 0..<64.
        let bad = PixelRect(y: 10, x: 150, height: 20, width: 20)
        let good = PixelRect(y: 70, x: 0, height: 100, width: 300)
        let results = ResultBox(count: 24)
        DispatchQueue.concurrentPerform(iterations: 24) { i in
            results.set(i, (try? source.readRegion(i % 2 == 0 ? bad : good).samples) ?? [-1])
        }
        let want = crop(expected, width: level.width, channels: 3, good)
        for i in 0..<24 { #expect(results.get(i) == (i % 2 == 0 ? [-1] : want), "read \(i)") }
    }

    @Test func unsupportedCompressionIsNamed() throws {
        let fixtures = try Fixtures.get()
        let error = slideError { _ = try TIFFRegionSource(path: fixtures.path("jpeg2000.tif")) }
        #expect(error?.kind == .unsupportedCompression(34712))
        #expect(error?.description.contains("JPEG 2000") == true)
    }

    @Test func missingFileAndLevels() throws {
        let fixtures = try Fixtures.get()
        let missing = fixtures.path("no-such-file.tif")
        #expect(slideError { _ = try openRegionSource(path: missing) }?.kind == .notFound)
        #expect(slideError { _ = try TIFFRegionSource(path: missing) }?.kind == .notFound)
        let tiff = fixtures.path("rgb8_tiled_zlib.tif")
        let noLevel = slideError { _ = try TIFFRegionSource(path: tiff, level: 3) }
        #expect(noLevel?.kind == .noSuchLevel(3))
        #expect(noLevel?.description.contains("3 level(s)") == true)
        let svs = fixtures.path("slide.svs")
        #expect(slideError { _ = try OpenSlideRegionSource(path: svs, level: 2) }?.kind == .noSuchLevel(2))
        #expect(slideError { _ = try openRegionSource(path: svs, level: -1) }?.kind == .noSuchLevel(-1))
        #expect(slideError { _ = try openRegionSource(path: svs, level: 0, mpp: 0.25) }?.kind == .invalidArgument)
    }

    /// A FIFO or a device is named as such (user audit: /dev/zero and a FIFO were called "empty (0 bytes)"), and
    /// nothing blocks reading from it.
    @Test func specialFilesAreNamed() throws {
        let fixtures = try Fixtures.get()
        let fifo = fixtures.path("fifo.tif")
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        for (path, what) in [(fifo, "FIFO"), ("/dev/zero", "a device")] {
            let error = slideError { _ = try ImageInput.open(path: path) }
            #expect(error?.kind == .invalidArgument, "\(path): \(error?.description ?? "no error")")
            #expect(error?.detail.contains("\(what)") == true && error?.detail.contains("not a regular file") == true)
        }
        // A link to an image is the image (its target is what counts).
        let link = fixtures.path("link.tif")
        unlink(link)
        #expect(symlink(fixtures.path("rgb8_tiled_zlib.tif"), link) == 0)
        defer { unlink(link) }
        #expect(try ImageInput.open(path: link).source.width > 0)
    }

    /// Random byte flips and truncations of small tiled TIFFs: every open and read throws or succeeds.
    @Test(arguments: ["fuzz_zlib.tif", "fuzz_jpeg.tif"])
    func fuzzedFilesNeverCrash(file: String) throws {
        let fixtures = try Fixtures.get()
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures.path(file))))
        var random = SplitMix64(seed: UInt64(file.count) * 7919)
        var outcomes = (opened: 0, read: 0, failed: 0)
        let path = fixtures.path("fuzz-\(file)")
        // SLIDE_FUZZ_ROUNDS=5000 swift test --filter fuzz: a longer run, by hand.
        let rounds = ProcessInfo.processInfo.environment["SLIDE_FUZZ_ROUNDS"].flatMap { Int($0) } ?? 150
        for round in 0..<rounds {
            var bytes = original
            if round % 5 == 4 {
                bytes = Array(bytes.prefix(Int(random.next() % UInt64(bytes.count))))
            } else {
                // Mostly the header and directory (first 600 bytes), sometimes anywhere.
                for _ in 0..<(1 + Int(random.next() % 8)) {
                    let span = round % 2 == 0 ? min(600, bytes.count) : bytes.count
                    let at = Int(random.next() % UInt64(span))
                    bytes[at] ^= UInt8(truncatingIfNeeded: random.next() | 1)
                }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let source = try openRegionSource(path: path)
                outcomes.opened += 1
                let whole = PixelRect(y: 0, x: 0, height: min(source.height, 256), width: min(source.width, 256))
                _ = try source.readRegion(whole)
                outcomes.read += 1
            } catch is SlideError {
                outcomes.failed += 1
            }
        }
        #expect(outcomes.opened + outcomes.failed >= rounds)
        #expect(outcomes.failed > 0 && outcomes.read > 0, "\(outcomes)")
    }
}

extension BadInputTests {
    /// Whole-slide audit 35 F9: a header whose every tile holds 0 bytes was planned as millions of tasks that
    /// each failed. Such a level is refused at open; one tile with data is enough to open it.
    @Test("A level none of whose tiles holds data is refused at open, naming the file and level")
    func levelWithoutData() throws {
        let folder = NSTemporaryDirectory() + "no-data-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (status, output) = try runCommand([
            "python3", "-c",
            """
            import sys, numpy as np, tifffile
            a = np.random.default_rng(3).integers(0, 255, (96, 128, 3), dtype=np.uint8)
            for name, keep in (('empty.tif', 0), ('one.tif', 1)):
                path = sys.argv[1] + '/' + name
                tifffile.imwrite(path, a, tile=(32, 32), photometric='rgb')
                with tifffile.TiffFile(path) as t:
                    tag = t.pages[0].tags['TileByteCounts']
                    offset, count, size = tag.valueoffset, tag.count, {3: 2, 4: 4, 16: 8}[int(tag.dtype)]
                with open(path, 'r+b') as f:
                    f.seek(offset + keep * size)
                    f.write(bytes((count - keep) * size))
            """, folder,
        ])
        #expect(status == 0, "\(output)")
        let error = slideError { _ = try openRegionSource(path: folder + "/empty.tif") }
        #expect(error?.kind == .corruptFile && error?.level == 0, "\(String(describing: error))")
        #expect(error?.description.contains("none of the level's 12 tiles holds any data") == true)
        #expect(error?.description.contains(folder + "/empty.tif") == true)
        let one = try openRegionSource(path: folder + "/one.tif")
        #expect(one.width == 128)
        let bad = slideError { _ = try one.readRegion(PixelRect(y: 40, x: 40, height: 8, width: 8)) }
        #expect(bad?.kind == .corruptTile, "\(String(describing: bad))")
    }
}
