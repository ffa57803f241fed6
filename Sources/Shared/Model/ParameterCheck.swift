/// Refuses parameters that make a map of NaNs, or worse a plausible one: a NaN weight
/// whose layer feeds a ReLU comes out as 0 (max(NaN, 0) is 0 in the engine's kernels,
/// while Caffe and onnxruntime keep the NaN), so the map looks like probabilities and
/// is wrong. Such a model is a broken file or a diverged training run; nothing is
/// gained by running it.
enum ParameterCheck {
    /// Throws, naming the layer, the parameter, its index and value, at the first
    /// non-finite parameter, or a BatchNorm variance that makes `variance + eps` ≤ 0.
    static func requireFinite(_ net: Net, file: String) throws {
        for layer in net.layers {
            func check(_ values: [Float]?, _ what: String) throws {
                guard let values, let i = firstNonFinite(values) else { return }
                throw ModelError(
                    .weights, file: file, layer: layer.name,
                    "\(what) [\(i)] is \(values[i]) (of \(values.count) values): a model with NaN or infinite "
                        + "parameters gives no usable map (a damaged file, or a training run that diverged)")
            }
            func check(_ value: Float, _ what: String) throws {
                guard !value.isFinite else { return }
                throw ModelError(.weights, file: file, layer: layer.name, "\(what) is \(value): it must be finite")
            }
            switch layer.op {
            case .convolution(let c):
                try check(c.weights, "weights")
                try check(c.bias, "bias")
            case .innerProduct(let p):
                try check(p.weights, "weights")
                try check(p.bias, "bias")
            case .batchNorm(let b):
                try check(b.mean, "mean")
                try check(b.variance, "variance")
                try check(b.eps, "eps")
                try check(b.scale, "scale")
                try check(b.bias, "bias")
                if let i = b.variance.firstIndex(where: { !($0 + b.eps > 0) }) {
                    throw ModelError(
                        .weights, file: file, layer: layer.name,
                        "variance [\(i)] is \(b.variance[i]) with eps \(b.eps): variance + eps must be positive "
                            + "(its square root divides the channel)")
                }
            case .scale(let s):
                try check(s.scale, "scale")
                try check(s.bias, "bias")
            case .lrn(let l):
                try check(l.alpha, "alpha")
                try check(l.beta, "beta")
                try check(l.k, "k")
            case .relu(let slope):
                try check(slope, "negative slope")
            case .elu(let alpha):
                try check(alpha, "alpha")
            case .eltwise(let e):
                try check(e.coefficients, "coefficients")
            case .pooling, .sigmoid, .tanh, .softplus, .identity, .softmax, .concat:
                break
            }
        }
    }

    /// The index of the first NaN or infinity, scanning in blocks the compiler vectorises.
    static func firstNonFinite(_ values: [Float]) -> Int? {
        values.withUnsafeBufferPointer { v in
            var start = 0
            while start < v.count {
                let end = min(v.count, start + 4096)
                var sum: Float = 0
                for i in start..<end { sum += v[i] * 0 }  // NaN for a NaN or an infinity, else 0
                if sum != 0 || sum.isNaN {
                    return (start..<end).first { !v[$0].isFinite }
                }
                start = end
            }
            return nil
        }
    }
}
