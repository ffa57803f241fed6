import TesseraCore
import TesseraModel

/// A float32 activation of one image, `c × h × w`, row-major (CHW), in memory
/// the tensor owns. A class so that large activations are never copied by
/// accident; the engine frees each one as soon as its last reader has run.
package final class Tensor: @unchecked Sendable {
    package let shape: Shape
    package let storage: UnsafeMutableBufferPointer<Float>
    /// The memory `storage` lies in when the tensor does not own it.
    private let arena: ActivationArena?

    /// A zero-filled tensor.
    package convenience init(_ shape: Shape) {
        self.init(uninitialized: shape)
        storage.initialize(repeating: 0)
    }

    /// A tensor whose values the caller writes in full before reading them
    /// (layer outputs: zero-filling them first would cost a pass over memory).
    package init(uninitialized shape: Shape) {
        self.shape = shape
        storage = .allocate(capacity: max(1, shape.count))
        arena = nil
    }

    /// A tensor in `arena`'s memory from `offset` floats on, uninitialized; the arena
    /// lives as long as the tensor (a forward pass's activations, see `ActivationPlan`).
    init(uninitialized shape: Shape, in arena: ActivationArena, at offset: Int) {
        self.shape = shape
        storage = UnsafeMutableBufferPointer(start: arena.base + offset, count: max(1, shape.count))
        self.arena = arena
    }

    /// A tensor holding `values` (count must match).
    package convenience init(_ shape: Shape, values: [Float]) {
        precondition(values.count == shape.count, "tensor values do not match the shape \(shape)")
        self.init(uninitialized: shape)
        _ = storage.initialize(from: values)
    }

    deinit { if arena == nil { storage.deallocate() } }

    package var c: Int { shape.c }
    package var h: Int { shape.h }
    package var w: Int { shape.w }
    package var count: Int { shape.count }
    package var planeSize: Int { shape.h * shape.w }
    package var pointer: UnsafeMutablePointer<Float> { storage.baseAddress! }

    /// Start of channel `c`'s plane.
    @inlinable package func plane(_ c: Int) -> UnsafeMutablePointer<Float> { storage.baseAddress! + c * h * w }

    @inlinable package subscript(c: Int, y: Int, x: Int) -> Float {
        get { storage[(c * h + y) * w + x] }
        set { storage[(c * h + y) * w + x] = newValue }
    }

    package var values: [Float] { Array(storage.prefix(count)) }

    /// A copy with its own storage.
    package func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.pointer.update(from: pointer, count: count)
        return t
    }

    /// Sets every value outside `rect` (rows and columns of each channel's plane) to `value`.
    package func fill(outside rect: PixelRect, with value: Float) {
        let y0 = min(max(rect.y, 0), h), y1 = min(max(rect.y + rect.height, y0), h)
        let x0 = min(max(rect.x, 0), w), x1 = min(max(rect.x + rect.width, x0), w)
        if y0 == 0 && y1 == h && x0 == 0 && x1 == w { return }
        for c in 0..<self.c {
            let p = plane(c)
            p.update(repeating: value, count: y0 * w)
            (p + y1 * w).update(repeating: value, count: (h - y1) * w)
            for y in y0..<y1 {
                (p + y * w).update(repeating: value, count: x0)
                (p + y * w + x1).update(repeating: value, count: w - x1)
            }
        }
    }
}
