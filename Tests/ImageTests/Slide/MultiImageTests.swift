import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// `--image N`: which image of a multi-image TIFF is read. A two-scene OME-TIFF (each scene a
/// series with its pyramid in SubIFDs, as bioformats and QuPath write multi-scene slides) and a
/// plain TIFF of two full-size pages, each followed by a flagged ½ level; every level read back
/// must equal tifffile's decoding of the same image.
@Suite("Multi-image TIFFs: --image picks the image, its levels, µm/px and tissue view")
struct MultiImageTests {
    /// The fixtures, written once per test process by tifffile, with each image's levels as raw
    /// samples (`NAME.iIMAGE.lLEVEL.raw`, HWC uint8).
    static let folder: Result<String, FixtureError> = Result {
        let dir = try ProcessScratch.fresh("tessera-images-")
        try run(["python3", "-c", script, dir])
        return dir
    }.mapError { FixtureError("\($0)") }

    static let script = """
        import sys, numpy as np, tifffile, imagecodecs
        d = sys.argv[1]
        rng = np.random.default_rng(11)
        a = rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)
        b = rng.integers(0, 255, (200, 240, 3), dtype=np.uint8)
        o = dict(tile=(64, 64), compression='zlib', photometric='rgb')
        with tifffile.TiffWriter(d + '/scenes.ome.tif', ome=True) as w:
            w.write(a, subifds=1, metadata={'axes': 'YXS', 'Name': 'scene one', 'PhysicalSizeX': 0.25, 'PhysicalSizeY': 0.25}, **o)
            w.write(a[::2, ::2].copy(), subfiletype=1, **o)
            w.write(b, subifds=1, metadata={'axes': 'YXS', 'Name': 'scene "two" & more', 'PhysicalSizeX': 0.5, 'PhysicalSizeY': 0.5}, **o)
            w.write(b[::2, ::2].copy(), subfiletype=1, **o)
        with tifffile.TiffFile(d + '/scenes.ome.tif') as t:
            assert len(t.series) == 2 and [len(s.levels) for s in t.series] == [2, 2]
            for i, series in enumerate(t.series):
                for l, level in enumerate(series.levels):
                    level.asarray().tofile(f'{d}/scenes.i{i + 1}.l{l}.raw')
        with tifffile.TiffWriter(d + '/pages.tif') as w:
            w.write(a, **o)
            w.write(a[::2, ::2].copy(), subfiletype=1, **o)
            w.write(b, **o)
            w.write(b[::2, ::2].copy(), subfiletype=1, **o)
        with tifffile.TiffFile(d + '/pages.tif') as t:
            for page in range(4):
                t.pages[page].asarray().tofile(f'{d}/pages.i{page // 2 + 1}.l{page % 2}.raw')
        open(d + '/one.png', 'wb').write(imagecodecs.png_encode(b))
        """

    static func path(_ name: String) throws -> String { try folder.get() + "/" + name }

    /// The samples tifffile decoded for `file`'s image `image`, level `level`.
    static func expected(_ file: String, image: Int, level: Int) throws -> [Float] {
        let stem = (file as NSString).lastPathComponent.components(separatedBy: ".")[0]
        return try Data(contentsOf: URL(fileURLWithPath: path("\(stem).i\(image).l\(level).raw"))).map { Float($0) }
    }

    @Test(
        "Each image of the OME-TIFF and the plain TIFF reads as tifffile decodes it, level by level",
        arguments: [
            "scenes.ome.tif", "pages.tif",
        ])
    func imagesReadBack(file: String) throws {
        let path = try Self.path(file)
        let sizes = [1: [(256, 320), (128, 160)], 2: [(200, 240), (100, 120)]]
        for image in [1, 2] {
            for level in [0, 1] {
                let source = try TIFFRegionSource(path: path, image: image, level: level)
                #expect(source.image == image && source.imageCount == 2)
                #expect(source.levels.map { [$0.height, $0.width] } == sizes[image]!.map { [$0.0, $0.1] }, "\(file)")
                let all = PixelRect(y: 0, x: 0, height: source.height, width: source.width)
                let read = try source.readRegion(all).samples
                let want = try Self.expected(file, image: image, level: level)
                let same = read == want  // (not the samples themselves in the failure's message)
                #expect(same, "\(file) image \(image) level \(level) differs from tifffile's")
                let part = PixelRect(y: 37, x: 11, height: source.height / 2, width: source.width / 3)
                let region = try source.readRegion(part).samples == crop(want, width: source.width, channels: 3, part)
                #expect(region, "\(file) image \(image) level \(level): a region that crosses tiles")
            }
        }
        // OME: each scene's own µm/px (and source note); the plain TIFF declares none.
        let mpp = try (1...2).map { try TIFFRegionSource(path: path, image: $0).levels.map(\.mpp) }
        #expect(mpp == (file == "pages.tif" ? [[nil, nil], [nil, nil]] : [[0.25, 0.5], [0.5, 1.0]]), "\(mpp)")
    }

