import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TesseraPlan
@testable import TestSupport

/// Slides in, chunked maps out, through the built `tessera-coordinator run`: the
/// OME-Zarr map read by PyPI `zarr` equals the `.npy` of the cluster path; the same
/// pixels as PNG, tiled TIFF (libtiff) and SVS (OpenSlide) give the same map;
/// tissue detection skips background; bad files fail with their name.
@Suite("Slides and chunked maps", .serialized)
struct SlideMapTests {
    static let makeSlide = TestPaths.packageRoot.appendingPathComponent("tools/make-test-slide.py").path

    /// Runs `tessera-coordinator ARGS`; returns its exit status and output.
    @discardableResult
    static func coordinator(_ group: ProcessGroup, _ arguments: [String], log: String) throws -> (Int32, String) {
        let p = try group.start("tessera-coordinator", arguments, log: log)
        let status = group.wait(p, timeout: 300) ?? -1
        return (status, group.log(log))
    }

    /// Runs python3 with `script`; returns stdout+stderr, expecting exit 0.
    static func python(_ script: String, _ arguments: [String] = []) throws -> String {
        let (status, text) = try runCommand(["python3", "-c", script] + arguments)
        #expect(status == 0, "python failed: \(text)")
        return text
    }

    static func bytes(_ path: String) -> [UInt8]? { ClusterFixture.bytes(path) }

    /// A 320×256 PNG: white background (glass) with two stained islands, at rows 32–95, columns 40–119 and
    /// rows 160–223, columns 200–289.
    static func writeIslands(_ png: String) throws {
        _ = try python(
            """
            import sys, numpy as np, imagecodecs
            a = np.full((256, 320, 3), 245, np.uint8)
            a[32:96, 40:120] = (170, 60, 140); a[160:224, 200:290] = (120, 40, 150)
            open(sys.argv[1], 'wb').write(imagecodecs.png_encode(a))
            """, [png])
    }

