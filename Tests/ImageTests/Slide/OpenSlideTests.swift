import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

@Suite("OpenSlide source, format detection, SlideInfo")
struct OpenSlideTests {
    /// The Aperio-like SVS opens through OpenSlide (which `run` uses for other vendors' files); both levels agree
    /// with tifffile's decoding to 1 level.
    @Test func svsThroughOpenSlide() throws {
        let fixtures = try Fixtures.get()
        let fixture = try fixtures.good("svs")
        let path = fixtures.path(fixture.file)
        let levels = try #require(fixture.levels)
        for (index, level) in levels.enumerated() {
            let source = try OpenSlideRegionSource(path: path, level: index)
            #expect(source.vendor == "aperio" && source.level == index)
            #expect(source.width == level.width && source.height == level.height && source.channels == 3)
            let expected = try fixtures.expected(level)
            for rect in testRects(height: level.height, width: level.width, seed: 3) {
                let region = try source.readRegion(rect)
                let want = crop(expected, width: level.width, channels: 3, rect)
                #expect(maxDifference(region.samples, want) <= 1, "level \(index) \(rect)")
            }
        }
    }

    /// Hostile-input audit: an SVS whose ImageLength was raised to 32768 made libtiff ignore its tile
    /// offsets; OpenSlide returned the tiles as transparent, mapped as background with no word (rc 0).
    @Test("A damaged SVS through OpenSlide carries libtiff's damage note; an intact one none")
    func damagedSVSIsNoted() throws {
        let fixtures = try Fixtures.get()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("svs-damage-\(getpid())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let damaged = folder + "/tall.svs"
        try FileManager.default.copyItem(atPath: fixtures.path("slide.svs"), toPath: damaged)
        let (status, output) = try runCommand([
            "python3", "-c",
            """
            import sys, struct, tifffile
            with tifffile.TiffFile(sys.argv[1]) as f:
                tag = f.pages[0].tags['ImageLength']
                entry, dtype = tag.offset, tag.dtype
            with open(sys.argv[1], 'r+b') as f:
                f.seek(entry + 8)
                f.write(struct.pack('<H' if dtype == 3 else '<I', 32768))
            """, damaged,
        ])
        #expect(status == 0, "\(output)")
        let source = try OpenSlideRegionSource(path: damaged, level: 0)
        #expect(
            source.notes.contains { $0.contains("damaged: libtiff could not read where the image's tiles") },
            "\(source.notes)")
        #expect(try SlideInfo.inspect(path: damaged).summary.contains("note: damaged"))
        let intact = try OpenSlideRegionSource(path: fixtures.path("slide.svs"), level: 0)
        #expect(!intact.notes.contains { $0.contains("damaged") }, "\(intact.notes)")
    }

