import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// A map with NaN or infinite values is an error naming the tile, in every mode (numerics audit 33:
/// NaN pixels of `dense` and `shift` maps were written with exit status 0).
@Suite("Non-finite outputs: an error naming the tile, never a map")
struct NonFiniteOutputTests {
    /// A net whose arithmetic overflows: weights of 1e30 over two convolutions give infinities, and the
    /// softmax of infinities NaN. (Finite weights: `ParameterCheck` accepts them.)
    static var overflowing: Net {
        func huge(_ layer: Layer) -> Layer {
            var l = layer
            if case .convolution(var c) = l.op {
                c.weights = c.weights.map { $0 >= 0 ? 1e30 : -1e30 }
                l.op = .convolution(c)
            }
            return l
        }
        return Net(
            name: "overflowing", inputName: "data", inputChannels: 3, patchSize: Size2(square: 8),
            layers: [
                huge(TestNets.conv("conv1", "data", "conv1", cin: 3, cout: 4, k: 3, seed: 60)),
                huge(TestNets.conv("conv2", "conv1", "conv2", cin: 4, cout: 4, k: 3, seed: 61)),
                TestNets.ip("fc", "conv2", "fc", inputs: 4 * 16, outputs: 2, seed: 62),
                TestNets.op("prob", .softmax, ["fc"], "prob"),
            ])
    }

    @Test("An overflowing net: every mode throws, naming the task and the first bad value", arguments: MapMode.allCases)
    func overflowThrows(mode: MapMode) throws {
        let engine = try MapEngine(classifier: Self.overflowing)
        let mapper = LocalMapper(engine: engine, preprocessing: ModeAgreementTests.preprocessing, threads: 2)
        let image = ArrayImage.random(height: 12, width: 10, seed: 5)
        #expect {
            _ = try mapper.map(image, mode: mode)
        } throws: { error in
            let text = "\(error)"
            return (error as? EngineError)?.kind == .netOutput && text.contains("NaN or infinite")
                && text.contains("task \(mode)") && text.contains("its arithmetic overflowed")
        }
    }

    @Test("requireFinite counts the bad values and locates the first")
    func locatesFirst() throws {
        let t = Tensor(Shape(c: 2, h: 3, w: 4))
        for i in 0..<t.count { t.pointer[i] = 0.5 }
        try MapEngine.requireFinite(t, task: TileTask(mode: .dense, rect: PixelRect(y: 0, x: 0, height: 3, width: 4)))
        t.pointer[1 * 12 + 2 * 4 + 1] = .infinity
        t.pointer[1 * 12 + 2 * 4 + 3] = .nan
        #expect {
            try MapEngine.requireFinite(
                t, task: TileTask(mode: .dense, rect: PixelRect(y: 0, x: 0, height: 3, width: 4)))
        } throws: {
            "\($0)".contains("2 values that are NaN or infinite (the first, inf, at class 1, row 2, column 1")
        }
    }
}
