/// A clamp to [low, high] (ONNX Clip, Caffe Clip, ReLU6) from the layers the engine has: ReLUs and
/// per-channel Scales, one after another, so every backend runs it with no kernel of its own.
///
/// - both bounds: `y = high − relu((high − low) − relu(x − low))`: x below low gives low, above high
///   gives high, between them x. Rounding: `(high − low) − a` rounds by at most half an ulp of
///   `high − low` and the outer subtraction is then exact (Sterbenz), so inside the bounds the error
///   is about an ulp of the bounds (≤ 2.4e-7 for ReLU6) plus the rounding of `x − low`.
/// - only low: `relu(x − low) + low`; only high: `high − relu(high − x)` (relative rounding).
/// - low 0 needs no shift: `relu(x)` is `relu(x − 0)` exactly.
package enum ClampSteps {
    /// The operations, each reading the previous one's output (the first reads x); empty when
    /// neither bound is given (the clamp is an identity).
    package static func steps(low: Float?, high: Float?, channels: Int) -> [LayerOp] {
        func affine(_ scale: Float, _ bias: Float) -> LayerOp {
            .scale(
                Scale(
                    scale: [Float](repeating: scale, count: channels),
                    bias: bias == 0 ? nil : [Float](repeating: bias, count: channels)))
        }
        let relu = LayerOp.relu(negativeSlope: 0)
        var ops: [LayerOp] = []
        if let low {
            if low != 0 { ops.append(affine(1, -low)) }
            ops.append(relu)
            if let high {
                ops += [affine(-1, high - low), relu, affine(-1, high)]
            } else if low != 0 {
                ops.append(affine(1, low))
            }
        } else if let high {
            ops += [affine(-1, high), relu, affine(-1, high)]
        }
        return ops
    }
}
