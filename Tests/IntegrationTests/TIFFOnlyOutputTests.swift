import Foundation
import Testing

@testable import TestSupport

/// `run --outputs tiff` without the zarr (verification audit 37 N4): the TIFF is the
/// same pyramid in the same `--dtype` as the one written beside a zarr, while the
/// `.npy` stays the exact float32 map, on both paths (embedded workers, in process).
@Suite("TIFF output without the zarr", .serialized)
struct TIFFOnlyOutputTests {
    @Test("--outputs npy,tiff --dtype uint8: a uint8 pyramidal TIFF equal to the zarr run's, and the exact .npy")
    func tiffWithoutZarr() throws {
        let group = try ProcessGroup("tiff-only")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 300, width: 600)
        let model = ClusterFixture.modelFlags + ["--mode", "dense", "--threads", "2", "--tile", "64", "--check", "0"]
        func run(_ name: String, _ extra: [String]) throws -> String {
            let (status, log) = try SlideMapTests.coordinator(
                group, ["run"] + model + extra + ["--out", group.directory + "/" + name, image], log: name)
            #expect(status == 0, "\(name): \(log)")
            return log
        }
        // The references: the zarr run's TIFF (from the uint8 zarr), and the exact map.
        _ = try run("zarr", ["--outputs", "zarr,tiff", "--dtype", "uint8"])
        _ = try run("exact", ["--outputs", "npy"])
        for (name, extra) in [("workers", [String]()), ("local", ["--in-process"])] {
            let log = try run(name, extra + ["--outputs", "npy,tiff", "--dtype", "uint8"])
            #expect(!log.contains("one page"), "\(name): the old notice: \(log)")
            let dir = group.directory + "/" + name
            #expect(
                SlideMapTests.bytes(dir + "/img.npy") == SlideMapTests.bytes(group.directory + "/exact/img.npy"),
                "\(name): the .npy is not the exact map")
            let left = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
            #expect(left == ["img.map.tiff", "img.npy"], "\(name): \(left)")
            let check = try SlideMapTests.python(
                """
                import sys, numpy as np, tifffile
                ref = tifffile.TiffFile(sys.argv[1]).series[0]
                got = tifffile.TiffFile(sys.argv[2]).series[0]
                assert len(ref.levels) == 3, len(ref.levels)
                assert len(got.levels) == len(ref.levels), (len(got.levels), len(ref.levels))
                for k, (r, g) in enumerate(zip(ref.levels, got.levels)):
                    a, b = r.asarray(), g.asarray()
                    assert b.dtype == np.uint8 and a.shape == b.shape, (k, b.dtype, a.shape, b.shape)
                    d = np.abs(a.astype(int) - b.astype(int)).max()
                    # Level 0 is the same quantised map; the levels above are means (of the exact
                    # values here, of the tiles' quantised ones past the tile in the zarr's).
                    assert d == 0 if k == 0 else d <= 1, (k, d)
                exact = np.load(sys.argv[3])
                q = np.round(np.clip(exact, 0, 1) * 255)
                assert np.abs(q - got.levels[0].asarray()).max() <= 1, 'level 0 is not the exact map quantised'
                print('ok', len(got.levels))
                """,
                [group.directory + "/zarr/img.map.tiff", dir + "/img.map.tiff", dir + "/img.npy"])
            #expect(check.contains("ok 3"), "\(name): \(check)")
        }
    }
}
