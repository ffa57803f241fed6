/// A height/width pair (kernel, stride, pad, dilation, spatial size).
package struct Size2: Hashable, Sendable, CustomStringConvertible {
    package var h: Int
    package var w: Int
    package init(_ h: Int, _ w: Int) {
        self.h = h
        self.w = w
    }
    package init(square n: Int) { self.init(n, n) }
    package static let one = Size2(1, 1)
    package static let zero = Size2(0, 0)
    package var isSquare: Bool { h == w }
    package var description: String { h == w ? "\(h)" : "\(h)×\(w)" }
}

extension Int {
    /// Division rounding toward minus infinity.
    @inlinable package func floorDiv(_ d: Int) -> Int {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
}
