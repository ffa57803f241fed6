import Foundation

/// Where the package's files are, from this file's own path (Tests/TestSupport/TestPaths.swift).
enum TestPaths {
    /// The package root (the folder holding Package.swift).
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // TestSupport
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // package root
    /// Tests/Fixtures: the OpenCV/NumPy reference outputs.
    static let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures")
}