    /// Hostile-input audit 27: OpenSlide reads a tile whose byte count is 0 as transparent (the map was
    /// background, rc 0, no word), and allocates a byte count of 0xFFFFFFFF before reading (GLib aborted
    /// the process under a memory limit, `--corrupt-tiles skip` or not). Neither tile is asked of it now:
    /// a region over one is a corrupt tile, named, and the rest of the level reads as before.
    @Test("SVS tiles with no data or a 4 GiB byte count are refused by name, never read through OpenSlide")
    func unreadableTilesAreNotRead() throws {
        let fixtures = try Fixtures.get()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("svs-counts-\(getpid())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let damaged = folder + "/counts.svs"
        try FileManager.default.copyItem(atPath: fixtures.path("slide.svs"), toPath: damaged)
        let (status, output) = try runCommand([
            "python3", "-c",
            """
            import sys, struct, tifffile
            with tifffile.TiffFile(sys.argv[1]) as f:
                tag = f.pages[0].tags['TileByteCounts']
                size = {3: 2, 4: 4, 16: 8}[tag.dtype]
                fmt = {3: '<H', 4: '<I', 16: '<Q'}[tag.dtype]
                at, width = tag.valueoffset, f.pages[0].tilewidth
            with open(sys.argv[1], 'r+b') as f:
                f.seek(at)
                f.write(struct.pack(fmt, 0))  # tile 0: no data
                f.seek(at + size)
                f.write(struct.pack(fmt, 2**(8 * size) - 1))  # tile 1: 4 GiB
            print(width)
            """, damaged,
        ])
        #expect(status == 0, "\(output)")
        let tile = try #require(Int(output.trimmingCharacters(in: .whitespacesAndNewlines)))
        let source = try OpenSlideRegionSource(path: damaged, level: 0)
        #expect(
            source.notes.contains { $0.contains("1 of level 0's") && $0.contains("hold no data") }, "\(source.notes)")
        for (x, kind, words) in [
            (0, SlideError.Kind.corruptTile, "byte count is 0"), (tile, .truncated, "run past the end"),
        ] {
            let error = #expect(throws: SlideError.self) {
                _ = try source.readRegion(PixelRect(y: 0, x: x, height: 16, width: 16))
            }
            #expect(error?.kind == kind && error?.isCorruptData == true, "\(String(describing: error))")
            #expect(error?.tile?.index == x / tile, "\(String(describing: error))")
            #expect(error?.description.contains(words) == true, "\(String(describing: error))")
        }
        // The tiles around them read as the intact slide's.
        let intact = try OpenSlideRegionSource(path: fixtures.path("slide.svs"), level: 0)
        let rect = PixelRect(y: tile, x: 0, height: 40, width: 3 * tile)
        #expect(try source.readRegion(rect) == intact.readRegion(rect))
    }

    /// mpp picks the level within 20 %; otherwise the error lists every level and its µm/px.
    @Test func mppSelection() throws {
        let fixtures = try Fixtures.get()
        let path = fixtures.path("slide.svs")
        #expect((try openRegionSource(path: path, mpp: 0.26) as? TIFFRegionSource)?.level == 0)
        #expect((try openRegionSource(path: path, mpp: 1.1) as? TIFFRegionSource)?.level == 1)
        #expect((try OpenSlideRegionSource(path: path, mpp: 0.9)).level == 1)
        let error = slideError { _ = try openRegionSource(path: path, mpp: 0.5) }
        #expect(error?.kind == .noLevelNearMPP(0.5))
        let text = error?.description ?? ""
        #expect(text.contains(path) && text.contains("0.25 µm/px") && text.contains("1 µm/px"), "\(text)")
        #expect(text.contains("within 20%"), "\(text)")
    }

    /// A generic tiled TIFF read through OpenSlide equals the written samples exactly (lossless, α = 255).
    /// Level 2 (75×50 in 48×64 tiles: a tile taller than the level) is left out: OpenSlide 3.4.1 returns
    /// garbage with random alpha there, with no error (python openslide shows the same), which is one more reason
    /// generic TIFFs go to libtiff.
    @Test func genericTIFFThroughOpenSlideIsExact() throws {
        let fixtures = try Fixtures.get()
        let fixture = try fixtures.good("rgb8_tiled_zlib")
        let levels = try #require(fixture.levels)
        for (index, level) in levels.enumerated() where index < 2 {
            let source = try OpenSlideRegionSource(path: fixtures.path(fixture.file), level: index)
            #expect(source.levels.count == 3)
            let expected = try fixtures.expected(level)
            for rect in testRects(height: level.height, width: level.width, seed: 11) {
                let want = crop(expected, width: level.width, channels: 3, rect)
                #expect(try source.readRegion(rect).samples == want, "level \(index) \(rect)")
            }
        }
    }

    @Test func formatDetection() throws {
        let fixtures = try Fixtures.get()
        #expect(try SlideFormat.detect(path: fixtures.path("slide.svs")) == .openSlide(vendor: "aperio"))
        #expect(try SlideFormat.detect(path: fixtures.path("rgb8_tiled_zlib.tif")) == .tiff(bigTIFF: false))
        #expect(try SlideFormat.detect(path: fixtures.path("rgb8_bigtiff.tif")) == .tiff(bigTIFF: true))
        #expect(try SlideFormat.detect(path: fixtures.path("gray8_striped.tif")) == .tiff(bigTIFF: false))
        #expect(try SlideFormat.detect(path: fixtures.path("not_a_tiff.tif")) == .unknown)
        #expect(try openRegionSource(path: fixtures.path("rgb8_tiled_zlib.tif")) is TIFFRegionSource)
        // Aperio: libtiff reads the levels OpenSlide finds, at their own pixels.
        #expect(try openRegionSource(path: fixtures.path("slide.svs")) is TIFFRegionSource)
    }

    /// Whole-slide audit 35 F10: OpenSlide resamples an Aperio level whose downsample is not a whole number
    /// (1024 of 4097 pixels: 4.0019, the norm) by each region's fractional level-0 origin, so a lower level's map
    /// was blurred and differed from tile to tile. Read with libtiff, every region is the level's own pixels.
    @Test("An Aperio level with a downsample that is not a whole number reads as its own pixels, anywhere")
    func aperioLevelsAreNotResampled() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("aperio-ds-\(getpid())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/odd.svs"
        let (status, output) = try runCommand([
            "python3", "-c",
            """
            import sys, numpy as np, tifffile
            rng = np.random.RandomState(5)
            l0 = rng.randint(0, 256, (403, 517, 3)).astype(np.uint8)
            l1 = rng.randint(0, 256, (100, 128, 3)).astype(np.uint8)
            d0 = 'Aperio Image Library v12.0.15\\r\\n517x403 [0,0 517x403] (64x64) JPEG/RGB Q=70|AppMag = 40|MPP = 0.2520'
            with tifffile.TiffWriter(sys.argv[1]) as t:
                t.write(l0, description=d0, metadata=None, tile=(64, 64), compression='zlib')
                t.write(l1, description='Aperio Image Library v12.0.15\\r\\nlevel', metadata=None, tile=(64, 64),
                        compression='zlib')
            l1.tofile(sys.argv[1] + '.l1')
            # No MPP in the description, resolution tags all the same: no scale, as OpenSlide has it.
            tifffile.imwrite(sys.argv[1] + '.nompp.svs', l0, tile=(64, 64), compression='zlib', metadata=None,
                             description='Aperio Image Library v12.0.15\\r\\n517x403 [0,0 517x403] (64x64) JPEG/RGB',
                             resolution=(40000, 40000), resolutionunit='CENTIMETER')
            """, path,
        ])
        #expect(status == 0, "\(output)")
        #expect(try SlideFormat.detect(path: path) == .openSlide(vendor: "aperio"))
        let source = try openRegionSource(path: path, level: 1)
        #expect(source.width == 128 && source.height == 100)
        // Verification audit 37 N5: run took µm/px from the tags of an SVS whose description had none.
        let bare = try #require(try openRegionSource(path: path + ".nompp.svs") as? TIFFRegionSource)
        #expect(bare.levels[0].mpp == nil, "\(bare.levels[0])")
        let expected = try Data(contentsOf: URL(fileURLWithPath: path + ".l1")).map { Float($0) }
        for rect in testRects(height: 100, width: 128, seed: 9) + [PixelRect(y: 37, x: 61, height: 50, width: 60)] {
            #expect(try source.readRegion(rect).samples == crop(expected, width: 128, channels: 3, rect), "\(rect)")
        }
    }

    /// A TIFF that OpenSlide detects as Aperio but cannot open (user audit: it was called "not a TIFF") is read
    /// with libtiff, with a note saying so; OpenSlide's own refusal names the vendor.
    @Test func vendorFileOpenSlideCannotOpenIsReadWithLibtiff() throws {
        let fixtures = try Fixtures.get()
        let path = fixtures.path("unopenable.svs")
        #expect(try SlideFormat.detect(path: path) == .openSlide(vendor: "aperio"))
        let refusal = slideError { _ = try OpenSlideRegionSource(path: path) }
        #expect(refusal?.kind == .openSlide)
        #expect(refusal?.detail.contains("recognises the file as 'aperio' but cannot open it") == true)
        let source = try #require(try openRegionSource(path: path) as? TIFFRegionSource)
        #expect(source.notes.first?.contains("read as a generic TIFF with libtiff instead") == true, "\(source.notes)")
        #expect(source.width == 1024 && source.height == 768 && source.levels.first?.mpp == 0.25)
        let level = try #require(try fixtures.good("svs").levels?.first)
        let expected = try fixtures.expected(level)
        for rect in testRects(height: level.height, width: level.width, seed: 5) {
            let want = crop(expected, width: level.width, channels: 3, rect)
            #expect(maxDifference(try source.readRegion(rect).samples, want) <= 1, "\(rect)")
        }
        let info = try SlideInfo.inspect(path: path)
        #expect(info.format == .tiff(bigTIFF: false) && info.mpp == 0.25)
        #expect(info.properties["note.1"]?.contains("cannot open it") == true, "\(info.properties)")
    }

    /// A slide cut short inside its last directory (user audit: it mapped as "level 0 of 1" with nothing said):
    /// through OpenSlide and through libtiff alike, the levels before the cut are read and a note says the file
    /// was cut short at directory 2.
    @Test(arguments: ["slide.svs", "unopenable.svs"])
    func cutShortSlideSaysSo(_ name: String) throws {
        let fixtures = try Fixtures.get()
        let before = try ImageInput.open(path: fixtures.path(name))
        #expect(before.notes.allSatisfy { !$0.contains("cut short") }, "\(before.notes)")
        let path = fixtures.path("cut_" + name)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)
        let opened = try ImageInput.open(path: path)
        #expect(opened.levelCount == before.levelCount - 1)
        let note = opened.notes.first { $0.contains("cut short") }
        #expect(
            note?.contains("directory 2") == true && note?.contains("ends at byte \(size)") == true, "\(opened.notes)")
        let info = try SlideInfo.inspect(path: path)
        #expect(info.summary.contains("cut short"), "\(info.summary)")
    }

    @Test func slideInfoDescribesBothKinds() throws {
        let fixtures = try Fixtures.get()
        let svs = try SlideInfo.inspect(path: fixtures.path("slide.svs"))
        #expect(svs.vendor == "aperio" && svs.width == 1024 && svs.height == 768)
        #expect(svs.levels.map(\.downsample) == [1, 4] && svs.levels.map(\.mpp) == [0.25, 1.0])
        #expect(svs.mpp == 0.25 && svs.objectivePower == 40 && svs.compression == "JPEG")
        #expect(svs.tileWidth == 256 && svs.associatedImages == ["thumbnail"])
        #expect(svs.summary.contains("level 1: 256×192, downsample 4, 1 µm/px"), "\(svs.summary)")
        let tiff = try SlideInfo.inspect(path: fixtures.path("rgb16_tiled.tif"))
        #expect(tiff.format == .tiff(bigTIFF: false) && tiff.vendor == "generic-tiff")
        #expect(tiff.bitDepth == 16 && tiff.channels == 3 && tiff.compression == "deflate")
        #expect(tiff.tileWidth == 32 && tiff.tileHeight == 48 && tiff.levels.count == 1 && tiff.mpp == nil)
        let striped = try SlideInfo.inspect(path: fixtures.path("gray8_striped.tif"))
        #expect(striped.vendor == nil && striped.tileWidth == nil && striped.channels == 1)
        #expect(striped.compression == "LZW")
    }
}

