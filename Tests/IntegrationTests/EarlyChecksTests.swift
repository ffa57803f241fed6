import Foundation
import Testing

@testable import TestSupport

/// Output options that cannot work are refused before any tile is computed.
@Suite("Early checks of output options")
struct EarlyChecksTests {
    @Test(
        "--classes and --overlay-class outside the net, and an --out that cannot be a folder, fail before mapping",
        arguments: [["--classes", "9"], ["--overlay-class", "3"], ["--out-under-file"]])
    func refusedBeforeMapping(extra: [String]) throws {
        let group = try ProcessGroup("early")
        defer { group.stop() }
        let image = group.directory + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 40, width: 50)
        let blocker = group.directory + "/a-file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        let out = extra == ["--out-under-file"] ? blocker + "/out" : group.directory + "/out"
        let flags = extra == ["--out-under-file"] ? [] : extra
        for command in ["run", "submit"] {
            let (s, l) = try SlideMapTests.coordinator(
                group, [command] + ClusterFixture.modelFlags + flags + ["--out", out, image], log: "\(command)\(extra)")
            #expect(s != 0, "\(command) \(extra) was accepted: \(l)")
            let expected = extra == ["--out-under-file"] ? "a-file is a file, not a folder" : "the net has 3 classes"
            #expect(l.contains(expected), "\(command) \(extra): \(l)")
            #expect(!l.contains("mapping") && !l.contains("submitted"), "\(command) \(extra) started work: \(l)")
        }
    }

    /// Two inputs of one stem wrote the same outputs, the second silently replacing the first.
    @Test("run and submit refuse two images with the same stem, naming both")
    func sameStemRefused() throws {
        let group = try ProcessGroup("same-stem")
        defer { group.stop() }
        try FileManager.default.createDirectory(atPath: group.directory + "/b", withIntermediateDirectories: true)
        let (a, b) = (group.directory + "/img.png", group.directory + "/b/img.png")
        try ClusterFixture.writeImage(to: a, height: 40, width: 50)
        try ClusterFixture.writeImage(to: b, height: 40, width: 50)
        for command in ["run", "submit"] {
            let (s, l) = try SlideMapTests.coordinator(
                group, [command] + ClusterFixture.modelFlags + ["--out", group.directory + "/out", a, b],
                log: "\(command)-stem")
            #expect(s != 0 && l.contains("\(a) and \(b) would both write img.*"), "\(command): \(l)")
        }
    }

    /// The embedded workers' shared roots are the images' folders; the coordinator reads
    /// an image at its link's target, which was outside them ("outside --shared-root").
    @Test("run maps an image given through a symbolic link in another folder")
    func symlinkedImage() throws {
        let group = try ProcessGroup("symlink")
        defer { group.stop() }
        let real = group.directory + "/data/img.png"
        try FileManager.default.createDirectory(atPath: group.directory + "/data", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: group.directory + "/links", withIntermediateDirectories: true)
        try ClusterFixture.writeImage(to: real, height: 40, width: 50)
        let link = group.directory + "/links/img.png"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        let (s, l) = try SlideMapTests.coordinator(
            group, ["run"] + ClusterFixture.modelFlags + ["--outputs", "npy", "--out", group.directory + "/out", link],
            log: "run-link")
        #expect(s == 0, "\(l)")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/out/img.npy"), "\(l)")
    }
}
