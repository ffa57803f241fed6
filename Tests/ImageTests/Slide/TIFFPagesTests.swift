import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// Found by a user audit: an OME-TIFF's second image (or any later page of the same shape)
/// was taken for a pyramid level, so `--tissue` judged the slide by another image; and gray
/// TIFFs with several samples per pixel were mapped from their first sample, silently.
@Suite("TIFF pages: which are levels, and samples that would be dropped")
struct TIFFPagesTests {
    static func write(_ script: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-pages-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try run(["python3", "-c", "import numpy as np, tifffile, sys\nd = sys.argv[1]\n" + script, dir.path])
        return dir.path
    }

    @Test("Only reduced-resolution pages (and SubIFDs) are levels; another image of the same shape is not")
    func levelsAreFlaggedPages() throws {
        let dir = try Self.write(
            """
            a = np.random.default_rng(1).integers(0, 255, (512, 512, 3), dtype=np.uint8)
            o = dict(tile=(128, 128), compression='zlib', photometric='rgb')
            with tifffile.TiffWriter(d + '/two_series.ome.tif', ome=True) as w:
                w.write(a, metadata={'axes': 'YXS', 'Name': 'slide'}, **o)
                w.write(a[:256, :256].copy(), metadata={'axes': 'YXS', 'Name': 'macro'}, **o)
            with tifffile.TiffWriter(d + '/two_pages.tif') as w:
                w.write(a, **o)
                w.write(a[::2, ::2].copy(), **o)
            with tifffile.TiffWriter(d + '/flagged.tif') as w:
                w.write(a, **o)
                w.write(a[::2, ::2].copy(), subfiletype=1, **o)
            with tifffile.TiffWriter(d + '/subifds.ome.tif', ome=True) as w:
                w.write(a, subifds=1, metadata={'axes': 'YXS'}, **o)
                w.write(a[::2, ::2].copy(), **o)
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["two_series.ome.tif", "two_pages.tif"] {
            let source = try TIFFRegionSource(path: dir + "/" + name)
            #expect(source.levels.count == 1, "\(name): \(source.levels)")
            #expect(slideError { _ = try TIFFRegionSource(path: dir + "/" + name, level: 1) }?.kind == .noSuchLevel(1))
        }
        for name in ["flagged.tif", "subifds.ome.tif"] {
            let source = try TIFFRegionSource(path: dir + "/" + name)
            #expect(source.levels.map(\.width) == [512, 256], "\(name): \(source.levels)")
        }
    }

    @Test("Gray with several samples per pixel is refused, naming them; gray + alpha and RGBA are read")
    func undeclaredSamplesRefused() throws {
        let dir = try Self.write(
            """
            rng = np.random.default_rng(2)
            o = dict(tile=(64, 64), compression='zlib')
            tifffile.imwrite(d + '/gray3.tif', rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), photometric='minisblack', planarconfig='contig', **o)
            tifffile.imwrite(d + '/gray2_planar.tif', rng.integers(0, 255, (2, 128, 128), dtype=np.uint8), photometric='minisblack', planarconfig='separate', **o)
            tifffile.imwrite(d + '/gray_alpha.tif', rng.integers(0, 255, (128, 128, 2), dtype=np.uint8), photometric='minisblack', extrasamples=['unassalpha'], **o)
            tifffile.imwrite(d + '/rgba.tif', rng.integers(0, 255, (128, 128, 4), dtype=np.uint8), photometric='rgb', extrasamples=['unassalpha'], **o)
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, samples) in [("gray3.tif", 3), ("gray2_planar.tif", 2)] {
            let error = slideError { _ = try TIFFRegionSource(path: dir + "/" + name) }
            #expect(
                error?.kind == .unsupportedSampleFormat("\(samples) samples per pixel"),
                "\(name): \(String(describing: error))")
            #expect(
                error?.description.contains(name) == true && error?.description.contains("one channel per file") == true
            )
        }
        #expect(try TIFFRegionSource(path: dir + "/gray_alpha.tif").channels == 1)
        #expect(try TIFFRegionSource(path: dir + "/rgba.tif").channels == 3)
    }
}

