import TesseraCore

extension Net {
    /// The same net with deterministic pseudo-random weights (uniform, scaled by
    /// 1/√fan-in so activations stay O(1)): for benchmarks and tests of nets
    /// whose trained weights are not published.
    package func withRandomWeights(seed: UInt64 = 1) -> Net {
        var rng = SplitMix64(seed: seed)
        func values(_ n: Int, scale: Float) -> [Float] {
            (0..<n).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale }
        }
        var net = self
        for i in net.layers.indices {
            switch net.layers[i].op {
            case .convolution(var c):
                let fanIn = max(1, c.weights.count / max(1, c.outputs))
                c.weights = values(c.weights.count, scale: 1.7 / Float(fanIn).squareRoot())
                if let b = c.bias { c.bias = values(b.count, scale: 0.1) }
                net.layers[i].op = .convolution(c)
            case .innerProduct(var ip):
                ip.weights = values(ip.weights.count, scale: 1.7 / Float(max(1, ip.inputs)).squareRoot())
                if let b = ip.bias { ip.bias = values(b.count, scale: 0.1) }
                net.layers[i].op = .innerProduct(ip)
            default:
                break
            }
        }
        return net
    }
}
