import Foundation
import Testing

@testable import CoordinatorService
@testable import TesseraCluster
@testable import TesseraCore
@testable import TesseraImage
@testable import TestSupport

/// `--image N` through the built binaries: `run` (its embedded cluster and in-process) and a
/// shared-storage cluster job, whose coordinator is killed and restarted mid-job, map image 2 of
/// a two-scene OME-TIFF and of a two-page plain TIFF exactly as they map a TIFF holding only
/// image 2's pixels.
@Suite("--image: run and cluster jobs map the image asked for", .serialized)
struct ImageSelectTests {
    /// Writes `scenes.ome.tif` (two scenes, each with a SubIFD ½ level), `pages.tif` (the same
    /// as two pages, each followed by a flagged ½ level) and `only2.tif` (scene 2 alone) into `dir`.
    static func writeImages(_ dir: String) throws {
        let (status, output) = try runCommand([
            "python3", "-c",
            """
            import sys, numpy as np, tifffile
            d = sys.argv[1]
            rng = np.random.default_rng(21)
            a = rng.integers(0, 255, (120, 150, 3), dtype=np.uint8)
            b = rng.integers(0, 255, (100, 130, 3), dtype=np.uint8)
            o = dict(tile=(64, 64), compression='zlib', photometric='rgb')
            with tifffile.TiffWriter(d + '/scenes.ome.tif', ome=True) as w:
                for name, x in [('one', a), ('two', b)]:
                    w.write(x, subifds=1, metadata={'axes': 'YXS', 'Name': name}, **o)
                    w.write(x[::2, ::2].copy(), subfiletype=1, **o)
            with tifffile.TiffWriter(d + '/pages.tif') as w:
                for x in [a, b]:
                    w.write(x, **o)
                    w.write(x[::2, ::2].copy(), subfiletype=1, **o)
            tifffile.imwrite(d + '/only2.tif', b, **o)
            """, dir,
        ])
        #expect(status == 0, "\(output)")
    }

    static let model = ClusterFixture.modelFlags + ["--mode", "dense", "--tile", "\(ClusterFixture.tile)"]

    /// `tessera-coordinator ARGS`: its exit status and output.
    static func coordinator(_ group: ProcessGroup, _ arguments: [String], log: String) throws -> (Int32, String) {
        let p = try group.start("tessera-coordinator", arguments, log: log)
        return (group.wait(p, timeout: 300) ?? -1, group.log(log))
    }

