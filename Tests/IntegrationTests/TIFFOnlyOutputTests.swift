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
        _ = try run("exact", ["--outputs", "npy,zarr"])
        // export --dtype: the float32 zarr's TIFF in uint8, as a TIFF-only run writes it; a uint8 map is not converted.
        var (status, log) = try SlideMapTests.coordinator(
            group,
            [
                "export", group.directory + "/exact/img.zarr", "--outputs", "tiff", "--dtype", "uint8", "--out",
                group.directory + "/exported",
            ], log: "export")
        #expect(status == 0, "\(log)")
        (status, log) = try SlideMapTests.coordinator(
            group,
            [
                "export", group.directory + "/zarr/img.zarr", "--outputs", "tiff", "--dtype", "float16", "--out",
                group.directory + "/refused",
            ], log: "refused")
        #expect(status == 1 && log.contains("only a float32 map's exact values are converted"), "\(log)")
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
                e = tifffile.TiffFile(sys.argv[4]).series[0]
                assert len(e.levels) == len(got.levels)
                for k, (a, b) in enumerate(zip(e.levels, got.levels)):
                    assert np.array_equal(a.asarray(), b.asarray()), ('export --dtype differs at level', k)
                exact = np.load(sys.argv[3])
                q = np.round(np.clip(exact, 0, 1) * 255)
                assert np.abs(q - got.levels[0].asarray()).max() <= 1, 'level 0 is not the exact map quantised'
                print('ok', len(got.levels))
                """,
                [
                    group.directory + "/zarr/img.map.tiff", dir + "/img.map.tiff", dir + "/img.npy",
                    group.directory + "/exported/img.map.tiff",
                ])
            #expect(check.contains("ok 3"), "\(name): \(check)")
        }
    }

    /// Whole-slide audit 35 F8: the TIFF held no class names, no quantisation scale and no record of the
    /// tiles not computed, whose 0 in an integer map reads as a computed probability of 0.
    @Test("The TIFF's ImageDescription records the planes, the sample scale and the not-computed tiles of the zarr")
    func description() throws {
        let group = try ProcessGroup("tiff-description")
        defer { group.stop() }
        let png = group.directory + "/islands.png"
        try SlideMapTests.writeIslands(png)
        let model = ClusterFixture.modelFlags + ["--mode", "dense", "--tile", "32", "--threads", "2", "--check", "0"]
        for (name, extra) in [("zarr", ["--outputs", "zarr,tiff,npy"]), ("tiff", ["--outputs", "tiff"])] {
            let (status, log) = try SlideMapTests.coordinator(
                group,
                ["run"] + model + extra + [
                    "--tissue", "--dtype", "uint8", "--keep-classes", "1", "--out", group.directory + "/" + name, png,
                ], log: name)
            #expect(status == 0, "\(name): \(log)")
        }
        let check = try SlideMapTests.python(
            """
            import sys, json, base64, numpy as np, tifffile, zarr
            z = zarr.open(sys.argv[1], mode='r').attrs['tessera']
            assert z['values'] == 'probability * 255, rounded', z  # the zarr says it too (output audit 39 F7)
            for path in sys.argv[2:]:
                with tifffile.TiffFile(path) as f:
                    d = json.loads(f.pages[0].description)['tessera']
                    assert len(f.series) == 1 and len(f.series[0].levels) == d['levels'] == 2, (path, d)
                    assert f.series[0].levels[0].asarray().dtype == np.uint8
                assert d['planes'] == ['class 1'] and d['kept_classes'] == [1] and d['net_classes'] == 3, d
                assert d['values'] == 'probability * 255, rounded' and d['fill_value'] == '0', d
                assert d['dtype'] == 'uint8' and d['height'] == 256 and d['width'] == 320, d
                assert d['not_computed'] == z['not_computed'] and d['not_computed']['tiles'] > 0, (d, z)
                assert 'shape' not in d and 'compression' not in d, d
            # The .npy of the uint8 map (output audit 39 F1): NaN exactly in the tiles not computed, v / 255 elsewhere.
            g = zarr.open(sys.argv[1], mode='r'); q = g['0'][:]; n = np.load(sys.argv[1][:-5] + '.npy')
            r = z['not_computed']; t = r['tile_size']
            bits = np.unpackbits(np.frombuffer(base64.b64decode(r['bits']), np.uint8))[:r['rows'] * r['columns']]
            skipped = np.kron(bits.reshape(r['rows'], r['columns']), np.ones((t, t), np.uint8))[:256, :320] == 1
            assert n.dtype == np.float32 and n.shape == q.shape, (n.dtype, n.shape)
            assert np.isnan(n[:, skipped]).all() and not np.isnan(n[:, ~skipped]).any(), 'NaN is not the skipped tiles'
            assert np.array_equal(n[:, ~skipped], q[:, ~skipped] / np.float32(255)), 'computed values differ'
            print('ok')
            """,
            [
                group.directory + "/zarr/islands.zarr", group.directory + "/zarr/islands.map.tiff",
                group.directory + "/tiff/islands.map.tiff",
            ])
        #expect(check.contains("ok"), "\(check)")
    }
}
