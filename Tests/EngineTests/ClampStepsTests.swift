import Testing

@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraModel

/// Clip, ReLU6, HardSigmoid: a clamp built from ReLU and Scale layers (`ClampSteps`), run by the
/// engine, against `min(max(x, low), high)` (NumPy's `np.clip`) over values far past both bounds.
@Suite("Clamps from ReLU and Scale layers")
struct ClampStepsTests {
    static let bounds: [(Float?, Float?)] = [
        (0, 6), (-1, 1), (-0.5, 0.8), (2, 3), (nil, 0.8), (-0.5, nil), (3, nil), (nil, -2), (1, 0.5),
    ]

    @Test("The engine's clamp equals min(max(x, low), high) to about an ulp of the bounds", arguments: bounds.indices)
    func clamp(_ index: Int) throws {
        let (low, high) = Self.bounds[index]
        let shape = Shape(c: 3, h: 7, w: 11)
        // Values from −1000 to 1000, dense near the bounds, plus exact bounds and tiny values.
        var values = (0..<shape.count).map { i -> Float in
            let t = Float(i) / Float(shape.count - 1)
            return i % 3 == 0 ? (t - 0.5) * 2000 : (t - 0.5) * 16
        }
        values[0] = low ?? 0
        values[1] = high ?? 0
        values[2] = 1e-9
        values[3] = -1e-9
        let x = Tensor(shape, values: values)
        let ops = ClampSteps.steps(low: low, high: high, channels: shape.c)
        var layers: [Layer] = []
        for (i, op) in ops.enumerated() {
            layers.append(Layer(name: "s\(i)", op: op, bottoms: [i == 0 ? "data" : "t\(i - 1)"], tops: ["t\(i)"]))
        }
        let net = Net(name: "t", inputName: "data", inputChannels: shape.c, patchSize: nil, layers: layers)
        let got = try NetRunner(net: net).forward(x, threads: 2).values
        for (v, g) in zip(values, got) {
            var want = v
            if let low { want = max(want, low) }
            if let high { want = min(want, high) }
            // Only a high bound: high − (high − x) rounds relative to x.
            let allowed: Float = low == nil && high != nil ? max(1e-6, abs(v) * 1.2e-7) : 1e-6
            #expect(abs(g - want) <= allowed, "x \(v): got \(g), want \(want)")
        }
        #expect(ops.count <= 5 && (low != 0 || high != nil || ops == [.relu(negativeSlope: 0)]))
    }
}
