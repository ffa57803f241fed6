import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// What a slide file says about its pixels. A slide whose pixels are not square (x and y µm/px differ) is read as its pixel grid, as
/// viewers show it, with a note saying so and which size µm/px means; square pixels get no note.
@Suite("Slide metadata: non-square pixels, length units, placeholder resolutions, striped levels")
struct SlideMetadataTests {
    static let folder: Result<String, FixtureError> = Result {
        let dir = try ProcessScratch.fresh("tessera-pixel-shape-")
        try run(["python3", "-c", script, dir])
        return dir
    }.mapError { FixtureError("\($0)") }

    /// Resolution tags 40 000 px/cm across, 20 000 down (0.25 × 0.5 µm); OME PhysicalSizeY in nm;
    /// and a square pair of each.
    static let script = """
        import sys, numpy as np, tifffile
        d = sys.argv[1]
        a = np.random.default_rng(5).integers(0, 255, (128, 160, 3), dtype=np.uint8)
        o = dict(tile=(64, 64), photometric='rgb')
        tifffile.imwrite(d + '/tags.tif', a, resolution=(40000, 20000), resolutionunit='CENTIMETER', **o)
        tifffile.imwrite(d + '/square.tif', a, resolution=(40000, 40000), resolutionunit='CENTIMETER', **o)
        tifffile.imwrite(d + '/ome.ome.tif', a, metadata={'axes': 'YXS', 'PhysicalSizeX': 0.25,
            'PhysicalSizeY': 200, 'PhysicalSizeYUnit': 'nm'}, **o)
        tifffile.imwrite(d + '/ome-square.ome.tif', a, metadata={'axes': 'YXS', 'PhysicalSizeX': 0.25,
            'PhysicalSizeY': 0.25}, **o)
        tifffile.imwrite(d + '/ome-cm.ome.tif', a, metadata={'axes': 'YXS', 'PhysicalSizeX': 2.5e-5,
            'PhysicalSizeXUnit': 'cm', 'PhysicalSizeY': 2.5e-5, 'PhysicalSizeYUnit': 'cm'}, **o)
        tifffile.imwrite(d + '/dpi72.tif', a, resolution=(72, 72), resolutionunit='INCH', **o)
        tifffile.imwrite(d + '/ome-odd.ome.tif', a, metadata={'axes': 'YXS', 'PhysicalSizeX': 0.8829499338332965,
            'PhysicalSizeY': 0.8829499338332965}, **o)
        # PhysicalSizeX that is no size, and one that is no plausible one (audit 53 F11).
        tifffile.imwrite(d + '/ome-negative.ome.tif', a, metadata={'axes': 'YXS', 'PhysicalSizeX': -0.5,
            'PhysicalSizeY': -0.5}, **o)
        tifffile.imwrite(d + '/ome-tiny.ome.tif', a, metadata={'axes': 'YXS', 'PhysicalSizeX': 1e-300,
            'PhysicalSizeXUnit': 'm', 'PhysicalSizeY': 1e-300, 'PhysicalSizeYUnit': 'm'}, **o)
        # A pyramid whose SubIFD levels are striped (tifffile writes what it is asked to).
        with tifffile.TiffWriter(d + '/striped-levels.ome.tif', ome=True) as w:
            w.write(a, subifds=2, metadata={'axes': 'YXS', 'PhysicalSizeX': 0.25, 'PhysicalSizeY': 0.25}, **o)
            for f in (2, 4):
                w.write(a[::f, ::f].copy(), subfiletype=1, rowsperstrip=16, photometric='rgb')
        with tifffile.TiffFile(d + '/striped-levels.ome.tif') as t:
            t.series[0].levels[2].asarray().tofile(d + '/striped-levels.l2.raw')
        """

    static func path(_ name: String) throws -> String { try folder.get() + "/" + name }

