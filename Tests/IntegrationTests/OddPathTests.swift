import Foundation
import Testing

@testable import TestSupport

/// Paths a user can type that lost data or misled (paths audit 41).
@Suite("Odd paths: inputs among outputs, convert's files, dashes, export .")
struct OddPathTests {
    /// `tessera-coordinator ARGUMENTS` run in `folder`: its exit status and output.
    static func inFolder(_ folder: String, _ arguments: [String]) throws -> (Int32, String) {
        try runCommand(
            ["sh", "-c", "cd \"$0\" && exec \"$@\"", folder, ProcessGroup.binary("tessera-coordinator")] + arguments)
    }

    /// F1: `x.png` and `out/x.prob-1.png` mapped into `out`: the second was overwritten by the first's output
    /// before it was read, and its map made from that, exit 0.
    @Test("An input named as another input's output in --out is refused before anything is written")
    func inputAmongOutputs() throws {
        let group = try ProcessGroup("input-among-outputs")
        defer { group.stop() }
        let out = group.directory + "/d"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try ClusterFixture.writeImage(to: group.directory + "/x.png", height: 40, width: 50)
        try ClusterFixture.writeImage(to: out + "/x.prob-1.png", height: 40, width: 50)
        let before = ClusterFixture.bytes(out + "/x.prob-1.png")
        for extra in [["--in-process"], [String]()] {
            let (status, log) = try SlideMapTests.coordinator(
                group,
                ["run"] + extra + ClusterFixture.modelFlags + [
                    "--check", "0", "--out", out, group.directory + "/x.png", out + "/x.prob-1.png",
                ], log: "run\(extra.count)")
            #expect(status == 64 && log.contains("under the name of an output of"), "\(log)")
        }
        #expect(ClusterFixture.bytes(out + "/x.prob-1.png") == before, "the input was overwritten")
    }

    /// F2: `--out-model m --out-weights m` lost the prototxt; an output naming an input replaced it.
    @Test("convert refuses one file for both outputs, and an output that is an input")
    func convertFiles() throws {
        let group = try ProcessGroup("convert-files")
        defer { group.stop() }
        let model = try #require(
            ClusterFixture.modelFlags.firstIndex(of: "--model").map { ClusterFixture.modelFlags[$0 + 1] })
        let weights = try #require(
            ClusterFixture.modelFlags.firstIndex(of: "--weights").map { ClusterFixture.modelFlags[$0 + 1] })
        let copy = group.directory + "/w.caffemodel"
        try FileManager.default.copyItem(atPath: weights, toPath: copy)
        let original = ClusterFixture.bytes(copy)
        let cases: [([String], String)] = [
            (["--out-model", group.directory + "/m", "--out-weights", group.directory + "/m"], "are the same file"),
            (["--out-model", group.directory + "/f.prototxt", "--out-weights", copy], "is the --weights file"),
        ]
        for (outputs, expected) in cases {
            let (status, log) = try SlideMapTests.coordinator(
                group, ["convert", "--model", model, "--weights", copy] + outputs, log: "convert")
            #expect(status == 64 && log.contains(expected), "\(log)")
        }
        #expect(ClusterFixture.bytes(copy) == original, "the weights were overwritten")
        #expect(!FileManager.default.fileExists(atPath: group.directory + "/m"))
        // F8: a folder as --out-weights left the prototxt written alone; "o/" as --out-model wrote a file "o".
        let folder = group.directory + "/wdir"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let halves: [([String], String)] = [
            (["--out-model", group.directory + "/half.prototxt", "--out-weights", folder], "wdir/fcn.caffemodel"),
            (["--out-model", group.directory + "/o/", "--out-weights", group.directory + "/o.caffemodel"], "a folder"),
        ]
        for (outputs, expected) in halves {
            let (status, log) = try SlideMapTests.coordinator(
                group, ["convert", "--model", model, "--weights", copy] + outputs, log: "half")
            #expect(status != 0 && log.contains(expected), "\(log)")
        }
        for name in ["half.prototxt", "o", "o.caffemodel"] {
            #expect(!FileManager.default.fileExists(atPath: group.directory + "/" + name), "\(name) was written")
        }
    }

    /// F3: a folder named "-o" reached the workers as `--shared-root -o`, an option; F7: `export .` wrote `..prob-1.png`.
    @Test("run into a folder named -o through the workers; export of the current folder names outputs after it")
    func dashesAndDot() throws {
        let group = try ProcessGroup("dash-folder")
        defer { group.stop() }
        try ClusterFixture.writeImage(to: group.directory + "/x.png", height: 40, width: 50)
        var (status, output) = try Self.inFolder(
            group.directory,
            ["run", "--check", "0"] + ClusterFixture.modelFlags + ["--outputs", "npy,zarr", "--out=-o", "x.png"])
        #expect(status == 0, "\(output)")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/-o/x.npy"), "\(output)")
        (status, output) = try Self.inFolder(
            group.directory + "/-o/x.zarr", ["export", ".", "--outputs", "npy", "--out", group.directory + "/e"])
        #expect(status == 0, "\(output)")
        let written = try FileManager.default.contentsOfDirectory(atPath: group.directory + "/e")
        #expect(written == ["x.npy"], "\(written)")
    }

    /// F5: a file that exists but cannot be reached was "file not found".
    @Test("An image behind a link loop says why it cannot be reached; a missing one is not found")
    func unreachableImage() throws {
        let group = try ProcessGroup("unreachable-image")
        defer { group.stop() }
        let (a, b) = (group.directory + "/l1.png", group.directory + "/l2.png")
        try FileManager.default.createSymbolicLink(atPath: a, withDestinationPath: b)
        try FileManager.default.createSymbolicLink(atPath: b, withDestinationPath: a)
        var (status, log) = try SlideMapTests.coordinator(group, ["inspect-image", a], log: "loop")
        #expect(status != 0 && log.contains("cannot reach the file") && !log.contains("file not found"), "\(log)")
        (status, log) = try SlideMapTests.coordinator(
            group, ["inspect-image", group.directory + "/none.png"], log: "none")
        #expect(status != 0 && log.contains("file not found: no such file"), "\(log)")
    }

    /// F4: a 230-byte name failed with "File name too long" only once mapped (a cluster job after computing).
    @Test("An image name too long for its outputs' temporary names is refused before mapping")
    func longName() throws {
        let group = try ProcessGroup("long-name")
        defer { group.stop() }
        let image = group.directory + "/" + String(repeating: "n", count: 210) + ".png"
        try ClusterFixture.writeImage(to: image, height: 40, width: 50)
        let (status, log) = try SlideMapTests.coordinator(
            group, ["run", "--in-process"] + ClusterFixture.modelFlags + ["--out", group.directory + "/o", image],
            log: "long")
        #expect(status == 64 && log.contains("its name is 210 bytes without the extension"), "\(log)")
    }
}
