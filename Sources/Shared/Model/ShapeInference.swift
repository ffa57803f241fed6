import TesseraCore

/// The shape of one image's activations: channels × height × width.
package struct Shape: Hashable, Sendable, CustomStringConvertible {
    package var c: Int
    package var h: Int
    package var w: Int
    package init(c: Int, h: Int, w: Int) {
        self.c = c
        self.h = h
        self.w = w
    }
    package var count: Int { c * h * w }
    package var spatial: Size2 { Size2(h, w) }
    package var description: String { "\(c)×\(h)×\(w)" }
}

/// Output sizes of the spatial layers, as Caffe computes them.
package enum OutputSize {
    /// Convolution: floor division (Caffe's `ConvolutionLayer::compute_output_shape`).
    package static func convolution(input: Int, kernel: Int, stride: Int, pad: Int, dilation: Int) -> Int {
        let extent = dilation * (kernel - 1) + 1
        return (input + 2 * pad - extent) / stride + 1
    }

    /// Pooling: Caffe rounds up, then drops a last window that would start in the
    /// padding; rounded down (`roundsUp` false), only whole windows count. Without
    /// padding a last window can start past the input only when the stride exceeds the
    /// kernel: Caffe keeps that empty window (its max is −FLT_MAX, its average 0/0), and
    /// PyTorch and onnxruntime drop it, as Tessera does (fuzz audit: the map was −inf/NaN).
    package static func pooling(
        input: Int, kernel: Int, stride: Int, pad: Int, dilation: Int = 1, roundsUp: Bool = true
    ) -> Int {
        let extent = dilation * (kernel - 1) + 1
        let span = input + 2 * pad - extent
        guard roundsUp else { return span.floorDiv(stride) + 1 }
        var pooled = (span + stride - 1).floorDiv(stride) + 1
        if (pooled - 1) * stride >= input + pad { pooled -= 1 }
        return pooled
    }
}

extension Net {
    /// Shapes for one input of `input` pixels: every blob by name, and each
    /// layer's output (its first top) in layer order. Throws naming the layer
    /// whose input does not fit.
    package func shapes(input: Size2) throws -> (blobs: [String: Shape], layers: [Shape]) {
        var blobs: [String: Shape] = [inputName: Shape(c: inputChannels, h: input.h, w: input.w)]
        var perLayer: [Shape] = []
        perLayer.reserveCapacity(layers.count)
        for layer in layers {
            let ins = try layer.bottoms.map { name -> Shape in
                guard let s = blobs[name] else {
                    throw ModelError(layer: layer.name, "input blob '\(name)' is not produced by any earlier layer")
                }
                return s
            }
            let out = try layer.outputShape(inputs: ins)
            for top in layer.tops { blobs[top] = out }
            perLayer.append(out)
        }
        return (blobs, perLayer)
    }
}

extension Layer {
    /// Largest activation (values of one blob for one image) shape inference
    /// accepts: 2^48, past any memory, far enough from Int's limit that sizes in
    /// bytes and sums over a few blobs cannot overflow.
    package static let maxActivationCount = 1 << 48

    /// The shape this layer produces from its inputs' shapes; throws when it
    /// would hold more than `maxActivationCount` values.
    package func outputShape(inputs: [Shape]) throws -> Shape {
        let shape = try uncheckedOutputShape(inputs: inputs)
        let a = shape.c.multipliedReportingOverflow(by: shape.h)
        let b = a.partialValue.multipliedReportingOverflow(by: shape.w)
        guard shape.c >= 0, !a.overflow, !b.overflow, b.partialValue <= Self.maxActivationCount else {
            throw ModelError(
                .shape, layer: name,
                "its output would be \(shape.c)×\(shape.h)×\(shape.w) values, "
                    + "more than 2^48")
        }
        return shape
    }

    private func uncheckedOutputShape(inputs: [Shape]) throws -> Shape {
        guard let first = inputs.first else { throw ModelError(layer: name, "has no input") }
        func fail(_ message: String) -> ModelError { ModelError(layer: name, message) }
        switch op {
        case .convolution(let conv):
            let expected = conv.inputsPerGroup * conv.group
            guard first.c == expected else {
                throw fail(
                    "expects \(expected) input channels (weights \(conv.outputs)×\(conv.inputsPerGroup)×"
                        + "\(conv.kernel.h)×\(conv.kernel.w), group \(conv.group)) but its input has \(first.c)")
            }
            let h = OutputSize.convolution(
                input: first.h, kernel: conv.kernel.h, stride: conv.stride.h,
                pad: conv.pad.h, dilation: conv.dilation.h)
            let w = OutputSize.convolution(
                input: first.w, kernel: conv.kernel.w, stride: conv.stride.w,
                pad: conv.pad.w, dilation: conv.dilation.w)
            guard h > 0, w > 0 else {
                throw fail(
                    "a \(conv.kernel) kernel (dilation \(conv.dilation)) does not fit its "
                        + "\(first.h)×\(first.w) input")
            }
            return Shape(c: conv.outputs, h: h, w: w)
        case .pooling(let pool):
            if pool.global { return Shape(c: first.c, h: 1, w: 1) }
            let h = OutputSize.pooling(
                input: first.h, kernel: pool.kernel.h, stride: pool.stride.h,
                pad: pool.pad.h, dilation: pool.dilation.h, roundsUp: pool.roundsUp)
            let w = OutputSize.pooling(
                input: first.w, kernel: pool.kernel.w, stride: pool.stride.w,
                pad: pool.pad.w, dilation: pool.dilation.w, roundsUp: pool.roundsUp)
            guard h > 0, w > 0 else {
                throw fail("a \(pool.kernel) pooling window does not fit its \(first.h)×\(first.w) input")
            }
            return Shape(c: first.c, h: h, w: w)
        case .innerProduct(let ip):
            guard first.count == ip.inputs else {
                throw fail("weights expect \(ip.inputs) inputs but its input is \(first) = \(first.count) values")
            }
            return Shape(c: ip.outputs, h: 1, w: 1)
        case .relu, .sigmoid, .tanh, .elu, .softplus, .lrn, .identity, .softmax:
            return first
        case .batchNorm(let bn):
            guard bn.mean.count == first.c else {
                throw fail("has \(bn.mean.count) channels of statistics but its input has \(first.c) channels")
            }
            return first
        case .scale(let s):
            guard s.scale.count == first.c else {
                throw fail("has \(s.scale.count) scale values but its input has \(first.c) channels")
            }
            return first
        case .concat:
            for s in inputs where s.h != first.h || s.w != first.w {
                throw fail("concatenates \(first) with \(s): spatial sizes differ")
            }
            var channels = 0
            for s in inputs {
                let (sum, overflow) = channels.addingReportingOverflow(s.c)
                guard !overflow else { throw fail("concatenates more channels than Int can count") }
                channels = sum
            }
            return Shape(c: channels, h: first.h, w: first.w)
        case .eltwise:
            for s in inputs where s != first {
                throw fail("combines \(first) with \(s): shapes differ")
            }
            return first
        }
    }
}