    @Test("Resolution tags and OME-XML: different x and y sizes give the note, equal ones none")
    func notes() throws {
        let tags = try TIFFRegionSource(path: Self.path("tags.tif"))
        #expect(tags.levels[0].mpp == 0.25)
        let note = try #require(tags.notes.first { $0.contains("not square") }, "\(tags.notes)")
        #expect(note.contains("0.25 µm wide, 0.5 µm high") && note.contains("squeezed 2× vertically"), "\(note)")
        #expect(note.contains("--mpp"), "\(note)")

        let ome = try TIFFRegionSource(path: Self.path("ome.ome.tif"))
        let omeNote = try #require(ome.notes.first { $0.contains("not square") }, "\(ome.notes)")
        #expect(
            omeNote.contains("0.25 µm wide, 0.2 µm high") && omeNote.contains("squeezed 1.25× horizontally"),
            "\(omeNote)")

        for square in ["square.tif", "ome-square.ome.tif"] {
            let source = try TIFFRegionSource(path: Self.path(square))
            #expect(source.levels[0].mpp == 0.25 && source.notes.isEmpty, "\(square): \(source.notes)")
        }
        // inspect-image shows it too.
        let info = try SlideInfo.inspect(path: Self.path("tags.tif"))
        #expect(info.properties.contains { $0.key.hasPrefix("note.") && $0.value == note }, "\(info.properties)")
    }

    /// Audit 53 F11: an OME PhysicalSizeX of −0.5, 0, NaN or 1e−300 m gave "µm/px unknown" and no word why.
    @Test("An OME PhysicalSizeX that is not a (plausible) pixel size is ignored with a note")
    func invalidOMESize() throws {
        for (name, said) in [
            ("ome-negative.ome.tif", #"PhysicalSizeX="-0.5" (µm) is not a pixel size: ignored, the scale is unknown"#),
            ("ome-tiny.ome.tif", "µm/px ignored (not plausible)"),
        ] {
            let source = try TIFFRegionSource(path: Self.path(name))
            #expect(source.levels[0].mpp == nil, "\(name): \(source.levels[0])")
            #expect(source.notes.contains { $0.contains(said) }, "\(name): \(source.notes)")
        }
    }

    /// Whole-slide audit 35 F7: the maps recorded the x size for both axes, so a map of non-square pixels did not
    /// overlay its slide (0.24 % off for 0.2527 × 0.2533 µm: 240 px down a 100 000-px slide). The levels carry the
    /// y size, the store's OME scale and the TIFF's YResolution hold it.
    @Test("Non-square pixels: the levels and the map's OME scale and TIFF resolution keep both sizes")
    func nonSquareScaleReachesTheMap() throws {
        let tags = try TIFFRegionSource(path: Self.path("tags.tif"))
        #expect(tags.levels[0].mpp == 0.25 && tags.levels[0].mppY == 0.5)
        let ome = try TIFFRegionSource(path: Self.path("ome.ome.tif"))
        #expect(ome.levels[0].mppY.map { abs($0 - 0.2) < 1e-12 } == true, "\(ome.levels[0])")
        #expect(try TIFFRegionSource(path: Self.path("square.tif")).levels[0].mppY == nil)
        // Square with a value whose x · W / W is not x (verification audit 37 N2: a y size an ulp off, and an x size
        // that was not the file's): the file's value, and no y size.
        let odd = try TIFFRegionSource(path: Self.path("ome-odd.ome.tif")).levels[0]
        #expect(odd.mpp == 0.8829499338332965 && odd.mppY == nil, "\(odd)")
        let opened = try ImageInput.open(path: Self.path("tags.tif"))
        #expect(opened.mpp == 0.25 && opened.mppY == 0.5)

        let dir = try Self.folder.get() + "/nonsquare-map"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let layout = try MapLayout(
            classes: 2, height: 70, width: 90, tileSize: 32, levels: 2, micronsPerPixel: 0.25, micronsPerPixelY: 0.5)
        let store = try finishedStore(layout, at: dir + "/map.zarr") { rect, _ in
            [Float](repeating: 0.5, count: 2 * rect.height * rect.width)
        }
        #expect(try MapStore.open(at: store.path).layout == layout)
        try TIFFMapExport.write(store: store, to: dir + "/map.tif", tileSize: 32)
        let (status, output) = try runCommand([
            "python3", "-c",
            """
            import sys, zarr, tifffile
            z = zarr.open(sys.argv[1], mode='r')
            scales = [d['coordinateTransformations'][0]['scale'] for d in z.attrs['multiscales'][0]['datasets']]
            assert scales == [[1.0, 0.5, 0.25], [1.0, 1.0, 0.5]], scales
            moves = z.attrs['multiscales'][0]['datasets'][1]['coordinateTransformations'][1]['translation']
            assert moves == [0.0, 0.25, 0.125], moves
            assert z.attrs['tessera']['microns_per_pixel_y'] == 0.5
            with tifffile.TiffFile(sys.argv[2]) as tf:
                p = tf.pages[0]
                x, y = p.tags['XResolution'].value, p.tags['YResolution'].value
                assert abs(x[0] / x[1] - 40000) < 1e-2 and abs(y[0] / y[1] - 20000) < 1e-2, (x, y)
            print('ok')
            """,
            store.path, dir + "/map.tif",
        ])
        #expect(status == 0 && output.contains("ok"), "\(output)")
    }

    /// User audit: OME lengths in cm (or inches) read as "µm/px unknown"; a 72-dpi placeholder in the
    /// resolution tags became 352.8 µm/px in the map's metadata.
    @Test("OME units cm and in are converted; a 72-dpi placeholder is ignored with a note")
    func unitsAndPlaceholders() throws {
        let cm = try TIFFRegionSource(path: Self.path("ome-cm.ome.tif"))
        #expect(abs((cm.levels[0].mpp ?? 0) - 0.25) < 1e-9 && cm.notes.isEmpty, "\(cm.levels[0]) \(cm.notes)")
        let dpi = try TIFFRegionSource(path: Self.path("dpi72.tif"))
        #expect(dpi.levels[0].mpp == nil)
        #expect(dpi.notes.contains { $0.contains("72 dpi") && $0.contains("placeholder") }, "\(dpi.notes)")
        #expect(OMEXML.micrometres(perUnit: "in") == 25_400 && OMEXML.micrometres(perUnit: "furlong") == nil)
    }

    /// User audit: striped SubIFD levels were dropped, so `--level 2` and `--mpp 1` were refused.
    @Test(
        "Striped pyramid levels in SubIFDs are levels: listed, chosen by --level and --mpp, read as tifffile reads them"
    )
    func stripedSubIFDLevels() throws {
        let path = try Self.path("striped-levels.ome.tif")
        let source = try TIFFRegionSource(path: path, level: 2)
        #expect(source.levels.count == 3 && source.width == 40 && source.height == 32, "\(source.levels)")
        let region = try source.readRegion(PixelRect(y: 0, x: 0, height: 32, width: 40))
        let expected = try Data(contentsOf: URL(fileURLWithPath: Self.path("striped-levels.l2.raw"))).map { Float($0) }
        #expect(region.samples == expected)
        #expect(try TIFFRegionSource(path: path, mpp: 1.0).level == 2)
    }

    @Test("The note's arithmetic: within 1 % is square; unknown or implausible sizes give none")
    func arithmetic() {
        #expect(SlideLevel.nonSquareNote(x: 0.25, y: 0.252) == nil)
        #expect(SlideLevel.nonSquareNote(x: 0.25, y: 0.26) != nil)
        #expect(SlideLevel.nonSquareNote(x: 0.25, y: nil) == nil)
        #expect(SlideLevel.nonSquareNote(x: 0.25, y: 1e300) == nil)
    }
}