    @Test(
        "PNG: the OME-Zarr float32 map (zarr) equals the cluster path's .npy bit for bit, tiled or not",
        arguments: MapMode.allCases)
    func zarrEqualsClusterMap(mode: MapMode) throws {
        let group = try ProcessGroup("zarr-\(mode.rawValue)")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: mode == .naive ? 40 : 90, width: mode == .naive ? 52 : 120)
        let model = ClusterFixture.modelFlags + ["--mode", mode.rawValue, "--threads", "2"]
        // The reference: the cluster path (an embedded coordinator and one worker), as before this change.
        let (status, log) = try Self.coordinator(
            group,
            ["run"] + model + [
                "--outputs", "npy", "--tile", "24", "--check", "0",
                "--out", group.directory + "/ref", image,
            ],
            log: "ref")
        #expect(status == 0, "\(log)")
        #expect(!log.contains("mapping in this process"), "the reference did not take the cluster path: \(log)")
        let reference = try #require(Self.bytes(group.directory + "/ref/img.npy"))
        for tile in ["24", "32", "64"] {
            let out = group.directory + "/t\(tile)"
            let (s, l) = try Self.coordinator(
                group,
                ["run", "--in-process"] + model
                    + ["--outputs", "npy,zarr,tiff", "--tile", tile, "--out", out, image],
                log: "t\(tile)")
            #expect(s == 0, "\(l)")
            #expect(Self.bytes(out + "/img.npy") == reference, "tile \(tile): .npy differs from the cluster path's")
            let check = try Self.python(
                """
                import sys, numpy as np, zarr, tifffile
                ref = np.load(sys.argv[1]); z = zarr.open(sys.argv[2], mode='r')
                a = z['0'][:]
                assert a.dtype == np.float32 and a.shape == ref.shape, (a.dtype, a.shape, ref.shape)
                assert np.array_equal(a.view(np.uint32), ref.view(np.uint32)), 'zarr level 0 differs'
                t = tifffile.TiffFile(sys.argv[3]).series[0]
                assert np.array_equal(t.levels[0].asarray().view(np.uint32), ref.view(np.uint32)), 'tiff differs'
                print('levels', len(z.attrs['multiscales'][0]['datasets']), len(t.levels))
                """, [group.directory + "/ref/img.npy", out + "/img.zarr", out + "/img.map.tiff"])
            #expect(check.contains("levels"), "\(check)")
        }
    }

    @Test(
        "--keep-classes 0,2: the workers' and the in-process store keep only those planes of the 3-class net, equal to the full map's; labels and absent classes are refused before mapping"
    )
    func keepClasses() throws {
        let group = try ProcessGroup("keep-classes")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 90, width: 120)
        let model = ClusterFixture.modelFlags + ["--mode", "dense", "--threads", "2", "--tile", "32", "--check", "0"]
        func run(_ name: String, _ extra: [String]) throws -> (Int32, String) {
            try Self.coordinator(
                group, ["run"] + model + extra + ["--out", group.directory + "/" + name, image], log: name)
        }
        var (s, l) = try run("full", ["--outputs", "npy,prob,zarr", "--dtype", "uint8"])
        #expect(s == 0, "\(l)")
        for (name, extra) in [("workers", [String]()), ("local", ["--in-process"])] {
            (s, l) = try run(name, extra + ["--keep-classes", "0,2", "--outputs", "npy,prob,zarr", "--dtype", "uint8"])
            #expect(s == 0, "\(name): \(l)")
            let dir = group.directory + "/" + name
            let check = try Self.python(
                """
                import sys, numpy as np, zarr
                full, kept = sys.argv[1], sys.argv[2]
                z = zarr.open(kept + '/img.zarr', mode='r')
                a = z['0'][:]; b = zarr.open(full + '/img.zarr', mode='r')['0'][:]
                assert a.shape == (2,) + b.shape[1:], (a.shape, b.shape)
                assert np.array_equal(a, b[[0, 2]]), 'the kept planes differ from classes 0 and 2 of the full map'
                t = z.attrs['tessera']
                assert t['kept_classes'] == [0, 2] and t['net_classes'] == 3 and t['classes'] == 2, t
                labels = [c['label'] for c in z.attrs['omero']['channels']]
                assert labels == ['class 0', 'class 2'], labels
                n = np.load(kept + '/img.npy')
                assert n.shape == a.shape and np.array_equal(n, np.load(full + '/img.npy')[[0, 2]]), 'npy differs'
                print('ok', a.shape)
                """, [group.directory + "/full", dir])
            #expect(check.contains("ok (2, 90, 120)"), "\(name): \(check)")
            for c in [0, 2] {
                #expect(
                    Self.bytes(dir + "/img.prob-\(c).png") == Self.bytes(group.directory + "/full/img.prob-\(c).png"),
                    "\(name): the probability PNG of kept class \(c) differs")
            }
            #expect(!FileManager.default.fileExists(atPath: dir + "/img.prob-1.png"), "\(name): class 1 is not kept")
        }
        // A kept set that does not fit the net is the model's matter: exit status 1 with no usage text, as for
        // --classes (user review F11: it exited 64); a malformed list is the command line's: 64 with the usage.
        (s, l) = try run("labels", ["--keep-classes", "1", "--outputs", "labels"])
        #expect(s == 1 && l.contains("labels and overlays need every class"), "\(l)")
        (s, l) = try run("bad", ["--keep-classes", "7"])
        #expect(s == 1 && l.contains("class 7 does not exist (the net has 3 classes)"), "\(l)")
        #expect(!l.contains("--help"), "no usage text for a class the net lacks: \(l)")
        (s, l) = try run("twice", ["--keep-classes", "1,1"])  // a typo, not "every class"
        #expect(s == 64 && l.contains("class 1 is given twice") && l.contains("--help"), "\(l)")
        // Descending: the planes would be written in the net's order, not the one asked (numerics audit 33).
        (s, l) = try run("descending", ["--keep-classes", "2,0"])
        #expect(s == 64 && l.contains("give them in ascending order (0,2)"), "\(l)")
        #expect(!FileManager.default.fileExists(atPath: group.directory + "/labels/img.zarr"))
    }

    @Test("the same pixels as PNG, tiled TIFF and SVS (OpenSlide) give bit-identical maps; --mpp picks the level")
    func formatsAgree() throws {
        let group = try ProcessGroup("formats")
        defer { group.stop() }
        let png = group.directory + "/pixels.png"
        try ClusterFixture.writeImage(to: png, height: 200, width: 260, seed: 5)
        _ = try Self.python(
            "import subprocess, sys; subprocess.run([sys.executable] + sys.argv[1:], check=True)",
            [Self.makeSlide, png, group.directory])
        let model =
            ClusterFixture.modelFlags + [
                "--mode", "dense", "--tile", "64", "--threads", "2",
                "--in-process", "--outputs", "npy",
            ]
        func map(_ name: String, _ extra: [String] = []) throws -> [UInt8]? {
            let out = group.directory + "/out-" + name
            let (s, l) = try Self.coordinator(
                group,
                ["run"] + model + extra + [
                    "--out", out,
                    group.directory + "/" + name,
                ],
                log: "map-" + name)
            #expect(s == 0, "\(name): \(l)")
            return try FileManager.default.contentsOfDirectory(atPath: out).first { $0.hasSuffix(".npy") }
                .flatMap { Self.bytes(out + "/" + $0) }
        }
        let fromPNG = try #require(try map("pixels.png"))
        #expect(try map("tiled.tif") == fromPNG, "libtiff's map differs from the PNG's")
        let decoded = try #require(try map("slide-decoded.png"))
        #expect(try map("slide.svs") == decoded, "OpenSlide's map differs from the map of its decoded pixels")
        // --mpp 1.0: the ¼ level (0.25 µm/px × 4), 50×65 pixels.
        let out = group.directory + "/mpp"
        let (s, l) = try Self.coordinator(
            group,
            ["run"] + model + [
                "--mpp", "1.0", "--out", out,
                group.directory + "/slide.svs",
            ], log: "mpp")
        #expect(s == 0 && l.contains("level 1 of 2") && l.contains("1.000 µm/px"), "\(l)")
        let shape = try Self.python("import numpy as np, sys; print(np.load(sys.argv[1]).shape)", [out + "/slide.npy"])
        #expect(shape.contains("50, 65"), "\(shape)")
    }

    @Test("--tissue: background tiles are not computed, read as NaN in the zarr map, and are counted")
    func tissue() throws {
        let group = try ProcessGroup("tissue")
        defer { group.stop() }
        let png = group.directory + "/islands.png"
        try Self.writeIslands(png)
        let model = ClusterFixture.modelFlags + ["--mode", "dense", "--tile", "32", "--threads", "2", "--in-process"]
        let out = group.directory + "/out"
        let (s, l) = try Self.coordinator(
            group,
            ["run"] + model + [
                "--tissue", "--outputs", "zarr,npy",
                "--out", out, png,
            ], log: "tissue")
        #expect(s == 0, "\(l)")
        let skipped = l.range(of: #"(\d+) computed, (\d+) skipped"#, options: .regularExpression).map { String(l[$0]) }
        #expect(skipped != nil && !(skipped!.hasSuffix(" 0 skipped")), "\(l)")
        let (s2, l2) = try Self.coordinator(
            group, ["run"] + model + ["--outputs", "npy", "--out", out + "-all", png],
            log: "all")
        #expect(s2 == 0, "\(l2)")
        let check = try Self.python(
            """
            import sys, numpy as np, zarr
            z = zarr.open(sys.argv[1], mode='r')['0'][:]; full = np.load(sys.argv[2])
            nan = np.isnan(z[0])
            assert nan.any() and not nan.all(), 'expected some skipped tiles'
            assert not nan[32:96, 40:120].any() and not nan[160:224, 200:290].any(), 'an island was skipped'
            assert np.array_equal(z[:, ~nan], full[:, ~nan]), 'computed tiles differ from the full map'
            print('skipped fraction', nan.mean())
            """, [out + "/islands.zarr", out + "-all/islands.npy"])
        #expect(check.contains("skipped fraction"), "\(check)")

        // The embedded cluster (a shared job) skips the same tiles, gives the same map, and
        // says how many it skipped. It used to refuse a PNG: "no level 0".
        let counts = l.firstMatch(of: #/(\d+) computed, (\d+) skipped/#).map { (Int($0.1)!, Int($0.2)!) }
        let embedded =
            ClusterFixture.modelFlags + ["--mode", "dense", "--tile", "32", "--threads", "1", "--check", "0"]
        let (s3, l3) = try Self.coordinator(
            group, ["run"] + embedded + ["--tissue", "--outputs", "zarr", "--out", out + "-embedded", png],
            log: "embedded")
        #expect(s3 == 0, "\(l3)")
        if let (computed, skipped) = counts {
            #expect(
                l3.contains("\(skipped) of \(computed + skipped) tiles hold none") && l3.contains("tiles=\(computed)"),
                "\(l3)")
        }
        let same = try Self.python(
            """
            import sys, numpy as np, zarr
            a = zarr.open(sys.argv[1], mode='r')['0'][:]; b = zarr.open(sys.argv[2], mode='r')['0'][:]
            assert np.array_equal(a, b, equal_nan=True), 'the embedded map differs from the in-process one'
            print('same', a.shape)
            """, [out + "/islands.zarr", out + "-embedded/islands.zarr"])
        #expect(same.contains("same"), "\(same)")
        // Both record which tiles hold no computed value (user audit: in an integer map their fill, 0,
        // reads as a probability of 0): tessera.not_computed's bits are the NaN tiles, tile by tile.
        let recorded = try Self.python(
            """
            import sys, base64, numpy as np, zarr
            for path in sys.argv[1:]:
                g = zarr.open(path, mode='r'); z = g['0'][:]
                r = g.attrs['tessera']['not_computed']; t = r['tile_size']
                bits = np.unpackbits(np.frombuffer(base64.b64decode(r['bits']), np.uint8))[:r['rows'] * r['columns']]
                flags = bits.reshape(r['rows'], r['columns']).astype(bool)
                nan = np.isnan(z[0])
                tiles = np.array([[nan[y:y + t, x:x + t].all() for x in range(0, nan.shape[1], t)]
                                  for y in range(0, nan.shape[0], t)])
                assert np.array_equal(flags, tiles), (path, flags.sum(), tiles.sum())
                assert r['tiles'] == flags.sum() > 0
            print('recorded', r['tiles'])
            """, [out + "/islands.zarr", out + "-embedded/islands.zarr"])
        #expect(recorded.contains("recorded"), "\(recorded)")
    }

    /// User audit: one damaged slide in a batch left the slides after it unmapped.
    @Test(
        "--keep-going: the images after a failed one are mapped, and the run exits 1 naming it",
        arguments: [true, false])
    func keepGoing(inProcess: Bool) throws {
        let group = try ProcessGroup("keep-going")
        defer { group.stop() }
        let (first, bad, last) = (group.directory + "/a.png", group.directory + "/b.tif", group.directory + "/c.png")
        try ClusterFixture.writeImage(to: first, height: 40, width: 50)
        try ClusterFixture.writeImage(to: last, height: 40, width: 50)
        try Data("II*\0 not really a TIFF".utf8).write(to: URL(fileURLWithPath: bad))
        let base =
            ["run"] + ClusterFixture.modelFlags + [
                "--mode", "dense", "--tile", "24", "--check", "0", "--outputs", "npy",
            ]
            + (inProcess ? ["--in-process"] : [])
        let (s1, l1) = try Self.coordinator(
            group, base + ["--keep-going", "--out", group.directory + "/kept", first, bad, last], log: "kept")
        #expect(s1 == 1, "\(l1)")
        #expect(l1.contains("1 of 3 images failed: \(bad)"), "\(l1)")
        for name in ["a", "c"] {
            #expect(FileManager.default.fileExists(atPath: group.directory + "/kept/\(name).npy"), "\(name): \(l1)")
        }
        let (s2, l2) = try Self.coordinator(
            group, base + ["--out", group.directory + "/stop", first, bad, last], log: "stop")
        #expect(s2 != 0 && !FileManager.default.fileExists(atPath: group.directory + "/stop/c.npy"), "\(l2)")
    }

    @Test("bad inputs fail with the file named and leave no store: truncated TIFF, not an image, missing level")
    func badInputs() throws {
        let group = try ProcessGroup("bad-slides")
        defer { group.stop() }
        let png = group.directory + "/pixels.png"
        try ClusterFixture.writeImage(to: png, height: 120, width: 150, seed: 9)
        _ = try Self.python(
            "import subprocess, sys; subprocess.run([sys.executable] + sys.argv[1:], check=True)",
            [Self.makeSlide, png, group.directory])
        let tiled = try #require(Self.bytes(group.directory + "/tiled.tif"))
        try Data(tiled.prefix(tiled.count / 2)).write(to: URL(fileURLWithPath: group.directory + "/cut.tif"))
        try Data("not an image at all".utf8).write(to: URL(fileURLWithPath: group.directory + "/junk.tif"))
        let model = ClusterFixture.modelFlags + ["--mode", "dense", "--in-process", "--outputs", "zarr"]
        let cases: [(String, [String], String)] = [
            ("cut.tif", [], "cut.tif"),
            ("junk.tif", [], "junk.tif"),
            ("slide.svs", ["--level", "7"], "level"),
            ("slide.svs", ["--mpp", "0.5"], "µm/px"),
        ]
        for (i, (file, extra, expected)) in cases.enumerated() {
            let out = group.directory + "/out\(i)"
            let (s, l) = try Self.coordinator(
                group,
                ["run"] + model + extra + [
                    "--out", out,
                    group.directory + "/" + file,
                ],
                log: "bad\(i)")
            #expect(s != 0, "\(file) \(extra) was accepted: \(l)")
            #expect(l.contains(expected) && !l.contains("Fatal error"), "\(file) \(extra): \(l)")
            let left = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
            #expect(left.allSatisfy { !$0.contains("zarr") }, "\(file): a store was left: \(left)")
        }
    }
}

