import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// A truncated copy of an OME pyramid passed `inspect-image` (user audit): its lost SubIFD levels and
/// the µm/px in its unreadable description looked like properties of the file, and `--mpp` said "the
/// file declares no resolution". Now the structure's notes say it is truncated, and refusals say so.
@Suite("Truncated slides are called truncated")
struct TruncatedSlideTests {
    /// Writes a 3-level OME pyramid (levels in SubIFDs, 0.25 µm/px) and copies of it cut to 90 % and 50 %.
    static func write(_ folder: String) throws {
        let (status, output) = try runCommand([
            "python3", "-c",
            """
            import sys, os, shutil, numpy as np, tifffile
            d = sys.argv[1]
            rng = np.random.default_rng(3)
            img = rng.integers(0, 255, (1200, 1000, 3), dtype=np.uint8)
            path = d + '/whole.ome.tif'
            with tifffile.TiffWriter(path, ome=True) as t:
                # A private tag, as scanners write them: libtiff warns of it, which is no damage.
                t.write(img, tile=(256, 256), photometric='rgb', compression='zlib', subifds=2,
                        metadata={'axes': 'YXS', 'PhysicalSizeX': 0.25, 'PhysicalSizeY': 0.25},
                        extratags=[(65000, 's', 0, 'scanner data', True)])
                for k in (2, 4):
                    t.write(img[::k, ::k].copy(), tile=(256, 256), photometric='rgb', compression='zlib',
                            subfiletype=1)
            n = os.path.getsize(path)
            for share in (90, 50):
                shutil.copy(path, f'{d}/cut{share}.ome.tif')
                open(f'{d}/cut{share}.ome.tif', 'r+b').truncate(n * share // 100)
            # Cut inside the last level's directory: it starts within the file but cannot be read.
            with tifffile.TiffFile(path) as f:
                last = max(f.pages[0].tags['SubIFDs'].value)
            shutil.copy(path, f'{d}/cutsubifd.ome.tif')
            open(f'{d}/cutsubifd.ome.tif', 'r+b').truncate(last + 20)
            """, folder,
        ])
        #expect(status == 0, "\(output)")
    }

    @Test("Cut copies: notes name the truncation; --mpp and --level refusals say the file looks damaged")
    func truncatedCopies() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("truncated-\(getpid())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Self.write(folder)
        // The whole file: three levels, µm/px, no note of damage.
        let whole = try TIFFRegionSource(
            path: folder + "/whole.ome.tif", level: nil, mpp: nil, cacheBytes: 1 << 20, maxHandles: 2)
        #expect(whole.levels.count == 3 && whole.levels[0].mpp == 0.25, "\(whole.levels)")
        #expect(!whole.notes.contains { $0.contains("truncated") || $0.contains("damaged") }, "\(whole.notes)")
        for share in [90, 50] {
            let path = "\(folder)/cut\(share).ome.tif"
            let source = try TIFFRegionSource(path: path, level: nil, mpp: nil, cacheBytes: 1 << 20, maxHandles: 2)
            let notes = source.notes.joined(separator: "\n")
            #expect(notes.contains("truncated: "), "\(share) %: \(notes)")
            if source.levels.count < 3 {
                #expect(notes.contains("levels (SubIFDs) start past the end of the file"), "\(share) %: \(notes)")
            }
            #expect(
                notes.contains("lie past the end of the file") || source.levels.count < 3,
                "\(share) %: \(notes)")
            // A refusal that owes to the damage says so (it said "the file declares no resolution").
            let error = #expect(throws: SlideError.self) {
                _ = try TIFFRegionSource(path: path, level: 2, mpp: nil, cacheBytes: 1 << 20, maxHandles: 2)
            }
            if source.levels.count < 3 {
                #expect(error?.description.contains("the file looks damaged") == true, "\(String(describing: error))")
            }
        }
        // A level whose directory is cut is named as unreadable (it vanished without a word).
        let cut = try TIFFRegionSource(
            path: folder + "/cutsubifd.ome.tif", level: nil, mpp: nil, cacheBytes: 1 << 20, maxHandles: 2)
        #expect(cut.levels.count == 2, "\(cut.levels)")
        #expect(
            cut.notes.contains { $0.contains("1 of the image's levels (SubIFDs) cannot be read") }, "\(cut.notes)")
        // The 50 % copy lost its description (µm/px) and its SubIFDs, as libtiff warned.
        let half = try TIFFRegionSource(
            path: folder + "/cut50.ome.tif", level: nil, mpp: nil, cacheBytes: 1 << 20, maxHandles: 2)
        #expect(half.levels.count == 1, "\(half.levels)")
        let error = #expect(throws: SlideError.self) {
            _ = try TIFFRegionSource(
                path: folder + "/cut50.ome.tif", level: nil, mpp: 0.5, cacheBytes: 1 << 20, maxHandles: 2)
        }
        #expect(error?.description.contains("the file looks damaged") == true, "\(String(describing: error))")
    }

    /// Hostile-input audit: a TileOffsets tag of the wrong count is ignored by libtiff, every offset reads
    /// as 0, and an uncompressed file's header was decoded as its tiles (rc 0, no warning).
    @Test("Tile offsets libtiff ignored: a note of damage, and reading a tile is refused, naming it")
    func ignoredTileOffsets() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("offsets-\(getpid())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (status, output) = try runCommand([
            "python3", "-c",
            """
            import sys, struct, numpy as np, tifffile
            path = sys.argv[1] + '/raw.tif'
            img = np.random.default_rng(4).integers(0, 255, (96, 96, 3), dtype=np.uint8)
            tifffile.imwrite(path, img, tile=(32, 32), photometric='rgb', compression=None)
            with tifffile.TiffFile(path) as f:
                entry = f.pages[0].tags['TileOffsets'].offset
            with open(path, 'r+b') as f:
                f.seek(entry + 4)
                f.write(struct.pack('<I', 0))  # the tag's count
            """, folder,
        ])
        #expect(status == 0, "\(output)")
        let source = try TIFFRegionSource(
            path: folder + "/raw.tif", level: nil, mpp: nil, cacheBytes: 1 << 20, maxHandles: 2)
        #expect(
            source.notes.contains { $0.contains("Incorrect count") && $0.contains("TileOffsets") }, "\(source.notes)")
        let error = #expect(throws: SlideError.self) {
            _ = try source.readRegion(PixelRect(y: 0, x: 0, height: 32, width: 32))
        }
        #expect(error?.description.contains("tile 0") == true, "\(String(describing: error))")
        #expect(error?.description.contains("inside the file's header") == true, "\(String(describing: error))")
    }
}
