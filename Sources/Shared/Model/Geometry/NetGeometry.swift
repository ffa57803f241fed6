import TesseraCore

/// How a patch classifier's output pixels map onto its input (docs/ARCHITECTURE.md §1–2):
/// receptive field, total stride, where the first window starts, and whether
/// the fully convolutional net is exactly the classifier applied to every patch.
package struct NetGeometry: Sendable, Equatable {
    /// The patch size P the classifier takes.
    package var patchSize: Size2
    /// Input pixels one output pixel depends on.
    package var receptiveField: Size2
    /// Total stride S: product of all strides.
    package var stride: Size2
    /// Input offset of output pixel 0's window (negative when layers pad).
    package var origin: Size2
    /// Why the fully convolutional net is not exact; empty when it is.
    package var inexactReasons: [String]
    /// The classifier's number of classes (output channels).
    package var classes: Int

    package var isExact: Bool { inexactReasons.isEmpty }
}

/// Per-layer position in the net: accumulated stride and dilation the dense mode needs.
package struct LayerGeometry: Sendable, Equatable {
    /// Product of the strides of all layers before this one (its input's pixel spacing).
    package var inputJump: Size2
    /// This layer's own stride.
    package var stride: Size2
    /// Receptive field of this layer's output.
    package var receptiveField: Size2
}

extension Net {
    /// Largest receptive field, total stride or offset (pixels, per axis) a net may
    /// have: PNG's own limit on a side, 2^31 − 1. Beyond it the arithmetic of the
    /// geometry and of the engine's dense mode would overflow.
    package static let maxGeometry = Int(Int32.max)

    /// Geometry at patch size `patch` (defaults to the net's own patch size).
    /// Throws when the net's output at patch size is not 1×1 or shapes don't fit.
    package func geometry(patch: Size2? = nil) throws -> (net: NetGeometry, layers: [LayerGeometry]) {
        guard let p = patch ?? patchSize else {
            throw ModelError(
                .patchSize, "the patch size is unknown: give the size of the patches the classifier was trained on")
        }
        let (_, shapes) = try shapes(input: p)
        var pos: [String: GeometryPosition] = [inputName: GeometryPosition(rf: .one, jump: .one, origin: .zero)]
        var inputShape: [String: Shape] = [inputName: Shape(c: inputChannels, h: p.h, w: p.w)]
        var reasons: [String] = []
        var perLayer: [LayerGeometry] = []

        for (index, layer) in layers.enumerated() {
            guard let first = layer.bottoms.first, let firstAt = pos[first], let inShape = inputShape[first] else {
                throw ModelError(layer: layer.name, "has no input")
            }
            let at = try merged(layer, first: firstAt, positions: pos)
            let window = LayerWindow(layer, input: inShape, output: shapes[index], patch: p, reasons: &reasons)
            let out = try at.after(window, layer: layer.name)
            perLayer.append(LayerGeometry(inputJump: at.jump, stride: window.stride, receptiveField: out.rf))
            for top in layer.tops {
                pos[top] = out
                inputShape[top] = shapes[index]
            }
        }
        guard let last = layers.last, let final = pos[last.tops.first ?? ""], let outShape = shapes.last else {
            throw ModelError("the net has no layers")
        }
        guard outShape.h == 1, outShape.w == 1 else {
            throw ModelError(
                layer: last.name,
                "the net's output at patch size \(p) is \(outShape.h)×\(outShape.w), not 1×1: "
                    + "the patch size does not match the classifier (give the training crop size with --patch-size)")
        }
        let geometry = NetGeometry(
            patchSize: p, receptiveField: final.rf, stride: final.jump, origin: final.origin,
            inexactReasons: reasons, classes: outShape.c)
        return (geometry, perLayer)
    }

    /// Where the pixels of a layer with several inputs (Concat, Eltwise) sit. It pairs
    /// its inputs' pixels by index, in the classifier and in every pass alike, so the
    /// inputs need one pixel grid: the same total stride, and windows with the same
    /// centre. Their windows may differ in size (a ResNet block's identity shortcut
    /// beside convolutions padded by half their kernel): the output's window is the
    /// largest, around that centre.
    private func merged(
        _ layer: Layer, first at: GeometryPosition, positions pos: [String: GeometryPosition]
    ) throws -> GeometryPosition {
        var out = at
        for other in layer.bottoms.dropFirst() {
            guard let o = pos[other] else { continue }
            guard o.jump == at.jump, o.centre2 == at.centre2 else {
                throw ModelError(
                    .shape, layer: layer.name,
                    "combines inputs whose pixels do not line up: total strides \(at.jump) and \(o.jump), "
                        + "window centres (of output pixel 0, in input pixels) at \(at.centreText) and "
                        + "\(o.centreText). Branches that meet must have the same stride and windows with the "
                        + "same centre (their sizes may differ, as around a ResNet block's identity shortcut)")
            }
            let end = Size2(
                max(out.origin.h + out.rf.h, o.origin.h + o.rf.h), max(out.origin.w + out.rf.w, o.origin.w + o.rf.w))
            out.origin = Size2(min(out.origin.h, o.origin.h), min(out.origin.w, o.origin.w))
            out.rf = Size2(end.h - out.origin.h, end.w - out.origin.w)
        }
        return out
    }
}

/// Where a blob's pixels sit on the input: receptive field, spacing (total stride)
/// and the input offset of its pixel 0's window.
private struct GeometryPosition {
    var rf: Size2
    var jump: Size2
    var origin: Size2

