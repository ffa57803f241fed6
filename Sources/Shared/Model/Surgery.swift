import TesseraCore

/// Net surgery (docs/ARCHITECTURE.md §2): the patch classifier becomes a fully convolutional
/// net that computes the same numbers at every output position.
extension Net {
    /// Every InnerProduct becomes a Convolution whose kernel is the spatial size of
    /// its input at patch size (the first one, e.g. 6×6; the following ones 1×1).
    /// The weights `outputs × (C·h·w)` are the same numbers read as
    /// `outputs × C × h × w` (row-major). Renamed like the original hand-made
    /// FCNs: layer and output blob `fc6` become `fc6-conv`.
    /// Global pooling becomes an ordinary pooling whose window is its input at
    /// patch size (stride 1), for the same reason.
    /// A net without InnerProduct or global pooling layers is returned unchanged.
    package func fullyConvolutional(patch: Size2? = nil) throws -> Net {
        guard
            layers.contains(where: {
                switch $0.op {
                case .innerProduct: return true
                case .pooling(let pl): return pl.global
                default: return false
                }
            })
        else {
            return self
        }
        guard let p = patch ?? patchSize else {
            throw ModelError(
                .patchSize, "the patch size is unknown: give the size of the patches the classifier was trained on")
        }
        _ = try shapes(input: p)  // the whole net fits at patch size
        var current: [String: Shape] = [inputName: Shape(c: inputChannels, h: p.h, w: p.w)]
        var renamed: [String: String] = [:]
        var out = self
        out.layers = []
        for layer in layers {
            var l = layer
            let ins = layer.bottoms.compactMap { current[$0] }
            let shape = try layer.outputShape(inputs: ins)
            l.bottoms = layer.bottoms.map { renamed[$0] ?? $0 }
            l.tops = layer.tops.map { renamed[$0] ?? $0 }
            if case .innerProduct(let ip) = layer.op, let input = ins.first {
                guard input.count == ip.inputs else {
                    throw ModelError(
                        .weights, layer: layer.name, "weights expect \(ip.inputs) inputs but its input is \(input)")
                }
                l.op = .convolution(
                    Convolution(
                        outputs: ip.outputs, kernel: input.spatial, weights: ip.weights,
                        bias: ip.bias))
                l.name = layer.name + "-conv"
                for t in layer.tops {
                    renamed[t] = t + "-conv"
                }
                l.tops = layer.tops.map { renamed[$0] ?? $0 }
            }
            if case .pooling(var pl) = layer.op, pl.global, let input = ins.first {
                pl.global = false
                pl.kernel = input.spatial
                pl.stride = .one
                pl.pad = .zero
                l.op = .pooling(pl)
            }
            for t in layer.tops { current[t] = shape }
            out.layers.append(l)
        }
        return out
    }
}