    @Test("Without --image, image 1 is read as before, with a note naming the others; with it, no note")
    func defaultIsImageOne() throws {
        for file in ["scenes.ome.tif", "pages.tif"] {
            let path = try Self.path(file)
            let byDefault = try TIFFRegionSource(path: path)
            #expect(byDefault.image == 1 && byDefault.width == 320 && byDefault.levels.count == 2)
            #expect(byDefault.notes == ["image 1 of 2 mapped; --image N picks another"], "\(byDefault.notes)")
            #expect(try TIFFRegionSource(path: path, image: 1).notes.isEmpty)
            #expect(try TIFFRegionSource(path: path, image: 2).notes.isEmpty)
            let opened = try ImageInput.open(path: path, image: 2, level: 1)
            #expect(opened.levelDescription.hasPrefix("image 2 of 2, level 1 of 2"), "\(opened.levelDescription)")
            let header = try ImageInput.header(path: path, image: 2)
            #expect(header.width == 240 && header.height == 200 && header.image == 2 && header.imageCount == 2)
        }
        let info = try SlideInfo.inspect(path: Self.path("scenes.ome.tif"))
        #expect(info.properties["mpp.source"] == "OME-XML, image 1 of 2")
        let second = try SlideInfo.inspect(path: Self.path("scenes.ome.tif"), image: 2)
        #expect(second.properties["mpp.source"] == "OME-XML, image 2 of 2" && second.width == 240 && second.mpp == 0.5)
    }

