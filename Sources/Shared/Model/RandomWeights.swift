extension Net {
    /// The same net with deterministic pseudo-random weights (uniform, scaled by
    /// 1/√fan-in so activations stay O(1)): for benchmarks and tests of nets
    /// whose trained weights are not published.
    public func withRandomWeights(seed: UInt64 = 1) -> Net {
        var state = seed
        func values(_ n: Int, scale: Float) -> [Float] {
            (0..<n).map { _ in
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                return (Float(z >> 40) / Float(1 << 24) * 2 - 1) * scale
            }
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
