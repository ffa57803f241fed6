import TesseraCore

extension Net {
    /// The dense form of a fully convolutional net (docs/ARCHITECTURE.md §3): every layer
    /// after a stride-s layer is dilated by the accumulated stride and run with
    /// stride 1, so one pass yields every pixel of the S² shifted passes, each
    /// unique value computed once. Returns the net and, per layer, the dilation
    /// WITHIN_CHANNEL LRN must use.
    package func densified(patch: Size2? = nil) throws -> (net: Net, lrnDilation: [Size2]) {
        let (_, perLayer) = try geometry(patch: patch)
        var dense = self
        var lrnDilation = [Size2](repeating: .one, count: layers.count)
        for (i, layer) in layers.enumerated() {
            let j = perLayer[i].inputJump
            switch layer.op {
            case .convolution(var c):
                c.dilation = Size2(c.dilation.h * j.h, c.dilation.w * j.w)
                c.pad = Size2(c.pad.h * j.h, c.pad.w * j.w)
                c.stride = .one
                dense.layers[i].op = .convolution(c)
            case .pooling(var p):
                guard !p.global else {
                    throw ModelError(
                        layer: layer.name, "global pooling has no dense form: the net is not fully convolutional")
                }
                p.dilation = Size2(p.dilation.h * j.h, p.dilation.w * j.w)
                p.pad = Size2(p.pad.h * j.h, p.pad.w * j.w)
                p.stride = .one
                dense.layers[i].op = .pooling(p)
            case .innerProduct:
                throw ModelError(
                    layer: layer.name,
                    "is an InnerProduct: convert the net to a fully convolutional one first (net surgery)")
            case .lrn(let l) where l.region == .withinChannel:
                lrnDilation[i] = j
            default:
                break
            }
        }
        return (dense, lrnDilation)
    }
}