    @Test("inspect-image lists every image: size, levels, µm/px, OME name, and which is mapped")
    func listing() throws {
        let info = try SlideInfo.inspect(path: Self.path("scenes.ome.tif"), image: 2)
        #expect(
            info.images.map(\.description) == [
                "image 1: 320×256, 2 levels, 0.25 µm/px, \"scene one\"",
                "image 2: 240×200, 2 levels, 0.5 µm/px, \"scene \"two\" & more\"",
            ])
        #expect(info.image == 2 && info.imageCount == 2)
        let summary = info.summary
        #expect(summary.contains("2 images; run --image 2 maps image 2"), "\(summary)")
        #expect(
            summary.contains("  image 2: 240×200, 2 levels, 0.5 µm/px, \"scene \"two\" & more\" (mapped)"), "\(summary)"
        )
        #expect(summary.contains("240×200 px, 3 channels"), "\(summary)")
        let pages = try SlideInfo.inspect(path: Self.path("pages.tif")).summary
        #expect(
            pages.contains("2 images; run maps image 1")
                && pages.contains("image 1: 320×256, 2 levels, µm/px unknown (mapped)"), "\(pages)")
        // A file of one image lists none.
        let single = try SlideInfo.inspect(path: Fixtures.get().path("rgb8_tiled_zlib.tif"))
        #expect(single.imageCount == 1 && !single.summary.contains("images;"), "\(single.summary)")
    }

    @Test("An image the file does not hold is refused, naming the file and how many images it has")
    func outOfRange() throws {
        for (file, number) in [("scenes.ome.tif", 3), ("pages.tif", 3), ("pages.tif", 0)] {
            let path = try Self.path(file)
            let error = slideError { _ = try ImageInput.open(path: path, image: number) }
            #expect(error?.kind == .noSuchImage(number))
            #expect(
                error?.description.hasPrefix("\(path): no image \(number): the file has 2 images: 1 (320×256") == true,
                "\(String(describing: error))")
            #expect(slideError { _ = try ImageInput.header(path: path, image: number) }?.kind == .noSuchImage(number))
            #expect(slideError { _ = try SlideInfo.inspect(path: path, image: number) }?.kind == .noSuchImage(number))
        }
        let png = try Self.path("one.png")
        #expect(try ImageInput.open(path: png, image: 1).source.width == 240)
        for error in [
            slideError { _ = try ImageInput.open(path: png, image: 2) },
            slideError { _ = try ImageInput.header(path: png, image: 2) },
        ] {
            #expect(
                error?.kind == .noSuchImage(2)
                    && error?.description.contains("\(png): no image 2: the file has 1 image") == true)
        }
        // A vendor file holds one image: image 2 is refused, not read by libtiff as another image.
        let svs = try Fixtures.get().path("slide.svs")
        #expect(try openRegionSource(path: svs, image: 1) is TIFFRegionSource)
        // Read with libtiff, still one image: the thumbnail is no "image 2" (verification audit 37 N1).
        let opened = try ImageInput.open(path: svs)
        #expect(opened.imageCount == 1 && !opened.notes.contains { $0.contains("image 1 of") }, "\(opened.notes)")
        let error = slideError { _ = try openRegionSource(path: svs, image: 2) }
        #expect(
            error?.kind == .noSuchImage(2)
                && error?.description.contains("the file has 1 image: in a slide of aperio's format") == true,
            "\(String(describing: error))")
        #expect(slideError { _ = try SlideInfo.inspect(path: svs, image: 2) }?.kind == .noSuchImage(2))
    }

    @Test("Errors reading image 2 name it; errors of image 1 read as before")
    func errorsNameTheImage() throws {
        let path = try Self.path("scenes.ome.tif")
        let level = slideError { _ = try TIFFRegionSource(path: path, image: 2, level: 5) }
        #expect(
            level?.kind == .noSuchLevel(5)
                && level?.description.hasPrefix("\(path): no level 5, image 2:") == true,
            "\(String(describing: level))")
        let first = slideError { _ = try TIFFRegionSource(path: path, image: 1, level: 5) }
        #expect(first?.description.contains(", image ") == false, "\(String(describing: first))")
        let outside = slideError {
            _ = try TIFFRegionSource(path: path, image: 2).readRegion(PixelRect(y: 190, x: 0, height: 20, width: 5))
        }
        #expect(outside?.description.contains(", image 2, level 0: region") == true, "\(String(describing: outside))")
    }

    /// --tissue looks at a low level of the image mapped: two scenes of 2048² (½ levels in SubIFDs),
    /// each white with one stained island in another place; the mask of each finds its own island.
    @Test("--tissue's view comes from the mapped image's own pyramid")
    func tissueViewOfTheImage() throws {
        let dir = try ProcessScratch.fresh("tessera-images-")
        try run([
            "python3", "-c",
            """
            import sys, numpy as np, tifffile
            o = dict(tile=(256, 256), compression='zlib', photometric='rgb')
            def scene(y, x):
                a = np.full((2048, 2048, 3), 245, np.uint8)
                a[y:y + 400, x:x + 400] = (170, 60, 140)
                return a
            with tifffile.TiffWriter(sys.argv[1] + '/islands.ome.tif', ome=True) as w:
                for y, x in [(200, 200), (1400, 1400)]:
                    a = scene(y, x)
                    w.write(a, subifds=1, metadata={'axes': 'YXS'}, **o)
                    w.write(a[::2, ::2].copy(), subfiletype=1, **o)
            """, dir,
        ])
        let path = dir + "/islands.ome.tif"
        let islands = [
            1: PixelRect(y: 300, x: 300, height: 200, width: 200),
            2: PixelRect(y: 1500, x: 1500, height: 200, width: 200),
        ]
        for image in [1, 2] {
            let opened = try ImageInput.open(path: path, image: image)
            #expect(opened.levelCount == 2)
            let mask = try ImageInput.tissueMask(opened, path: path)
            #expect(mask.containsTissue(islands[image]!), "image \(image): its island is not tissue")
            #expect(!mask.containsTissue(islands[3 - image]!), "image \(image): the other image's island is tissue")
        }
    }
}