extension SlideMapTests {
    /// Found by a user audit: a corrupt tile of the level --tissue reads was reported as
    /// "corrupt tile, level 1" while the user mapped level 0.
    @Test("--tissue: a corrupt low-resolution view is reported as the tissue view, naming its level")
    func corruptTissueView() throws {
        let group = try ProcessGroup("tissue-view")
        defer { group.stop() }
        let slide = group.directory + "/bad.tif"
        _ = try Self.python(
            """
            import sys, numpy as np, tifffile
            a = np.full((2048, 2048, 3), 240, np.uint8); a[500:900, 500:900] = (150, 50, 140)
            with tifffile.TiffWriter(sys.argv[1]) as t:
                t.write(a, tile=(256, 256), compression='zlib', photometric='rgb')
                t.write(a[::2, ::2].copy(), tile=(256, 256), compression='zlib', photometric='rgb', subfiletype=1)
            with tifffile.TiffFile(sys.argv[1]) as f:
                off, n = f.pages[1].dataoffsets[0], f.pages[1].databytecounts[0]
            data = bytearray(open(sys.argv[1], 'rb').read()); data[off:off + n] = bytes(n)
            open(sys.argv[1], 'wb').write(bytes(data))
            """, [slide])
        let (s, l) = try Self.coordinator(
            group,
            ["run"] + ClusterFixture.modelFlags + [
                "--mode", "dense", "--in-process", "--tissue", "--outputs", "zarr", "--out", group.directory + "/out",
                slide,
            ], log: "run")
        #expect(s != 0 && l.contains("--tissue looks for tissue in level 1 of") && l.contains("corrupt tile"), "\(l)")
    }

