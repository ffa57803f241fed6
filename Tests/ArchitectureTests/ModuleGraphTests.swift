import Foundation
import Testing

/// The module graph of docs/ARCHITECTURE.md, checked against every `import` in
/// Sources: a file that imports a module its module may not depend on fails here,
/// naming the file and the import (SwiftPM alone lets a module import anything
/// built before it).
@Suite("Module graph")
struct ModuleGraphTests {
    /// Each module's folder and the project modules (including C shims) it may import.
    static let allowed: [(module: String, folder: String, imports: Set<String>)] = [
        ("TesseraCore", "Sources/Shared/Core", ["CChecksum"]),
        (
            "TesseraImage", "Sources/Shared/Image",
            ["TesseraCore", "CPNGIO", "CSlideIO", "COpenSlide", "CTIFF", "CTIFFIO", "CZlib", "CBlosc"]
        ),
        ("TesseraModel", "Sources/Shared/Model", ["TesseraCore", "TesseraImage"]),
        ("TesseraPlan", "Sources/Shared/Plan", ["TesseraCore", "TesseraModel"]),
        (
            "TesseraEngine", "Sources/Shared/Engine",
            ["TesseraCore", "TesseraModel", "TesseraPlan", "CKernels", "COpenBLAS"]
        ),
        ("TesseraCUDA", "Sources/Shared/CUDA", ["TesseraCore", "TesseraModel", "TesseraEngine"]),
        ("TesseraWire", "Sources/Shared/Wire", ["TesseraCore", "CZeroMQ"]),
        (
            "TesseraCluster", "Sources/Shared/Cluster",
            ["TesseraCore", "TesseraImage", "TesseraModel", "TesseraPlan", "TesseraWire"]
        ),
        ("TesseraMetrics", "Sources/Shared/Metrics", ["TesseraCore"]),
        (
            "CLISupport", "Sources/Shared/CLISupport",
            ["TesseraCore", "TesseraImage", "TesseraModel", "TesseraEngine", "TesseraCUDA", "TesseraWire"]
        ),
        (
            "CoordinatorService", "Sources/Coordinator/Service",
            [
                "TesseraCore", "TesseraImage", "TesseraModel", "TesseraPlan", "TesseraWire", "TesseraCluster",
                "TesseraMetrics",
            ]
        ),
        (
            "Coordinator", "Sources/Coordinator/CLI",
            [
                "TesseraCore", "TesseraImage", "TesseraModel", "TesseraPlan", "TesseraEngine", "TesseraCUDA",
                "TesseraWire",
                "TesseraCluster", "CoordinatorService", "CLISupport", "TesseraMetrics",
            ]
        ),
        (
            "Worker", "Sources/Worker",
            [
                "TesseraCore", "TesseraImage", "TesseraModel", "TesseraPlan", "TesseraEngine", "TesseraCUDA",
                "TesseraWire", "TesseraCluster", "CLISupport", "TesseraMetrics",
            ]
        ),
    ]

    /// Modules of this package (everything else imported is the toolchain's or a dependency's).
    static let projectModules: Set<String> = Set(allowed.map(\.module))
        .union([
            "CPNGIO", "CKernels", "COpenBLAS", "CZeroMQ", "CLibPNG", "CTIFF", "COpenSlide", "CSlideIO", "CTIFFIO",
            "CZlib", "CBlosc", "CChecksum",
        ])

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// (file, imported module) for every import of a project module under `folder`.
    static func imports(under folder: String) throws -> [(file: String, module: String)] {
        let base = root.appendingPathComponent(folder)
        guard let walker = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil) else { return [] }
        var out: [(String, String)] = []
        for case let url as URL in walker where url.pathExtension == "swift" {
            for module in importedNames(in: try String(contentsOf: url, encoding: .utf8))
            where projectModules.contains(module) {
                out.append((String(url.path.dropFirst(root.path.count + 1)), module))
            }
        }
        return out
    }

    /// The module named by each `import` line of a Swift file (`import struct M.T` counts as M).
    static func importedNames(in text: String) -> [String] {
        var out: [String] = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            guard let i = words.firstIndex(of: "import"), i + 1 < words.count,
                words[..<i].allSatisfy({
                    [
                        "@testable", "internal", "public", "package", "@_exported",
                        "private", "fileprivate",
                    ].contains($0)
                })
            else { continue }
            var name = words[i + 1]
            if ["struct", "class", "enum", "protocol", "func", "typealias", "var", "let"].contains(name),
                i + 2 < words.count
            {
                name = words[i + 2]
            }
            out.append(String(name.split(separator: ".").first ?? Substring(name)))
        }
        return out
    }

    @Test("every module imports only the modules below it", arguments: allowed.map(\.module))
    func importsFollowTheGraph(module: String) throws {
        let entry = try #require(Self.allowed.first { $0.module == module })
        let found = try Self.imports(under: entry.folder)
        #expect(!found.isEmpty || module == "TesseraCore", "no imports found under \(entry.folder): wrong folder?")
        for (file, imported) in found where imported != module {
            #expect(entry.imports.contains(imported), "\(file) imports \(imported), which \(module) may not depend on")
        }
    }

    @Test("the coordinator's service and the engine stay apart")
    func serviceHasNoEngine() throws {
        let forbidden: [(String, Set<String>)] = [
            ("Sources/Coordinator/Service", ["TesseraEngine", "TesseraCUDA", "COpenBLAS", "CKernels"]),
            ("Sources/Shared/Engine", ["TesseraWire", "TesseraCluster", "TesseraCUDA", "TesseraImage"]),
            ("Sources/Shared/Plan", ["TesseraEngine", "TesseraWire"]),
        ]
        for (folder, bad) in forbidden {
            for (file, imported) in try Self.imports(under: folder) {
                #expect(!bad.contains(imported), "\(file) imports \(imported)")
            }
        }
    }

    @Test("each C library is imported by one module only")
    func oneWrapperPerCLibrary() throws {
        var owners: [String: Set<String>] = [:]
        for entry in Self.allowed {
            for (_, imported) in try Self.imports(under: entry.folder)
            where imported.hasPrefix("C") && imported != "CLISupport" {
                owners[imported, default: []].insert(entry.module)
            }
        }
        for (library, modules) in owners {
            #expect(modules.count == 1, "\(library) is imported by \(modules.sorted())")
        }
    }

    @Test("no regular target uses @testable imports: a plain `swift build -c release` builds them")
    func noTestableOutsideTests() throws {
        for folder in Self.allowed.map(\.folder) + ["Tests/TestSupport"] {
            let base = Self.root.appendingPathComponent(folder)
            guard let walker = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil) else {
                continue
            }
            for case let url as URL in walker where url.pathExtension == "swift" {
                let text = try String(contentsOf: url, encoding: .utf8)
                #expect(
                    !text.contains("@testable import"),
                    "\(url.path) uses @testable: release builds without testing fail")
            }
        }
    }

    @Test("the check can fail: a forbidden import is reported")
    func checkCanFail() throws {
        let dir = Self.root.appendingPathComponent("Sources/Shared/Engine/.graph-probe-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "import TesseraCluster\n".write(
            to: dir.appendingPathComponent("Probe.swift"), atomically: true, encoding: .utf8)
        let engine = try #require(Self.allowed.first { $0.module == "TesseraEngine" })
        let bad = try Self.imports(under: engine.folder).filter { !engine.imports.contains($0.module) }
        #expect(bad.map(\.module) == ["TesseraCluster"])
    }
}
