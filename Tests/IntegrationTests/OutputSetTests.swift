import Foundation
import Testing

@testable import TestSupport

/// Audit 53 F4: a disk that filled while a map's outputs were written left the new image's PNGs beside an
/// earlier run's `.npy` (and zarr), exit 1, not a word about it. The outputs are now written into a hidden
/// folder and moved into place together: a failure leaves every earlier file as it was. A file-size limit
/// (`ulimit -f`; every program ignores SIGXFSZ, so the write fails with EFBIG) stands in for the full disk: the `.npy` is the
/// one file over it.
@Suite("Outputs replace earlier ones all together or not at all")
struct OutputSetTests {
    @Test(
        "a write failing part-way leaves the earlier outputs as they were, or with a zarr keeps the new zarr alone and says how to export the rest; a success replaces all"
    )
    func allOrNothing() throws {
        let group = try ProcessGroup("output-set")
        defer { group.stop() }
        let dir = group.directory
        // Two images of one name: a stained square at different places, so every output differs.
        _ = try SlideMapTests.python(
            """
            import sys, os, numpy as np, PIL.Image as I
            for name, (y, x) in (('a', (40, 60)), ('b', (200, 180))):
                os.makedirs(sys.argv[1] + '/' + name)
                a = np.full((400, 400, 3), 235, np.uint8); a[y:y + 150, x:x + 150] = (120, 60, 140)
                I.fromarray(a).save(sys.argv[1] + '/' + name + '/x.png')
            """, [dir])
        let root = TestPaths.packageRoot.path
        let out = dir + "/out"
        let files = "prob,labels,overlay,npy"
        func run(
            _ image: String, outputs: String, sizeLimitKiB: Int? = nil, into out: String = out, dtype: String = "uint8"
        ) throws -> (status: Int32, output: String) {
            let command = [
                ProcessGroup.binary("tessera-coordinator"), "run", "--in-process", "--model",
                root + "/models/demo/deploy.prototxt", "--weights", root + "/models/demo/nuclei32.caffemodel",
                "--mean", "134,151,171", "--scale", "0.015625", "--mode", "dense", "--tile", "200", "--outputs",
                outputs,
                "--dtype", dtype, "--out", out, "\(dir)/\(image)/x.png",
            ]
            let limit = sizeLimitKiB.map { "ulimit -f \($0); " } ?? ""
            return try runCommand(["bash", "-c", limit + "exec \"$@\"", "bash"] + command)
        }
        // What is in `out`: each file's path and bytes.
        func contents() throws -> [String: Data] {
            var files: [String: Data] = [:]
            let enumerator = FileManager.default.enumerator(atPath: out)
            while let name = enumerator?.nextObject() as? String {
                var folder: ObjCBool = false
                if FileManager.default.fileExists(atPath: "\(out)/\(name)", isDirectory: &folder), !folder.boolValue {
                    files[name] = try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(name)"))
                }
            }
            return files
        }
        func hidden() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).filter { $0.hasPrefix(".") }
        }
        let first = try run("a", outputs: "zarr," + files)
        #expect(first.status == 0, "\(first.output)")
        let before = try contents()
        #expect(before["x.npy"] != nil && before["x.prob-1.png"] != nil && before["x.zarr/0/0/0/0"] != nil)

        // The .npy (2 × 400² float32, 1.25 MiB) cannot be written (the float32 store's chunks, 200², can): nothing of
        // this run replaces anything.
        let failed = try run("b", outputs: files, sizeLimitKiB: 1000)
        #expect(failed.status != 0, "\(failed.output)")
        #expect(
            failed.output.contains("\(out)/x.npy") && failed.output.contains("File too large")
                && failed.output.contains("no file output of x was written"), "\(failed.output)")
        #expect(!failed.output.contains(".outputs.partial-"), "the message names the hidden folder: \(failed.output)")
        let after = try contents()
        #expect(Set(after.keys) == Set(before.keys), "\(after.keys.sorted()) vs \(before.keys.sorted())")
        for (name, bytes) in before { #expect(after[name] == bytes, "\(name) changed by the failed run") }
        #expect(hidden().isEmpty, "left behind: \(hidden())")

        // With the zarr asked for, the new map (minutes to hours of computing) is kept, as the embedded `run`
        // keeps it (review 32 R6: it was removed), and the earlier map's files beside it go.
        let kept = try run("b", outputs: "zarr," + files, sizeLimitKiB: 1000)
        #expect(kept.status != 0, "\(kept.output)")
        #expect(
            kept.output.contains("File too large")
                && kept.output.contains(
                    "The map itself is complete and kept: \(out)/x.zarr; `tessera-coordinator export")
                && kept.output.contains("--image"), "\(kept.output)")
        let zarrOnly = try contents()
        #expect(zarrOnly.keys.allSatisfy { $0.hasPrefix("x.zarr/") }, "\(zarrOnly.keys.sorted())")
        #expect(zarrOnly["x.zarr/0/0/0/0"] != nil && zarrOnly["x.zarr/0/0/0/0"] != before["x.zarr/0/0/0/0"])
        #expect(hidden().isEmpty, "left behind: \(hidden())")
        // Its export, as the message gives it, writes the rest.
        let export = try runCommand([
            ProcessGroup.binary("tessera-coordinator"), "export", out + "/x.zarr", "--outputs", files, "--out", out,
            "--image", "\(dir)/b/x.png",
        ])
        #expect(export.status == 0, "\(export.output)")
        let exported = try contents()

        // Without the limit, every output is the new image's, as the export wrote them.
        let second = try run("b", outputs: "zarr," + files)
        #expect(second.status == 0, "\(second.output)")
        let replaced = try contents()
        for name in ["x.npy", "x.prob-1.png", "x.labels.png", "x.overlay.png", "x.zarr/0/0/0/0"] {
            #expect(replaced[name] != nil && replaced[name] != before[name], "\(name) was not replaced")
            #expect(replaced[name] == exported[name], "\(name): the export differs from the run's")
        }

        // A kept zarr that replaced no map leaves the outputs of other kinds beside it, as a finished run does
        // (review 33: every earlier output of the image went): here the .npy fails.
        let other = dir + "/other"
        #expect(try run("b", outputs: "labels,overlay", into: other).status == 0)
        let keptAlone = try run("b", outputs: "zarr,npy", sizeLimitKiB: 1000, into: other)
        #expect(
            keptAlone.status != 0 && keptAlone.output.contains("The map itself is complete and kept"),
            "\(keptAlone.output)")
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: other))
        #expect(left == ["x.overlay.png", "x.labels.png", "x.zarr"], "\(left.sorted())")
    }
}
