/// A perceptually uniform dark-blue → green → yellow ramp (viridis-like:
/// anchors sampled from matplotlib's viridis every 1/8, linearly
/// interpolated into 256 entries). Low probabilities are dark and nearly
/// transparent in the overlay, high ones bright yellow.
enum ColorMap {
    static let anchors: [(Float, Float, Float)] = [
        (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
        (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
    ]

    /// 256 RGB entries, index = probability × 255.
    static let viridis: [(r: Float, g: Float, b: Float)] = (0..<256).map { index in
        let position = Float(index) / 255 * Float(anchors.count - 1)
        let lower = min(Int(position), anchors.count - 2)
        let t = position - Float(lower)
        let a = anchors[lower], b = anchors[lower + 1]
        return (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t, a.2 + (b.2 - a.2) * t)
    }
}
