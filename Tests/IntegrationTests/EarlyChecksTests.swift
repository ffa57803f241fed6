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
}
