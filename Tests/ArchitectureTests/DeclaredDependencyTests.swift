import Foundation
import Testing

/// Every module a target imports is one it declares in Package.swift. SwiftPM lets a
/// target import any module built before it; an undeclared one builds from clean but
/// an incremental build need not rebuild the importer when the imported module's
/// layout changes (a worker compiled against an old `MapLayout` crashed that way).
@Suite("Declared dependencies")
struct DeclaredDependencyTests {
    struct Target {
        let name: String
        let path: String
        let dependencies: Set<String>
    }

    /// The package's targets as `swift package dump-package` reads Package.swift.
    static func targets() throws -> [Target] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // A scratch path of its own: the suite may run while another build holds `.build`'s lock.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-dump-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        process.arguments = [
            "swift", "package", "--package-path", ModuleGraphTests.root.path, "--scratch-path", scratch.path,
            "dump-package",
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CocoaError(
                .fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "swift package dump-package failed"])
        }
        return try parse(data)
    }

    static func parse(_ data: Data) throws -> [Target] {
        let root = try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let targets = try #require(root["targets"] as? [[String: Any]])
        return try targets.map { target in
            let name = try #require(target["name"] as? String)
            var dependencies: Set<String> = []
            for dependency in target["dependencies"] as? [[String: Any]] ?? [] {
                // {"byName": [name, condition]}, {"target": [...]}, {"product": [name, package, ...]}
                for value in dependency.values {
                    if let first = (value as? [Any])?.first as? String { dependencies.insert(first) }
                }
            }
            let path = target["path"] as? String ?? "Sources/\(name)"
            return Target(name: name, path: path, dependencies: dependencies)
        }
    }

    /// Modules imported by the Swift files under `folder`, with the first file importing each.
    static func importedModules(under folder: String) throws -> [String: String] {
        let base = ModuleGraphTests.root.appendingPathComponent(folder)
        guard let walker = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil) else { return [:] }
        var out: [String: String] = [:]
        for case let url as URL in walker where url.pathExtension == "swift" {
            for module in try ModuleGraphTests.importedNames(in: String(contentsOf: url, encoding: .utf8)) {
                out[module] = out[module] ?? String(url.path.dropFirst(ModuleGraphTests.root.path.count + 1))
            }
        }
        return out
    }

    /// Violations as "file imports M, which target T does not declare".
    static func undeclared(in targets: [Target]) throws -> [String] {
        // The modules this package can name: its targets and the products its targets use
        // (each product here has a module of the same name). The toolchain's (Foundation,
        // Glibc, Testing…) are not checked.
        var known = Set(targets.map(\.name))
        for target in targets { known.formUnion(target.dependencies) }
        var problems: [String] = []
        for target in targets {
            for (module, file) in try importedModules(under: target.path)
            where known.contains(module) && module != target.name && !target.dependencies.contains(module) {
                problems.append(
                    "\(file) imports \(module), which target \(target.name) does not declare in Package.swift")
            }
        }
        return problems.sorted()
    }

    @Test("every imported package module is a declared dependency of the importing target")
    func importsAreDeclared() throws {
        let targets = try Self.targets()
        #expect(targets.contains { $0.name == "Worker" } && targets.count > 20, "dump-package read no targets")
        for problem in try Self.undeclared(in: targets) { Issue.record(Comment(rawValue: problem)) }
    }

    @Test("the check can fail: an import a target does not declare is reported")
    func checkCanFail() throws {
        let targets = try Self.targets()
        let worker = try #require(targets.first { $0.name == "Worker" })
        // The Worker target as it was before it declared TesseraImage.
        let stripped = targets.map {
            $0.name == "Worker"
                ? Target(name: $0.name, path: $0.path, dependencies: worker.dependencies.subtracting(["TesseraImage"]))
                : $0
        }
        let added = Set(try Self.undeclared(in: stripped)).subtracting(try Self.undeclared(in: targets))
        #expect(!added.isEmpty && added.allSatisfy { $0.contains("imports TesseraImage, which target Worker") })
    }
}
