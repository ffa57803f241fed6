import Foundation
import Testing

@testable import TestSupport

/// Memory audit 50: `run --in-process` decoded the PNG it maps into memory (a 6000² RGB PNG: 190 MiB peak at
/// `--tile 256`, 90 MiB for a 1000² one). It is now decoded a band at a time into a file without a name in
/// `TMPDIR`, as a worker does, and the map's tiles read from there.
@Suite("run --in-process: a PNG decoded to the temporary folder")
struct InProcessPNGTests {
    /// Runs `run --in-process` on each PNG with `TMPDIR` set; prints "rc peak-KiB" per run (each run its own
    /// python, so `RUSAGE_CHILDREN` is that run's peak) and the log of the last.
    static let measure = """
        import resource, subprocess, sys
        r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        print(r.stderr[-3000:])
        """

    @Test("the peak does not grow with the image, nothing is left in TMPDIR, and the fallback maps the same")
    func decodedToDisk() throws {
        let group = try ProcessGroup("in-process-png")
        defer { group.stop() }
        let dir = group.directory
        // Glass with a stained square: --tissue computes a few tiles; the PNG is small, its samples are not
        // (5000² × 3 = 72 MiB).
        _ = try SlideMapTests.python(
            """
            import sys, numpy as np, PIL.Image as I
            for size, name in ((5000, 'big'), (1000, 'small')):
                a = np.full((size, size, 3), 235, np.uint8); a[200:520, 300:620] = (120, 60, 140)
                I.fromarray(a).save(sys.argv[1] + '/' + name + '.png')
            """, [dir])
        let scratch = dir + "/tmp"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: false)
        let root = TestPaths.packageRoot.path
        func run(_ image: String, out: String, tmp: String) throws -> (status: Int, peak: Int, log: String) {
            let (status, text) = try runCommand(
                [
                    "TMPDIR=\(tmp)", "python3", "-c", Self.measure, ProcessGroup.binary("tessera-coordinator"), "run",
                    "--in-process", "--model", root + "/models/demo/deploy.prototxt", "--weights",
                    root + "/models/demo/nuclei32.caffemodel", "--mean", "134,151,171", "--scale", "0.015625",
                    "--mode", "dense", "--tissue", "--tile", "256", "--outputs", "zarr", "--dtype", "uint8",
                    "--out", dir + "/" + out, dir + "/" + image + ".png",
                ])
            #expect(status == 0, "\(text)")
            let fields = text.split(separator: "\n").first?.split(separator: " ").compactMap { Int($0) } ?? []
            try #require(fields.count == 2, "\(text)")
            return (fields[0], fields[1] * 1024, text)
        }
        let small = try run("small", out: "small", tmp: scratch)
        let big = try run("big", out: "disk", tmp: scratch)
        #expect(small.status == 0 && big.status == 0, "\(small.log)\n\(big.log)")
        // The decoded image is 72 MiB; what the peak may grow by is well under it.
        #expect(
            big.peak - small.peak < 24 << 20,
            "peak \(big.peak >> 20) MiB for 5000², \(small.peak >> 20) MiB for 1000²\n\(big.log)")
        #expect(!big.log.contains("held in memory"), "\(big.log)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).isEmpty)

        // A TMPDIR that cannot take it: decoded in memory, said, the same map.
        let fallback = try run("big", out: "memory", tmp: dir + "/missing")
        #expect(fallback.status == 0, "\(fallback.log)")
        #expect(
            fallback.log.contains("held in memory instead") && fallback.log.contains("big.png"), "\(fallback.log)")
        let same = try SlideMapTests.python(
            """
            import sys, zarr, numpy as np
            a, b = zarr.open(sys.argv[1] + '/disk/big.zarr')['0'][:], zarr.open(sys.argv[1] + '/memory/big.zarr')['0'][:]
            assert a.shape == b.shape == (2, 5000, 5000), (a.shape, b.shape)
            assert np.array_equal(a, b), 'maps differ'
            assert a[:, 300:500, 400:600].any(), 'no map in the stained square'
            print('same')
            """, [dir])
        #expect(same.contains("same"), "\(same)")
    }
}
