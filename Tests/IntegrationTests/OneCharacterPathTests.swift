import Foundation
import Testing

@testable import TestSupport

/// Verification audit 40 N2: `submit --out o` (a folder not yet there, named by one character) died with
/// SIGILL in Foundation's `deletingLastPathComponent`; so would `run` of an image named "a".
@Suite("One-character paths")
struct OneCharacterPathTests {
    @Test("submit --out o and run of an image named 'a' in the working folder do not trap")
    func oneCharacter() throws {
        let group = try ProcessGroup("one-character")
        defer { group.stop() }
        try ClusterFixture.writeImage(to: group.directory + "/a", height: 40, width: 50)
        func inFolder(_ arguments: [String]) throws -> (Int32, String) {
            try OddPathTests.inFolder(group.directory, arguments)
        }
        var (status, output) = try inFolder(
            ["submit", "--coordinator", "tcp://127.0.0.1:1", "--reconnect-timeout", "1"] + ClusterFixture.modelFlags
                + ["--outputs", "npy", "--out", "o", "a"])
        #expect(status != 132 && !output.contains("crashed"), "\(output)")
        (status, output) = try inFolder(
            ["run", "--in-process", "--check", "0"] + ClusterFixture.modelFlags + [
                "--outputs", "npy", "--out", "p", "a",
            ])
        #expect(status == 0, "\(output)")
        (status, output) = try inFolder(
            ["run", "--check", "0"] + ClusterFixture.modelFlags + ["--outputs", "npy", "--out", "q", "a"])
        #expect(status == 0, "\(output)")
        #expect(FileManager.default.fileExists(atPath: group.directory + "/q/a.npy"), "\(output)")
    }
}