    /// Twice the input position of output pixel 0's window centre (an integer also for even windows).
    var centre2: Size2 { Size2(2 * origin.h + rf.h - 1, 2 * origin.w + rf.w - 1) }

    var centreText: String {
        func text(_ c2: Int) -> String { c2 % 2 == 0 ? "\(c2 / 2)" : "\(Double(c2) / 2)" }
        let c = centre2
        return c.h == c.w ? text(c.h) : "\(text(c.h))×\(text(c.w))"
    }

    /// The position of a layer's output, given its window on this input. Checked:
    /// absurd strides, kernels and dilations (each up to 65536) multiply past Int
    /// within a few layers.
    func after(_ window: LayerWindow, layer: String) throws -> GeometryPosition {
        let h = try axis(
            rf.h, jump.h, origin.h, window.kernel.h, window.stride.h, window.pad.h, window.dilation.h,
            "vertical", window: window, layer: layer)
        let w = try axis(
            rf.w, jump.w, origin.w, window.kernel.w, window.stride.w, window.pad.w, window.dilation.w,
            "horizontal", window: window, layer: layer)
        return GeometryPosition(rf: Size2(h.rf, w.rf), jump: Size2(h.jump, w.jump), origin: Size2(h.origin, w.origin))
    }

    private func axis(
        _ rf: Int, _ jump: Int, _ origin: Int, _ k: Int, _ s: Int, _ p: Int, _ d: Int, _ name: String,
        window: LayerWindow, layer: String
    ) throws -> (rf: Int, jump: Int, origin: Int) {
        let extent = d.multipliedReportingOverflow(by: k - 1)
        let grow = extent.partialValue.multipliedReportingOverflow(by: jump)
        let newRF = rf.addingReportingOverflow(grow.partialValue)
        let newJump = jump.multipliedReportingOverflow(by: s)
        let shift = p.multipliedReportingOverflow(by: jump)
        let newOrigin = origin.subtractingReportingOverflow(shift.partialValue)
        let overflow =
            extent.overflow || grow.overflow || newRF.overflow || newJump.overflow || shift.overflow
            || newOrigin.overflow
        guard !overflow, newRF.partialValue <= Net.maxGeometry, newJump.partialValue <= Net.maxGeometry,
            abs(newOrigin.partialValue) <= Net.maxGeometry
        else {
            throw ModelError(
                layer: layer,
                "its \(name) receptive field, total stride or offset exceeds \(Net.maxGeometry) pixels "
                    + "(kernel \(window.kernel), stride \(window.stride), dilation \(window.dilation), pad \(window.pad) "
                    + "after a total stride of \(self.jump)): larger than any image Tessera reads")
        }
        return (newRF.partialValue, newJump.partialValue, newOrigin.partialValue)
    }
}

/// The window a layer slides over its input, as far as geometry is concerned; layers
/// that work pixel by pixel have a 1×1 window of stride 1.
private struct LayerWindow {
    var kernel = Size2.one, stride = Size2.one, pad = Size2.zero, dilation = Size2.one

    /// The layer's window at patch size; appends to `reasons` why the layer makes
    /// the fully convolutional net inexact (padding, a partial pooling window).
    init(_ layer: Layer, input inShape: Shape, output outShape: Shape, patch p: Size2, reasons: inout [String]) {
        switch layer.op {
        case .convolution(let c):
            (kernel, stride, pad, dilation) = (c.kernel, c.stride, c.pad, c.dilation)
            if c.pad != .zero {
                reasons.append("layer '\(layer.name)' (Convolution \(c.kernel)) pads by \(c.pad)")
            }
        case .pooling(let pl):
            if pl.global {
                kernel = inShape.spatial
            } else {
                (kernel, stride, pad, dilation) = (pl.kernel, pl.stride, pl.pad, pl.dilation)
            }
            if pl.pad != .zero {
                reasons.append("layer '\(layer.name)' (Pooling \(pl.kernel)) pads by \(pl.pad)")
            }
            // Partial: rounding up keeps a last window that rounding down would not (one that starts
            // past the input, stride > kernel, is dropped either way).
            func partial(_ input: Int, _ k: Int, _ s: Int, _ p: Int, _ d: Int) -> Bool {
                OutputSize.pooling(input: input, kernel: k, stride: s, pad: p, dilation: d, roundsUp: true)
                    != OutputSize.pooling(input: input, kernel: k, stride: s, pad: p, dilation: d, roundsUp: false)
            }
            if !pl.global, pl.roundsUp,
                partial(inShape.h, kernel.h, stride.h, pad.h, dilation.h)
                    || partial(inShape.w, kernel.w, stride.w, pad.w, dilation.w)
            {
                reasons.append(
                    "layer '\(layer.name)' (Pooling \(pl.kernel) stride \(pl.stride)) has a partial "
                        + "last window on its \(inShape.h)×\(inShape.w) input at patch size \(p): the layer rounds "
                        + "its output size up (Caffe's default, ONNX ceil_mode=1) to \(outShape.h)×\(outShape.w)")
            }
        case .innerProduct:
            kernel = inShape.spatial
        case .lrn(let l) where l.region == .withinChannel && l.size > 1:
            // Caffe computes it with a size×size average pool padded by (size-1)/2.
            kernel = Size2(square: l.size)
            pad = Size2(square: (l.size - 1) / 2)
            reasons.append("layer '\(layer.name)' (LRN within channel, \(l.size)×\(l.size)) pads by \(pad)")
        default:
            break
        }
    }
}
