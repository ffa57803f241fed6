/// A height/width pair (kernel, stride, pad, dilation, spatial size).
public struct Size2: Hashable, Sendable, CustomStringConvertible {
    public var h: Int
    public var w: Int
    public init(_ h: Int, _ w: Int) {
        self.h = h
        self.w = w
    }
    public init(square n: Int) { self.init(n, n) }
    public static let one = Size2(1, 1)
    public static let zero = Size2(0, 0)
    public var isSquare: Bool { h == w }
    public var description: String { h == w ? "\(h)" : "\(h)×\(w)" }
}

extension Int {
    /// Division rounding toward minus infinity.
    @inlinable package func floorDiv(_ d: Int) -> Int {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
}
