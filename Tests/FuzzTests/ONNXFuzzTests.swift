import Foundation
import SwiftProtobuf
import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TestSupport

/// The ONNX fixtures (`Tests/Fixtures/onnx`), each as one self-contained file: the seeds
/// the ONNX mutators start from.
enum ONNXFuzzSeeds {
    static let all: [[UInt8]] = {
        let root = TestPaths.fixtures.appendingPathComponent("onnx")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).sorted()
        return names.compactMap { name in
            try? ONNXFiles.selfContainedBytes(root.appendingPathComponent("\(name)/model.onnx").path)
        }
    }()
}

@Suite("ONNX parser fuzzing")
struct ONNXFuzzTests {
    @Test("≥100 000 mutated ONNX models: decode, import, surgery, shapes — errors only, never a crash")
    func onnx() throws {
        let seeds = ONNXFuzzSeeds.all
        try #require(seeds.count >= 5, "the ONNX fixtures are the fuzz seeds")
        let trees = seeds.map { ProtobufMutator.parse($0) ?? [] }
        try #require(trees.allSatisfy { !$0.isEmpty }, "every seed parses as protobuf")
        // The seed-shaped net is ~30× a small fixture: pick it rarely.
        let small = seeds.indices.filter { seeds[$0].count < 65_536 }
        let large = seeds.indices.filter { seeds[$0].count >= 65_536 }
        let rawDonors = small.map { seeds[$0] }
        let treeDonors = small.map { trees[$0] }
        let summary = runFuzz(target: "onnx", seed: 0x0_4E4E_0000, iterations: 100_000) { rng, _ in
            let i = (large.isEmpty || !rng.chance(50)) ? rng.pick(small) : rng.pick(large)
            var bytes: [UInt8]
            if rng.chance(4) {
                bytes = seeds[i]
                for _ in 0..<(1 + rng.int(3)) { ByteMutation.mutate(&bytes, &rng, donors: rawDonors) }
            } else {
                bytes = ProtobufMutator.serialize(ProtobufMutator.mutate(trees[i], &rng, donors: treeDonors))
                if rng.chance(8) { ByteMutation.mutate(&bytes, &rng, donors: rawDonors) }
            }
            return bytes
        } body: { input in
            do {
                let patch: Int? = input.count % 5 == 0 ? 1 + Int(input.count % 40) : nil
                let loaded = try ModelLoader.load(
                    ModelContents(prototxt: Data(input), prototxtName: "net.onnx", weights: nil), patchSize: patch)
                try? loaded.requireExact(allowApproximate: false)
                _ = try ModelReport(model: loaded, preprocessing: Preprocessing())
                return .accepted
            } catch let e as ModelError {
                guard e.message.count > 10 else { throw FuzzInvariantError("undescriptive error: \(e)") }
                return .rejected(e.kind.rawValue)
            }
        }
        #expect(summary.accepted > 0 || FuzzEnvironment.onlyIndex != nil, "some mutants should still load")
        #expect(summary.rejected["UNEXPECTED"] == nil)
    }
}
