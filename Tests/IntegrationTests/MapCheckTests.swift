import Foundation
import Testing

@testable import TesseraCore
@testable import TestSupport

/// `run --check N`: the map against the exact patch classifier at sampled pixels.
@Suite("--check", .serialized)
struct MapCheckTests {
    @Test("an exact net: no deviation at any sampled pixel, every decision the same")
    func exactNet() throws {
        let group = try ProcessGroup("check-exact")
        defer { group.stop() }
        let root = TestPaths.packageRoot.path
        let out = group.directory + "/out"
        let (s, l) = try SlideMapTests.coordinator(
            group,
            [
                "run", "--in-process", "--model", root + "/models/demo/deploy.prototxt",
                "--weights", root + "/models/demo/nuclei32.caffemodel", "--mean", "134,151,171", "--scale", "0.015625",
                "--mode", "dense", "--tile", "96", "--outputs", "npy", "--check", "30", "--out", out,
                root + "/examples/ihc.png",
            ], log: "run")
        #expect(s == 0, "\(l)")
        let report = try SlideMapTests.python(
            """
            import json, sys; r = json.load(open(sys.argv[1]))
            assert r['pixels'] == 30, r['pixels']
            assert r['max_abs_deviation'] < 1e-5, r['max_abs_deviation']
            assert r['argmax_agreement'] == 1.0
            print('ok')
            """, [out + "/ihc.check.json"])
        #expect(report.contains("ok"), "\(report)")
    }

    @Test("a net that pads: the report equals an independent comparison of the dense and naive maps")
    func paddedNet() throws {
        let group = try ProcessGroup("check-padded")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 48, width: 60)
        let model = ClusterFixture.modelFlags + ["--outputs", "npy", "--tile", "24"]
        let (s1, l1) = try SlideMapTests.coordinator(
            group,
            ["run"] + model + [
                "--mode", "naive", "--check", "0", "--in-process",
                "--out", group.directory + "/naive", image,
            ],
            log: "naive")
        #expect(s1 == 0, "\(l1)")
        // Default for a net that is not exact: 256 samples, in this process (not the embedded cluster).
        let (s2, l2) = try SlideMapTests.coordinator(
            group,
            ["run"] + model + [
                "--mode", "dense",
                "--out", group.directory + "/dense", image,
            ],
            log: "dense")
        #expect(s2 == 0 && l2.contains("check against the exact classifier: 256 pixels"), "\(l2)")
        #expect(l2.contains("the net is not exact, so the map is checked"), "\(l2)")
        let verdict = try SlideMapTests.python(
            """
            import json, sys, numpy as np
            r = json.load(open(sys.argv[1])); naive = np.load(sys.argv[2]); dense = np.load(sys.argv[3])
            px = np.array(r['samples']['pixels']); ys, xs = px[:, 0], px[:, 1]
            a, b = dense[:, ys, xs].T, naive[:, ys, xs].T
            assert np.array_equal(np.array(r['samples']['map'], np.float32), a), 'map values differ from dense.npy'
            assert np.array_equal(np.array(r['samples']['classifier'], np.float32), b), 'classifier differs from naive'
            d = np.abs(a.astype(np.float64) - b.astype(np.float64))
            assert abs(d.max() - r['max_abs_deviation']) < 1e-7, (d.max(), r['max_abs_deviation'])
            assert abs(d.mean() - r['mean_abs_deviation']) < 1e-7, (d.mean(), r['mean_abs_deviation'])
            agree = float(np.mean(a.argmax(1) == b.argmax(1)))
            assert abs(agree - r['argmax_agreement']) < 1e-12, (agree, r['argmax_agreement'])
            assert d.max() > 0, 'a padded net should deviate somewhere'
            print('ok', d.max(), agree)
            """,
            [
                group.directory + "/dense/img.check.json", group.directory + "/naive/img.npy",
                group.directory + "/dense/img.npy",
            ])
        #expect(verdict.contains("ok"), "\(verdict)")
    }

    /// Docs/CLI audit 36 F13: `inspect --json` (and the check report) had camelCase keys beside
    /// `status --json`'s snake_case ones.
    @Test("inspect --json has snake_case keys, as status --json")
    func inspectKeys() throws {
        let group = try ProcessGroup("inspect-json")
        defer { group.stop() }
        let root = TestPaths.packageRoot.path
        let (s, l) = try SlideMapTests.coordinator(
            group,
            [
                "inspect", "--model", root + "/models/demo/deploy.prototxt",
                "--weights", root + "/models/demo/nuclei32.caffemodel", "--json",
            ], log: "inspect")
        #expect(s == 0, "\(l)")
        let json = try #require(l.firstIndex(of: "{").map { String(l[$0...]) })
        let keys = try SlideMapTests.python(
            """
            import json, sys, re
            r = json.loads(sys.argv[1])
            def walk(o):
                if isinstance(o, dict):
                    for k, v in o.items():
                        yield k
                        yield from walk(v)
                elif isinstance(o, list):
                    for v in o: yield from walk(v)
            bad = sorted({k for k in walk(r) if re.search('[A-Z]', k)})
            assert not bad, bad
            assert r['has_weights'] is True and r['input_channels'] == 3 and r['classes'] == 2, r.keys()
            assert r['layers'][0]['macs_per_patch'] > 0
            print('ok')
            """, [json])
        #expect(keys.contains("ok"), "\(keys)")
    }
}