    @Test(
        "run --image 2 maps image 2 (embedded cluster and in-process); image 1 by default, with a note; --image 3 is refused before any work; inspect-image lists both"
    )
    func runMapsTheImage() throws {
        let group = try ProcessGroup("image-run")
        defer { group.stop() }
        let dir = group.directory
        try Self.writeImages(dir)
        func map(_ name: String, _ file: String, _ extra: [String]) throws -> (Int32, String, [UInt8]?) {
            let out = "\(dir)/\(name)"
            let (s, l) = try Self.coordinator(
                group,
                ["run"] + Self.model + ["--threads", "2", "--check", "0", "--outputs", "npy", "--out", out] + extra
                    + [file],
                log: name)
            // Image N's outputs are named `<stem>.image-N` (image 1's keep the plain stem).
            let image = extra.firstIndex(of: "--image").map { extra[$0 + 1] }
            let stem =
                ((file as NSString).lastPathComponent as NSString).deletingPathExtension
                + (image.map { ".image-\($0)" } ?? "")
            return (s, l, ClusterFixture.bytes("\(out)/\(stem).npy"))
        }
        let (s0, l0, reference) = try map("ref", dir + "/only2.tif", [])
        #expect(s0 == 0 && reference != nil, "\(l0)")
        for (name, file, extra) in [
            ("ome", "scenes.ome.tif", ["--image", "2"]),
            ("ome-local", "scenes.ome.tif", ["--image", "2", "--in-process"]),
            ("pages", "pages.tif", ["--image", "2"]),
        ] {
            let (s, l, npy) = try map(name, dir + "/" + file, extra)
            #expect(s == 0, "\(name): \(l)")
            let same = npy == reference  // (the bytes themselves would flood the failure's message)
            #expect(same, "\(name): the map of image 2 differs from the map of its pixels alone")
            #expect(l.contains("image 2 of 2, level 0 of 2") && !l.contains("--image N picks another"), "\(l)")
        }
        // Image 1 into the folder holding image 2's map: each keeps its own (no silent replacement).
        let (s1, l1, first) = try map("ome", dir + "/scenes.ome.tif", [])
        let differs = first != nil && first != reference
        #expect(s1 == 0 && differs, "\(l1)")
        let second = ClusterFixture.bytes("\(dir)/ome/scenes.ome.image-2.npy")
        #expect(second == reference, "image 1's map replaced image 2's")
        #expect(l1.contains("image 1 of 2 mapped; --image N picks another"), "\(l1)")
        // In process, a zarr of image 2's level 1 records both (tessera.source in .zattrs).
        let (sz, lz) = try Self.coordinator(
            group,
            ["run", "--in-process"] + Self.model + [
                "--check", "0", "--outputs", "zarr", "--image", "2", "--level", "1", "--out", dir + "/zarr",
                dir + "/scenes.ome.tif",
            ], log: "zarr")
        #expect(sz == 0, "\(lz)")
        let attrs = try String(contentsOfFile: dir + "/zarr/scenes.ome.image-2.zarr/.zattrs", encoding: .utf8)
        let source = try MapStore.open(at: dir + "/zarr/scenes.ome.image-2.zarr").layout.source
        // With level 0's size and the level's downsample (output audit 39 F7b: a slide without µm/px recorded only
        // the level's number, so the map could not be laid over level 0).
        let scale = LevelScale(levelZeroHeight: 100, levelZeroWidth: 130, downsample: 2)
        #expect(
            source == MapSource(file: "scenes.ome.tif", image: 2, level: 1, scale: scale)
                && attrs.contains("\"level0_width\" : 130"), "\(attrs)")
        // export draws its overlay over the image and level the map records, without --level (user audit: it
        // asked for --level 1); another file is drawn over with a warning naming the recorded one.
        /// `export` of image 2's zarr map as an overlay over `image`, into `out`.
        func overlay(over image: String, into out: String, log: String) throws -> (Int32, String) {
            try Self.coordinator(
                group,
                [
                    "export", dir + "/zarr/scenes.ome.image-2.zarr", "--outputs", "overlay", "--image", image,
                    "--out", out,
                ], log: log)
        }
        let (se, le) = try overlay(over: dir + "/scenes.ome.tif", into: dir + "/zarr-overlay", log: "export-overlay")
        #expect(se == 0 && le.contains("the map is of level 1"), "\(le)")
        #expect(FileManager.default.fileExists(atPath: dir + "/zarr-overlay/scenes.ome.image-2.overlay.png"))
        try FileManager.default.copyItem(atPath: dir + "/scenes.ome.tif", toPath: dir + "/copy.tif")
        let (sc, lc) = try overlay(over: dir + "/copy.tif", into: dir + "/copy-overlay", log: "export-copy")
        #expect(sc == 0 && lc.contains("computed from scenes.ome.tif, not copy.tif"), "\(lc)")
        // A PNG has no level 1: the error says the level is the map's (docs/CLI audit 36 F15: it blamed --level).
        try ClusterFixture.writeImage(to: dir + "/crop.png", height: 20, width: 20)
        let (sp, lp) = try overlay(over: dir + "/crop.png", into: dir + "/png-overlay", log: "export-png")
        #expect(sp == 1 && lp.contains("the map records image 2, level 1 of scenes.ome.tif (tessera.source)"), "\(lp)")
        // An unfinished output a killed export left (its pid gone) is removed by the next export; one of a
        // running process (this test's pid) stays.
        let out = dir + "/zarr-overlay"
        let dead = ".scenes.ome.image-2.npy.partial-999999999-17",
            live = ".scenes.ome.image-2.npy.partial-\(getpid())-3"
        for name in [dead, live] {
            #expect(FileManager.default.createFile(atPath: out + "/" + name, contents: Data(count: 10)))
        }
        let (sn, ln) = try Self.coordinator(
            group, ["export", dir + "/zarr/scenes.ome.image-2.zarr", "--outputs", "npy", "--out", out], log: "npy")
        #expect(sn == 0 && ln.contains("removed unfinished outputs") && ln.contains(dead), "\(ln)")
        #expect(!FileManager.default.fileExists(atPath: out + "/" + dead))
        #expect(FileManager.default.fileExists(atPath: out + "/" + live))
        let (s3, l3, _) = try map("three", dir + "/scenes.ome.tif", ["--image", "3"])
        #expect(s3 != 0, "\(l3)")
        #expect(
            l3.contains(
                "\(dir)/scenes.ome.tif: no image 3: the file has 2 images: 1 (150×120, \"one\"), 2 (130×100, \"two\")"),
            "\(l3)")
        #expect(!l3.contains("mapping"), "refused before any work: \(l3)")
        let (s4, l4) = try Self.coordinator(group, ["inspect-image", dir + "/pages.tif"], log: "inspect")
        #expect(s4 == 0 && l4.contains("2 images; run maps image 1"), "\(l4)")
        #expect(l4.contains("  image 2: 130×100, 2 levels, µm/px unknown"), "\(l4)")
    }

    @Test(
        "submit --shared --image 2: the workers map image 2, and a coordinator killed mid-job resumes it from its store as image 2"
    )
    func sharedJobKeepsTheImage() throws {
        let cluster = try RestartableCluster("image-shared")
        defer { cluster.group.stop() }
        let (group, root) = (cluster.group, cluster.root)
        try Self.writeImages(root)
        let (s0, l0) = try Self.coordinator(
            group,
            ["run", "--in-process"] + Self.model + [
                "--check", "0", "--outputs", "npy", "--out", group.directory + "/ref", root + "/only2.tif",
            ], log: "ref")
        #expect(s0 == 0, "\(l0)")
        let reference = try #require(ClusterFixture.bytes(group.directory + "/ref/only2.npy"))
        let coordinator = try cluster.coordinator("coordinator-1")
        try group.start(
            "tessera-worker",
            [
                "--coordinator", cluster.workers, "--threads", "1", "--name", "w1", "--heartbeat-ms", "300",
                "--shared-root", root, "--debug-task-delay-ms", "100",
            ], log: "w1")
        let client = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", cluster.clients, "--reconnect-timeout", "60"] + Self.model + [
                "--shared", "--image", "2", "--wait", "--out", root + "/out", root + "/scenes.ome.tif",
            ], log: "client")
        let fault = FaultToleranceTests()
        _ = try fault.waitFor(cluster.clients, "a quarter of the tasks") {
            $0.tasksDone * 4 >= $0.tasksQueued + $0.tasksRunning + $0.tasksDone
        }
        let text = try String(contentsOfFile: group.directory + "/store/jobs/1/job.txt", encoding: .utf8)
        let options = try JobOptions(encoded: JobRecord(text: text).options)
        #expect(options.image == 2, "the job record keeps the image: \(text)")
        kill(coordinator.processIdentifier, SIGKILL)
        #expect(group.wait(coordinator, timeout: 10) != nil)
        _ = try cluster.coordinator("coordinator-2")
        #expect(group.wait(client, timeout: 120) == 0, "\(group.log("client"))\n\(group.log("coordinator-2"))")
        #expect(group.log("coordinator-2").contains("tiles verified in the store"), "\(group.log("coordinator-2"))")
        let export = try group.start(
            "tessera-coordinator",
            [
                "export", root + "/out/scenes.ome.image-2.zarr", "--outputs", "npy", "--out",
                group.directory + "/export",
            ],
            log: "export")
        #expect(group.wait(export, timeout: 60) == 0, "\(group.log("export"))")
        // The map says what it was computed from.
        let stored = try MapStore.open(at: root + "/out/scenes.ome.image-2.zarr").layout.source
        #expect(stored == MapSource(file: "scenes.ome.tif", image: 2, level: 0), "\(String(describing: stored))")
        let same = ClusterFixture.bytes(group.directory + "/export/scenes.ome.image-2.npy") == reference
        #expect(same, "the cluster's map of image 2 differs from the map of its pixels alone")
        // The overlay of image 2's map is drawn over image 2 (the file's image 1 has another size).
        let overlay = try group.start(
            "tessera-coordinator",
            [
                "export", root + "/out/scenes.ome.image-2.zarr", "--outputs", "overlay", "--image",
                root + "/scenes.ome.tif", "--out", group.directory + "/overlay",
            ], log: "overlay")
        #expect(group.wait(overlay, timeout: 60) == 0, "\(group.log("overlay"))")
        #expect(group.log("overlay").contains("the map is of image 2"), "\(group.log("overlay"))")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/overlay/scenes.ome.image-2.overlay.png"))
    }
}