extension TIFFPagesTests {
    /// Found by a user audit: `MPP = 1e308` became infinite at level 1 and failed the job (with an
    /// empty file name), or failed it after the whole map was computed, writing its metadata.
    @Test("An implausible µm/px in the file is ignored; a plausible one is read")
    func implausibleMPPIgnored() throws {
        let dir = try Self.write(
            """
            a = np.random.default_rng(3).integers(0, 255, (256, 256, 3), dtype=np.uint8)
            for name, mpp in [('huge', '1e308'), ('tiny', '1e-9'), ('sane', '0.25')]:
                with tifffile.TiffWriter(d + '/' + name + '.tif') as w:
                    w.write(a, tile=(64, 64), photometric='rgb', description='Aperio Image Library v12|AppMag = 40|MPP = ' + mpp)
                    w.write(a[::2, ::2].copy(), tile=(64, 64), photometric='rgb', subfiletype=1)
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["huge", "tiny"] {
            let source = try TIFFRegionSource(path: dir + "/\(name).tif")
            #expect(source.levels.count == 2 && source.levels.allSatisfy { $0.mpp == nil }, "\(name): \(source.levels)")
        }
        #expect(try TIFFRegionSource(path: dir + "/sane.tif").levels.map(\.mpp) == [0.25, 0.5])
    }
}

extension TIFFPagesTests {
    /// Found by a user audit: an uncompressed tile whose byte count was cut short with the file
    /// was a storage "read failed" (so --corrupt-tiles skip did not apply, and the cluster retried).
    @Test("An uncompressed tile cut off by the end of the file is truncated data, not a failed read")
    func shortUncompressedTileIsTruncated() throws {
        let dir = try Self.write(
            """
            import struct
            a = np.random.default_rng(4).integers(0, 255, (256, 256, 3), dtype=np.uint8)
            p = d + '/short.tif'
            tifffile.imwrite(p, a, tile=(256, 256), photometric='rgb')
            with tifffile.TiffFile(p) as f:
                tag = f.pages[0].tags['TileByteCounts']
                offset = f.pages[0].dataoffsets[0]
                fmt = {3: '<H', 4: '<I', 16: '<Q'}[tag.dtype]
            data = bytearray(open(p, 'rb').read())
            data[tag.valueoffset:tag.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, 49152)
            open(p, 'wb').write(bytes(data[:offset + 49152]))
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try TIFFRegionSource(path: dir + "/short.tif")
        let error = slideError { _ = try source.readRegion(PixelRect(y: 0, x: 0, height: 8, width: 8)) }
        #expect(error?.kind == .truncated && error?.isCorruptData == true, "\(String(describing: error))")
    }
}

extension TIFFPagesTests {
    /// Found by a user audit: an OME-TIFF of 3 fluorescence channels, one page each, mapped
    /// channel 0 as a gray image, silently.
    @Test("An OME-TIFF with channels on separate pages is refused; RGB in one page is read")
    func omeChannelPlanesRefused() throws {
        let dir = try Self.write(
            """
            rng = np.random.default_rng(5)
            tifffile.imwrite(d + '/cyx.ome.tif', rng.integers(0, 255, (3, 128, 128), dtype=np.uint8), tile=(64, 64), metadata={'axes': 'CYX'})
            tifffile.imwrite(d + '/rgb.ome.tif', rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), tile=(64, 64), photometric='rgb', metadata={'axes': 'YXS'})
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = slideError { _ = try TIFFRegionSource(path: dir + "/cyx.ome.tif") }
        #expect(error?.kind == .unsupportedSampleFormat("3 channel planes"), "\(String(describing: error))")
        #expect(try TIFFRegionSource(path: dir + "/rgb.ome.tif").channels == 3)
    }
}

extension TIFFPagesTests {
    /// Found by a user audit: a thumbnail stored as directory 0 was mapped with no word about
    /// the large image after it, and an OME Z-stack's first plane likewise.
    @Test(
        "A larger image after directory 0, and OME Z planes, are noted (run logs the notes, inspect-image prints them)")
    func mappedImageNotes() throws {
        let dir = try Self.write(
            """
            rng = np.random.default_rng(6)
            big = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
            with tifffile.TiffWriter(d + '/thumb_first.tif') as w:
                w.write(big[::4, ::4].copy(), photometric='rgb')
                w.write(big, tile=(64, 64), photometric='rgb')
            tifffile.imwrite(d + '/zstack.ome.tif', rng.integers(0, 255, (2, 64, 64), dtype=np.uint8), tile=(32, 32), metadata={'axes': 'ZYX'})
            tifffile.imwrite(d + '/plain.tif', big, tile=(64, 64), photometric='rgb')
            """)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let thumb = try TIFFRegionSource(path: dir + "/thumb_first.tif")
        // The larger image is image 2 of the file: the note says how to map it.
        #expect(
            thumb.width == 100 && thumb.notes.count == 2
                && thumb.notes[0].contains("larger image (400×300, directory 1, image 2)")
                && thumb.notes[0].contains("--image 2 maps it")
                && thumb.notes[1] == "image 1 of 2 mapped; --image N picks another", "\(thumb.notes)")
        #expect(
            try SlideInfo.inspect(path: dir + "/thumb_first.tif").summary.contains(
                "note: the file holds a larger image"))
        let z = try TIFFRegionSource(path: dir + "/zstack.ome.tif")
        #expect(z.notes.contains { $0.contains("2 Z planes") }, "\(z.notes)")
        #expect(try TIFFRegionSource(path: dir + "/plain.tif").notes.isEmpty)
    }
}