    /// Found by a user audit: the µm/px came from the first PhysicalSizeX anywhere in the
    /// OME-XML, so a macro image stored first was labelled with the slide's scale.
    @Test("OME-TIFF with several images: the scale is that of the image stored at IFD 0, or none")
    func omeScaleOfTheMappedImage() throws {
        let group = try ProcessGroup("ome-images")
        defer { group.stop() }
        _ = try Self.python(
            """
            import sys, numpy as np, tifffile
            a = np.random.default_rng(0).integers(0, 255, (512, 768, 3)).astype(np.uint8)
            label = np.random.default_rng(1).integers(0, 255, (300, 500, 3)).astype(np.uint8)
            with tifffile.TiffWriter(sys.argv[1] + '/macro-first.ome.tif', ome=True) as t:
                t.write(label, photometric='rgb', metadata={'Name': 'macro'})
                t.write(a, tile=(256, 256), photometric='rgb', metadata={'PhysicalSizeX': 0.25, 'PhysicalSizeY': 0.25})
            with tifffile.TiffWriter(sys.argv[1] + '/slide-first.ome.tif', ome=True) as t:
                t.write(a, tile=(256, 256), photometric='rgb', metadata={'PhysicalSizeX': 0.25, 'PhysicalSizeY': 0.25})
                t.write(label, photometric='rgb', metadata={'PhysicalSizeX': 8.0, 'PhysicalSizeY': 8.0})
            """, [group.directory])
        // The image described, without the list of the file's images (each with its own scale).
        func described(_ text: String) -> String {
            text.split(separator: "\n").filter { !$0.hasPrefix("  image ") }.joined(separator: "\n")
        }
        let (s1, macro) = try Self.coordinator(
            group, ["inspect-image", group.directory + "/macro-first.ome.tif"], log: "macro")
        #expect(s1 == 0 && macro.contains("500×300") && !described(macro).contains("µm/px"), "\(macro)")
        #expect(macro.contains("  image 1: 500×300, 1 level, µm/px unknown, \"macro\" (mapped)"), "\(macro)")
        #expect(macro.contains("  image 2: 768×512, 1 level, 0.25 µm/px"), "\(macro)")
        let (s2, slide) = try Self.coordinator(
            group, ["inspect-image", group.directory + "/slide-first.ome.tif"], log: "slide")
        #expect(s2 == 0 && slide.contains("768×512") && slide.contains("0.25 µm/px"), "\(slide)")
        #expect(
            !described(slide).contains("8 µm/px") && slide.contains("  image 2: 500×300, 1 level, 8 µm/px"), "\(slide)")
    }

    @Test("inspect-image: levels, µm/px and vendor of a slide; map size and a time estimate per level with a model")
    func inspectImage() throws {
        let group = try ProcessGroup("inspect-image")
        defer { group.stop() }
        let png = group.directory + "/pixels.png"
        try ClusterFixture.writeImage(to: png, height: 120, width: 160, seed: 3)
        _ = try Self.python(
            "import subprocess, sys; subprocess.run([sys.executable] + sys.argv[1:], check=True)",
            [Self.makeSlide, png, group.directory])
        let (s, l) = try Self.coordinator(
            group,
            [
                "inspect-image", group.directory + "/slide.svs", "--model",
                ClusterFixture.prototxt, "--weights", ClusterFixture.weights,
                "--allow-padding",
            ], log: "inspect")
        #expect(s == 0, "\(l)")
        for expected in [
            "aperio", "160×120", "level 0: 160×120", "level 1: 40×30", "0.25 µm/px", "1 µm/px",
            "map 3×120×160", "Mpx/s",
        ] {
            #expect(l.contains(expected), "missing \"\(expected)\" in:\n\(l)")
        }
        let (s2, l2) = try Self.coordinator(group, ["inspect-image", group.directory + "/nothing.svs"], log: "missing")
        #expect(s2 != 0 && l2.contains("nothing.svs"), "\(l2)")
    }
}

