import TesseraCore
import TesseraModel

/// The four ways to produce a map (docs/ARCHITECTURE.md §3).
package enum MapMode: String, Sendable, CaseIterable, Codable {
    /// The classifier on every patch: the reference, for small images.
    case naive
    /// One strided pass: a grid every S pixels, interpolated (exact at grid points).
    case fast
    /// S² displaced strided passes, interlaced: exact.
    case shift
    /// One pass of the dilated net: exact, each value computed once.
    case dense
}

/// One self-contained unit of work: what to compute for one tile of one image.
/// `rect` is in map pixels, except for `fast`, where it is in grid cells.
package struct TileTask: Hashable, Sendable, CustomStringConvertible {
    package var mode: MapMode
    package var rect: PixelRect
    /// `shift` only: the displacement (dy, dx), each in 0..<S.
    package var displacement: Size2
    /// The size of the whole map (image pixels) the task is part of: nets that
    /// pad need it to pad where the whole-image pass does (.zero: not known).
    package var image: Size2

    package init(mode: MapMode, rect: PixelRect, displacement: Size2 = .zero, image: Size2 = .zero) {
        self.mode = mode
        self.rect = rect
        self.displacement = displacement
        self.image = image
    }

    package var description: String {
        mode == .shift ? "\(mode) \(rect) +\(displacement.h),\(displacement.w)" : "\(mode) \(rect)"
    }
}

/// The geometry a task needs from the net: patch size, stride, receptive field
/// and, for approximate nets (padding, partial pooling windows), where the net's
/// window sits on the patch.
///
/// Every mode computes its outputs from real input only, never from a tile's own
/// edge: a task reads the whole window of each output it returns (its halo), and
/// the net's padding is applied where the whole-image pass pads (see
/// `wholeImageInput` and `PassLayout.validRegions`). So tiles never show seams,
/// even for nets that pad, and `dense`, `shift` and `fast` sample one map.
package struct TaskGeometry: Sendable, Equatable {
    package var patch: Size2
    package var stride: Size2
    /// Input pixels one output pixel depends on.
    package var receptiveField: Size2
    /// Window start of a pass's output pixel 0 relative to its input pixel 0:
    /// 0 for nets that do not pad, negative when they do.
    package var origin: Size2
    /// Map pixel `y`'s window starts at padded row `y − centring`, where the classifier's own window
    /// starts on the patch centred at `y` (padded rows `y ..< y + P`): `−origin`, 0 for exact nets.
    /// It was the window centred on the patch, which for a net whose window is not symmetric about its
    /// patch (even P with padded strided layers, partial pooling windows at the far edge) shifted the map
    /// by 1–3 pixels against the classifier it approximates (ONNX user audit: a net whose padding
    /// never counts gave `dense[y, x] = naive[y + 1, x + 1]`).
    package var centring: Size2
    /// The smallest input for which the dense net gives one output: the
    /// whole-image pass reads `H + minimalInput − 1` rows (see `wholeImageInput`).
    package var minimalInput: Size2
    /// Whether some layer pads (then tasks need the image size: `TileTask.image`).
    package var pads: Bool

    /// Exact nets: the window is the patch; nothing pads.
    package init(_ g: NetGeometry) {
        self.init(g, minimalInput: g.receptiveField, pads: false)
    }

    package init(_ g: NetGeometry, minimalInput: Size2, pads: Bool) {
        patch = g.patchSize
        stride = g.stride
        receptiveField = g.receptiveField
        origin = g.origin
        centring = Size2(-g.origin.h, -g.origin.w)
        self.minimalInput = minimalInput
        self.pads = pads
    }

    /// Half the patch: the padding added on the top/left of the image.
    package var halfPatch: Size2 { Size2(patch.h / 2, patch.w / 2) }

    /// Outputs of a shift task along one axis: pixels `y0 + d + i·S < y0 + length`.
    static func phaseCount(length: Int, displacement: Int, stride: Int) -> Int {
        length > displacement ? (length - displacement + stride - 1) / stride : 0
    }

    /// Output shape (rows, cols) of `task`.
    package func outputSize(_ task: TileTask) -> Size2 {
        switch task.mode {
        case .naive, .dense, .fast:
            return Size2(task.rect.height, task.rect.width)
        case .shift:
            return Size2(
                Self.phaseCount(length: task.rect.height, displacement: task.displacement.h, stride: stride.h),
                Self.phaseCount(length: task.rect.width, displacement: task.displacement.w, stride: stride.w))
        }
    }

    /// Strided passes (fast, shift): how many outputs before the first one
    /// asked for the pass computes, so that the first one's window starts inside
    /// its input (0 unless the net pads).
    var stridedLead: Size2 {
        Size2((-origin.h + stride.h - 1).floorDiv(stride.h), (-origin.w + stride.w - 1).floorDiv(stride.w))
    }

    /// The padded-image region `task` reads (padded coordinates: image row r is padded row r + ⌊P/2⌋).
    package func inputRect(_ task: TileTask) -> PixelRect {
        let r = task.rect
        switch task.mode {
        case .naive:
            return PixelRect(y: r.y, x: r.x, height: r.height + patch.h - 1, width: r.width + patch.w - 1)
        case .dense:
            return PixelRect(
                y: r.y - centring.h, x: r.x - centring.w,
                height: r.height + receptiveField.h - 1, width: r.width + receptiveField.w - 1)
        case .fast, .shift:
            // First output pixel and count; the pass starts `stridedLead` outputs earlier.
            let first =
                task.mode == .fast
                ? Size2(r.y * stride.h, r.x * stride.w)
                : Size2(r.y + task.displacement.h, r.x + task.displacement.w)
            let n = outputSize(task), k = stridedLead
            let back = Size2(origin.h + k.h * stride.h, origin.w + k.w * stride.w)
            return PixelRect(
                y: first.h - centring.h - back.h, x: first.w - centring.w - back.w,
                height: (n.h - 1) * stride.h + receptiveField.h + back.h,
                width: (n.w - 1) * stride.w + receptiveField.w + back.w)
        }
    }

    /// Where `task`'s outputs start in its pass's output (the pass computes a
    /// margin around them when the net pads).
    package func outputOffset(_ task: TileTask) -> Size2 {
        switch task.mode {
        case .naive: return .zero
        case .dense: return Size2(-origin.h, -origin.w)
        case .fast, .shift: return stridedLead
        }
    }

    /// The input of the pass over the whole `image` that defines the map of a
    /// net that pads: the mirror-padded image, `H + P − 1` rows from padded row 0
    /// (`centring` is `−origin`), so the converted net run over it; every layer pads
    /// the edges of that input, whatever tile computes a pixel, and the map is the
    /// pass's first H × W outputs. A net whose smallest input for one output exceeds
    /// the patch (partial pooling windows rounding up) reads `H + minimalInput − 1`
    /// rows, the fewest that give H outputs. (It read `H + minimalInput − 1` rows for
    /// every net: a net whose strided layers leave the patch's last rows unread padded
    /// its last rows and columns where the classifier sees mirrored pixels; fuzz audit.)
    package func wholeImageInput(_ image: Size2) -> PixelRect {
        PixelRect(
            y: 0, x: 0, height: image.h + max(patch.h, minimalInput.h) - 1,
            width: image.w + max(patch.w, minimalInput.w) - 1)
    }
}
