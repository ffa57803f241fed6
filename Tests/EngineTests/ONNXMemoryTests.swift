import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// Peak memory of importing a large ONNX model and building its engine, measured in
/// a child process (this test binary run again with only this test selected), so that
/// no other test's allocations count. A 119 MB model's `run --in-process` peaked at
/// 597 MB when each of the engine's four runners packed its own copy of the weights.
@Suite("ONNX import memory")
struct ONNXMemoryTests {
    static let probeVariable = "TESSERA_ONNX_MEMORY_PROBE"

    @Test("a 64 MB ONNX model imports in 2.5× its weights and runs in 3×, not 5×")
    func memoryProbe() throws {
        let environment = ProcessInfo.processInfo.environment
        if let resultPath = environment[Self.probeVariable] {
            try Self.runProbe(resultPath: resultPath)
            return
        }
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let resultPath = directory.file("result.txt")
        let child = try runProbeChild(
            suite: "ONNXMemoryTests", variable: Self.probeVariable, value: resultPath, resultPath: resultPath)
        guard let result = child.result else {
            Issue.record("the probe child wrote no result (status \(child.status)): \(child.output.suffix(2000))")
            return
        }
        print("ONNX memory probe:\n\(result)")
        var values: [String: Int] = [:]
        for line in result.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let v = Int(fields[1]) { values[String(fields[0])] = v }
        }
        guard let weights = values["weights"], let load = values["load"], let engine = values["engine"],
            let reset = values["reset"]
        else {
            Issue.record("incomplete probe result: \(result)")
            return
        }
        guard reset == 1 else {
            print("ONNX memory probe: cannot restart the peak (/proc/self/clear_refs); nothing checked")
            return
        }
        // Import: the file's bytes and the decoded message (or the message and the
        // floats) at once, 2× the weights; the engine adds one packed copy.
        #expect(Double(load) < 2.5 * Double(weights), "import peaked at \(load) bytes for \(weights) of weights")
        #expect(Double(engine) < 3 * Double(weights), "import + engine peaked at \(engine) for \(weights) of weights")
        if let packed = values["packed"], let convolutions = values["convolutions"], packed > 0 {
            #expect(packed == convolutions, "the runners packed \(packed) weight arrays for \(convolutions) layers")
        }
    }

    /// A 3-channel 16×16 classifier with ~64 MB of weights, most in one 3×3 convolution.
    static var bigNet: Net {
        Net(
            name: "big", inputName: "data", inputChannels: 3, patchSize: Size2(square: 16),
            layers: [
                TestNets.conv("conv1", "data", "conv1", cin: 3, cout: 64, k: 3, seed: 1),
                TestNets.op("relu1", .relu(negativeSlope: 0), ["conv1"], "conv1"),
                TestNets.conv("conv2", "conv1", "conv2", cin: 64, cout: 256, k: 3, seed: 2),
                TestNets.op("relu2", .relu(negativeSlope: 0), ["conv2"], "conv2"),
                TestNets.op("pool2", TestNets.maxPool(2, 2), ["conv2"], "pool2"),
                TestNets.conv("conv3", "pool2", "conv3", cin: 256, cout: 1024, k: 3, seed: 3),
                TestNets.op("relu3", .relu(negativeSlope: 0), ["conv3"], "conv3"),
                TestNets.conv("conv4", "conv3", "conv4", cin: 1024, cout: 1536, k: 3, seed: 4),
                TestNets.op("relu4", .relu(negativeSlope: 0), ["conv4"], "conv4"),
                TestNets.ip("fc5", "conv4", "fc5", inputs: 1536 * 2 * 2, outputs: 2, seed: 5),
                TestNets.op("prob", .softmax, ["fc5"], "prob"),
            ])
    }

    /// Writes the model, then measures the peak resident memory above what the process
    /// held before loading it (`load`) and before loading it and building its engine (`engine`).
    static func runProbe(resultPath: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let path = directory.file("big.onnx")
        var weights = 0
        do {
            let net = bigNet
            for layer in net.layers {
                switch layer.op {
                case .convolution(let c): weights += 4 * (c.weights.count + (c.bias?.count ?? 0))
                case .innerProduct(let ip): weights += 4 * (ip.weights.count + (ip.bias?.count ?? 0))
                default: break
                }
            }
            try Data(ONNXWriter.write(net, input: Size2(square: 16))).write(to: URL(fileURLWithPath: path))
        }
        var lines = ["weights \(weights)"]
        let reset = ResourceUsage.resetPeakResident()
        let before = ONNXMemoryProbe.resident()
        var loaded: LoadedModel? = try ModelLoader.load(ModelSource(model: path))
        lines.append("load \(ONNXMemoryProbe.peak() - before)")
        ResourceUsage.resetPeakResident()
        let engine = try MapEngine(model: loaded!)
        lines.append("engine \(ONNXMemoryProbe.peak() - before)")
        lines.append("reset \(reset ? 1 : 0)")
        lines.append("packed \(engine.packedWeightArrays)")
        let convolutions = engine.plan.dense.layers.filter {
            if case .convolution = $0.op { return true }
            return false
        }.count
        lines.append("convolutions \(convolutions)")
        loaded = nil
        try lines.joined(separator: "\n").write(toFile: resultPath, atomically: true, encoding: .utf8)
    }
}

/// Resident memory from /proc/self/status (bytes).
enum ONNXMemoryProbe {
    static func field(_ name: String) -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return 0
    }
    static func resident() -> Int { field("VmRSS") }
    static func peak() -> Int { field("VmHWM") }
}