extension SlideMapTests {
    /// A slide with one damaged image tile: by default the job fails, naming it and the
    /// option; with `--corrupt-tiles skip` the map tiles whose input touches it are left
    /// empty (NaN), the rest equals the undamaged slide's map, in-process and in the cluster.
    @Test("--corrupt-tiles skip: the map tiles a damaged image tile feeds are left empty, the rest is the good map")
    func corruptTilesSkipped() throws {
        let group = try ProcessGroup("corrupt-tiles")
        defer { group.stop() }
        let (good, bad) = (group.directory + "/good.tif", group.directory + "/bad.tif")
        _ = try Self.python(
            """
            import sys, shutil, numpy as np, tifffile
            rng = np.random.default_rng(5)
            a = rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
            tifffile.imwrite(sys.argv[1], a, tile=(256, 256), compression='zlib', photometric='rgb')
            shutil.copy(sys.argv[1], sys.argv[2])
            with tifffile.TiffFile(sys.argv[2]) as f:
                off, n = f.pages[0].dataoffsets[5], f.pages[0].databytecounts[5]
            data = bytearray(open(sys.argv[2], 'rb').read()); data[off:off + n] = bytes(n)
            open(sys.argv[2], 'wb').write(bytes(data))
            """, [good, bad])
        func run(_ extra: [String], _ image: String, out: String) throws -> (Int32, String) {
            try Self.coordinator(
                group,
                ["run"] + ClusterFixture.modelFlags + extra + [
                    "--mode", "dense", "--tile", "256", "--outputs", "npy,zarr", "--out", group.directory + "/" + out,
                    image,
                ], log: out)
        }
        // The fixture net is not exact, so `run` maps it in-process to check it: --check 0 keeps
        // the embedded cluster (workers reading the slide, failures judged by the coordinator).
        let (s0, l0) = try run(["--check", "0"], bad, out: "fail")
        #expect(s0 != 0 && l0.contains("corrupt tile") && l0.contains("--corrupt-tiles skip"), "\(l0)")
        #expect(l0.contains("embedded coordinator") && l0.contains("failed 3 times"), "\(l0)")
        let (s1, l1) = try run(["--corrupt-tiles", "skip", "--check", "0"], bad, out: "cluster")
        #expect(s1 == 0 && l1.contains("embedded coordinator") && l1.contains("9 map tiles left empty"), "\(l1)")
        let (s2, l2) = try run(["--corrupt-tiles", "skip", "--in-process"], bad, out: "local")
        #expect(s2 == 0 && l2.contains("9 left empty (damaged input)"), "\(l2)")
        // With --tissue the low-resolution view reads the damaged tile too: it counts as tissue.
        let (s4, l4) = try run(["--corrupt-tiles", "skip", "--tissue", "--check", "0"], bad, out: "tissue")
        #expect(s4 == 0 && l4.contains("unreadable") && l4.contains("left empty"), "\(l4)")
        let (s5, l5) = try run(["--tissue", "--check", "0"], bad, out: "tissue-fail")
        #expect(s5 != 0 && l5.contains("--corrupt-tiles skip"), "\(l5)")
        let (s3, l3) = try run(["--in-process"], good, out: "good")
        #expect(s3 == 0, "\(l3)")
        let cluster = Self.bytes(group.directory + "/cluster/bad.npy")
        #expect(cluster != nil && cluster == Self.bytes(group.directory + "/local/bad.npy"))
        // Tile 5 (rows and columns 256..<512) feeds the 3 × 3 map tiles around it: [0, 768)².
        let check = try Self.python(
            """
            import sys, numpy as np
            a, g = np.load(sys.argv[1]), np.load(sys.argv[2])
            empty = np.zeros(a.shape[1:], bool); empty[:768, :768] = True
            assert (np.isnan(a).all(axis=0) == empty).all(), "the empty tiles are not the 3 x 3 around tile 5"
            assert np.array_equal(a[:, ~empty], g[:, ~empty]), "the other tiles differ from the good slide's map"
            # The map says which tiles are empty because of damage (not for want of tissue).
            import zarr, warnings
            for store in sys.argv[3:]:
                # No stray file in the map: zarr-python warned about tessera-owner.txt on every listing.
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    keys = list(zarr.open_group(store, mode="r").keys())
                    assert keys and all(k.isdigit() for k in keys), (store, keys)
                damaged = sorted(map(tuple, zarr.open_group(store, mode="r").attrs["tessera"]["damaged_tiles"]))
                want = sorted((y, x, 256, 256) for y in (0, 256, 512) for x in (0, 256, 512))
                assert damaged == want, (store, damaged)
            print("ok")
            """,
            [group.directory + "/cluster/bad.npy", group.directory + "/good/good.npy"]
                + ["cluster", "local"].map { group.directory + "/\($0)/bad.zarr" })
        #expect(check.contains("ok"), "\(check)")
    }
}