@Suite("OpenSlide errors")
struct OpenSlideErrorTests {
    /// A corrupt tile in an SVS throws (OpenSlide's sticky error), naming file, level and rectangle; the slide
    /// is reopened, so reads elsewhere, before and after, still return the right pixels.
    @Test func corruptSVSTileThrowsAndOtherReadsRecover() throws {
        let fixtures = try Fixtures.get()
        let path = fixtures.path("bad_tile.svs")
        let source = try OpenSlideRegionSource(path: path)
        let level = try #require(try fixtures.good("svs").levels?.first)
        let expected = try fixtures.expected(level)
        let fine = PixelRect(y: 0, x: 0, height: 256, width: 1024)
        let want = crop(expected, width: 1024, channels: 3, fine)
        #expect(maxDifference(try source.readRegion(fine).samples, want) <= 1)
        let bad = PixelRect(y: 300, x: 300, height: 20, width: 20)
        let error = slideError { _ = try source.readRegion(bad) }
        #expect(error?.kind == .corruptTile && error?.isCorruptData == true && error?.level == 0)
        #expect(error?.description.contains(path) == true && error?.description.contains("\(bad)") == true)
        #expect(maxDifference(try source.readRegion(fine).samples, want) <= 1)
        // Several threads, some on the bad tile: the others still get correct pixels.
        let results = ResultBox(count: 16)
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            results.set(i, (try? source.readRegion(i % 4 == 0 ? bad : fine).samples) ?? [-1])
        }
        for i in 0..<16 {
            if i % 4 == 0 {
                #expect(results.get(i) == [-1])
            } else {
                #expect(maxDifference(results.get(i), want) <= 1, "read \(i)")
            }
        }
    }
}
