import Foundation
import Testing

@testable import TesseraCore

/// `parentPath` stands in for `NSString.deletingLastPathComponent`, which traps on a one-character relative
/// path in this Foundation (verification audit 40 N2: `submit --out o` died with SIGILL).
@Suite("Path text: the parent folder")
struct PathTextTests {
    @Test("As NSString's where that works; one-character paths too")
    func parent() {
        for path in [
            "ab", "ab/cd", "/ab", "/ab/cd", "/", "", "./o", "../x", "x/y", "ab/", "ab/cd/", "/ab/cd//", "a//bc",
            "/usr/local/bin/tessera-worker", "maps/slide.zarr",
        ] {
            #expect(parentPath(path) == (path as NSString).deletingLastPathComponent, "\(path)")
        }
        #expect(parentPath("o") == "" && parentPath("o/") == "" && parentPath("/o") == "/" && parentPath("x/y/") == "x")
    }
}