extension SlideMapTests {
    /// Found by a user audit: with --corrupt-tiles skip, a slide whose every tile was damaged
    /// gave an empty map and exit status 0.
    @Test("--corrupt-tiles skip: when every map tile's input is damaged the run fails, in-process and in the cluster")
    func everyTileDamagedFails() throws {
        let group = try ProcessGroup("all-damaged")
        defer { group.stop() }
        let bad = group.directory + "/bad.tif"
        _ = try Self.python(
            """
            import sys, numpy as np, tifffile
            a = np.random.default_rng(6).integers(0, 255, (300, 300, 3), dtype=np.uint8)
            tifffile.imwrite(sys.argv[1], a, tile=(256, 256), compression='zlib', photometric='rgb')
            with tifffile.TiffFile(sys.argv[1]) as f:
                spans = list(zip(f.pages[0].dataoffsets, f.pages[0].databytecounts))
            data = bytearray(open(sys.argv[1], 'rb').read())
            for off, n in spans: data[off:off + n] = bytes(n)
            open(sys.argv[1], 'wb').write(bytes(data))
            """, [bad])
        for (extra, name) in [(["--in-process"], "local"), (["--check", "0"], "cluster")] {
            let (status, log) = try Self.coordinator(
                group,
                ["run"] + ClusterFixture.modelFlags + extra + [
                    "--corrupt-tiles", "skip", "--mode", "dense", "--tile", "128", "--outputs", "npy",
                    "--out", group.directory + "/" + name, bad,
                ], log: name)
            #expect(status != 0 && log.contains("the input of every map tile is damaged"), "\(name): \(log)")
            #expect(
                !FileManager.default.fileExists(atPath: group.directory + "/\(name)/bad.npy"),
                "\(name): a map was written")
        }
    }
}

extension SlideMapTests {
    /// Found by a user audit: --tissue on a large single-level TIFF read it in full for minutes
    /// before anything was logged.
    @Test("--tissue says so before it reads a large level in full for its view")
    func tissueAnnouncesFullRead() throws {
        let group = try ProcessGroup("tissue-full-read")
        defer { group.stop() }
        let image = group.directory + "/long.tif"
        _ = try Self.python(
            """
            import sys, numpy as np, tifffile
            a = np.full((64, 9000, 3), 240, np.uint8); a[:, 100:300] = (120, 60, 150)
            tifffile.imwrite(sys.argv[1], a, tile=(64, 512), compression='zlib', photometric='rgb')
            """, [image])
        let (status, log) = try Self.coordinator(
            group,
            ["run", "--in-process"] + ClusterFixture.modelFlags + [
                "--tissue", "--check", "0", "--outputs", "npy", "--out", group.directory + "/out", image,
            ], log: "run")
        #expect(status == 0 && log.contains("--tissue reads level 0 (9000×64)"), "\(log)")
    }
}
