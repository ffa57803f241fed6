/// A pixel-wise class-probability map: float32, `classes × height × width`,
/// row-major (C order), exactly the layout of the `.npy` output.
package struct ProbabilityMap: Sendable, Equatable {
    package let classes: Int
    package let height: Int
    package let width: Int
    /// `classes * height * width` values; `data[(c * height + y) * width + x]`.
    package var data: [Float]

    package init(classes: Int, height: Int, width: Int, data: [Float]) {
        precondition(data.count == classes * height * width, "map data does not match its shape")
        self.classes = classes
        self.height = height
        self.width = width
        self.data = data
    }

    package init(classes: Int, height: Int, width: Int) {
        self.init(
            classes: classes, height: height, width: width,
            data: [Float](repeating: 0, count: classes * height * width))
    }

    @inlinable package subscript(c: Int, y: Int, x: Int) -> Float {
        get { data[(c * height + y) * width + x] }
        set { data[(c * height + y) * width + x] = newValue }
    }
}
