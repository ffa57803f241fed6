import TesseraCore

/// Where every blob's pixels sit in the image during one forward pass of a net,
/// and which layers read past their input's edges (padding).
///
/// In a pass whose input pixel 0 lies at global (padded-image) position `c0`,
/// pixel `x` of blob `b` is the one whose window starts at
/// `c0 + offset[b] + x · jump[b]` (per axis). Padding moves a window start back
/// by `pad · inputJump`; strides multiply the jump. The strided net and its dense
/// form have the same offsets; the dense form's jumps are all 1.
package struct PassLayout: Sendable, Equatable {
    /// A layer's window over its input, in that input's pixels.
    package struct Window: Sendable, Equatable {
        package var kernel: Size2
        package var dilation: Size2
        package var pad: Size2
        /// What the layer reads where it pads: 0, or −FLT_MAX for MAX pooling (Caffe ignores padding there).
        package var padValue: Float
        /// A pooling that rounds its output size up: in a pass, its last window may hang over the end of
        /// its input (Caffe's partial window, which AVE divides by its taps inside the padded input).
        package var roundsUp = false
        package var pads: Bool { pad != .zero }
        /// Whether a pass must tell this layer where its input's real values end: it pads, or it may
        /// add a partial last window (`validRegions` extends its output by it).
        package var needsMask: Bool { pads || roundsUp }
    }

    package struct Placement: Sendable, Equatable {
        package var offset: Size2
        package var jump: Size2
    }

    /// Per layer: its window (nil for pointwise layers).
    package private(set) var windows: [Window?] = []
    /// Per layer: where its (first) input's and its output's pixels sit.
    package private(set) var inputs: [Placement] = []
    package private(set) var outputs: [Placement] = []

    /// - Parameter lrnDilation: per-layer dilation of WITHIN_CHANNEL LRN windows (the dense form's; default 1).
    package init(_ net: Net, lrnDilation: [Size2]? = nil) {
        var blobs = [net.inputName: Placement(offset: .zero, jump: .one)]
        for (i, layer) in net.layers.enumerated() {
            var at = layer.bottoms.first.flatMap { blobs[$0] } ?? Placement(offset: .zero, jump: .one)
            // A layer with several inputs pairs their pixels by index; their windows share a
            // centre (`Net.geometry` checks it), so the largest window, which starts first, is the output's.
            for other in layer.bottoms.dropFirst() {
                guard let o = blobs[other] else { continue }
                at.offset = Size2(min(at.offset.h, o.offset.h), min(at.offset.w, o.offset.w))
            }
            var window: Window?
            var stride = Size2.one
            switch layer.op {
            case .convolution(let c):
                window = Window(kernel: c.kernel, dilation: c.dilation, pad: c.pad, padValue: 0)
                stride = c.stride
            case .pooling(let p) where !p.global:
                window = Window(
                    kernel: p.kernel, dilation: p.dilation, pad: p.pad,
                    padValue: p.method == .max ? -Float.greatestFiniteMagnitude : 0, roundsUp: p.roundsUp)
                stride = p.stride
            case .lrn(let l) where l.region == .withinChannel && l.size > 1:
                // Caffe's within-channel LRN averages x² over a size×size window padded by (size−1)/2.
                let d = lrnDilation?[i] ?? .one, half = (l.size - 1) / 2
                window = Window(
                    kernel: Size2(square: l.size), dilation: d, pad: Size2(half * d.h, half * d.w),
                    padValue: 0)
            default:
                break
            }
            let pad = window?.pad ?? .zero
            let out = Placement(
                offset: Size2(at.offset.h - pad.h * at.jump.h, at.offset.w - pad.w * at.jump.w),
                jump: Size2(at.jump.h * stride.h, at.jump.w * stride.w))
            windows.append(window)
            inputs.append(at)
            outputs.append(out)
            for top in layer.tops { blobs[top] = out }
        }
    }

    /// How far a pass's real values reach past the whole windows of a pooling that rounds up.
    package enum PartialWindows: Sendable {
        /// Not at all: releases before 0.3.2 (placement 3), whose map's last rows differed from Caffe's pass.
        case leftOut
        /// One output stride: 0.3.2 and 0.3.3 (placement 4), which also took windows starting past the input
        /// for real values.
        case wholeStride
        /// One output stride, but only windows that start on a real input pixel (placement 5).
        case startingInInput
    }

    /// Whether any layer pads: only then do passes need `validRegions`.
    package var pads: Bool { windows.contains { $0?.pads == true } }

    /// Whether a pooling over `n` input pixels along one axis has a partial last window: rounded up
    /// (Caffe's `OutputSize.pooling`) it has one more output than whole windows give.
    static func hasPartialWindow(input n: Int, kernel k: Int, stride s: Int, pad p: Int, dilation d: Int) -> Bool {
        guard n + 2 * p >= (k - 1) * d + 1 else { return false }
        return OutputSize.pooling(input: n, kernel: k, stride: s, pad: p, dilation: d, roundsUp: true)
            > OutputSize.pooling(input: n, kernel: k, stride: s, pad: p, dilation: d, roundsUp: false)
    }

    /// For a pass over the whole image whose input covers the global `input`
    /// rectangle: the global rectangle of each blob that holds real values (the
    /// rest of the blob, when a tile computes it, is padding to its readers).
    /// Computed as the dense form's pass (all jumps 1, windows dilated by the
    /// input jump), which is what `shift` and `fast` passes sample. A pooling that
    /// rounds up keeps the partial last window Caffe's pass over `input` has (one
    /// output stride more), so a later layer pads where Caffe's pass pads; tiles
    /// divide that window's average as Caffe does (`PoolingKernel`'s `counted`).
    /// (It was left out: the map's last rows and columns differed from Caffe's pass
    /// by up to 0.6 on the seed's nuclei net, and 0.1–0.2 in a fuzz of random nets.)
    /// `rule`: how releases computed the partial windows (`PartialWindows`); the current one by default.
    package func validRegions(
        _ net: Net, input: PixelRect, partialWindows rule: PartialWindows = .startingInInput
    )
        -> [String: PixelRect]
    {
        var valid: [String: PixelRect] = [net.inputName: input]
        var placements = [net.inputName: Placement(offset: .zero, jump: .one)]
        for (i, layer) in net.layers.enumerated() {
            guard var r = layer.bottoms.first.flatMap({ valid[$0] }) else { continue }
            if layer.bottoms.count > 1 {
                // Pixel i of each input is paired with the output's pixel i: move each input's
                // rectangle (window starts) to the output's window starts, then intersect.
                func moved(_ name: String) -> PixelRect? {
                    guard let v = valid[name], let o = placements[name] else { return nil }
                    let out = outputs[i].offset
                    return PixelRect(
                        y: v.y + out.h - o.offset.h, x: v.x + out.w - o.offset.w, height: v.height, width: v.width)
                }
                r = moved(layer.bottoms[0]) ?? r
                for other in layer.bottoms.dropFirst() {
                    if let o = moved(other) { r = r.intersection(o) }
                }
            }
            if let w = windows[i] {
                let j = inputs[i].jump
                let (ph, pw) = (w.pad.h * j.h, w.pad.w * j.w)
                let (sh, sw) = ((w.kernel.h - 1) * w.dilation.h * j.h, (w.kernel.w - 1) * w.dilation.w * j.w)
                var extra = Size2.zero
                if w.roundsUp && rule != .leftOut {
                    // The pass's pooling keeps Caffe's partial last window: one more output, one
                    // output stride further, whose window hangs over the input's end (on the
                    // shift-0 lattice, where the pass's own pixels lie: this rectangle starts on it).
                    let s = Size2(outputs[i].jump.h / j.h, outputs[i].jump.w / j.w)
                    let partialH = Self.hasPartialWindow(
                        input: -((-r.height).floorDiv(j.h)), kernel: w.kernel.h, stride: s.h, pad: w.pad.h,
                        dilation: w.dilation.h)
                    let partialW = Self.hasPartialWindow(
                        input: -((-r.width).floorDiv(j.w)), kernel: w.kernel.w, stride: s.w, pad: w.pad.w,
                        dilation: w.dilation.w)
                    // At most to windows that start on a real input pixel: the band one stride wide also holds the
                    // other lattices' windows (those of `shift`'s displaced passes and the dense pass), and where the
                    // kernel is no wider than the stride, or pads, some of them start past the input's end (a
                    // padded pass's max was −FLT_MAX there, its average 0/0: NaN and saturated pixels in `dense`
                    // and `shift` maps; numerics audit 33). Caffe's own last window starts on one too
                    // (`OutputSize.pooling` drops the one that would not).
                    let reach =
                        rule == .wholeStride ? Size2(j.h * s.h, j.w * s.w) : Size2(max(0, sh - ph), max(0, sw - pw))
                    extra = Size2(
                        partialH ? min(j.h * s.h, reach.h) : 0, partialW ? min(j.w * s.w, reach.w) : 0)
                }
                r = PixelRect(
                    y: r.y - ph, x: r.x - pw, height: r.height + 2 * ph - sh + extra.h,
                    width: r.width + 2 * pw - sw + extra.w)
            }
            for top in layer.tops {
                valid[top] = r
                placements[top] = outputs[i]
            }
        }
        return valid
    }

    /// For a pass of `net` (the net this layout was made from) whose input pixel 0
    /// lies at global `inputOrigin`: for each layer that pads, the part of its
    /// input, in that input's own pixels, that holds real values according to
    /// `valid` (from `validRegions`); the layer must see its padding value
    /// everywhere else. Nil for layers that do not pad.
    package func paddingMasks(_ net: Net, valid: [String: PixelRect], inputOrigin c0: Size2) -> [PixelRect?] {
        func ceilDiv(_ a: Int, _ b: Int) -> Int { -((-a).floorDiv(b)) }
        return net.layers.indices.map { i in
            guard windows[i]?.needsMask == true, let name = net.layers[i].bottoms.first, let v = valid[name] else {
                return nil
            }
            let p = inputs[i]
            let (dy, dx) = (c0.h + p.offset.h, c0.w + p.offset.w)
            let y0 = ceilDiv(v.y - dy, p.jump.h), y1 = ceilDiv(v.y + v.height - dy, p.jump.h)
            let x0 = ceilDiv(v.x - dx, p.jump.w), x1 = ceilDiv(v.x + v.width - dx, p.jump.w)
            return PixelRect(y: y0, x: x0, height: max(0, y1 - y0), width: max(0, x1 - x0))
        }
    }
}

extension PixelRect {
    /// The rectangle with `margin` more rows above and below and columns left and right.
    package func grown(by margin: Size2) -> PixelRect {
        PixelRect(
            y: y - margin.h, x: x - margin.w, height: height + 2 * margin.h, width: width + 2 * margin.w)
    }

    /// The overlap of two rectangles (empty: zero height or width).
    package func intersection(_ o: PixelRect) -> PixelRect {
        let y0 = max(y, o.y), x0 = max(x, o.x)
        let y1 = min(y + height, o.y + o.height), x1 = min(x + width, o.x + o.width)
        return PixelRect(y: y0, x: x0, height: max(0, y1 - y0), width: max(0, x1 - x0))
    }
}
