import Foundation
import TesseraModel

/// The seed models (../shared/models/seed next to the package): reference data that is
/// never committed; tests that need it are skipped when it is absent.
enum Seed {
    static let root: URL = TestPaths.packageRoot
        .deletingLastPathComponent()
        .appendingPathComponent("shared/models/seed")

    static var available: Bool {
        FileManager.default.fileExists(atPath: root.appendingPathComponent("README.md").path)
    }

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
}

/// A scratch folder for written files (inside this process's `ProcessScratch` folder).
func temporaryDirectory() throws -> URL {
    URL(fileURLWithPath: try ProcessScratch.fresh("tessera-model-"))
}

func writeFile(_ dir: URL, _ name: String, _ text: String) throws -> String {
    let url = dir.appendingPathComponent(name)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
}

func writeFile(_ dir: URL, _ name: String, _ data: Data) throws -> String {
    let url = dir.appendingPathComponent(name)
    try data.write(to: url)
    return url.path
}

/// Deterministic pseudo-random numbers (xorshift) for test weights.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> Float {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Float(state % 2_000_001) / 1_000_000 - 1
    }
}

extension Net {
    /// The same net with every weight and bias replaced by fixed pseudo-random values.
    func randomised(seed: UInt64) -> Net {
        var r = TestRandom(seed: seed)
        func fill(_ a: [Float]) -> [Float] { a.map { _ in r.next() * 0.1 } }
        var out = self
        out.layers = layers.map { l in
            var l = l
            switch l.op {
            case .convolution(var c):
                c.weights = fill(c.weights); c.bias = c.bias.map(fill); l.op = .convolution(c)
            case .innerProduct(var ip):
                ip.weights = fill(ip.weights); ip.bias = ip.bias.map(fill); l.op = .innerProduct(ip)
            default: break
            }
            return l
        }
        return out
    }
}

/// Error text of a failing load (or a note that it did not fail).
func loadError(_ source: ModelSource) -> String {
    do {
        _ = try ModelLoader.load(source)
        return "(no error)"
    } catch {
        return "\(error)"
    }
}
