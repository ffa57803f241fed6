/// The four ways to produce a map (DESIGN.md §3).
public enum MapMode: String, Sendable, CaseIterable, Codable {
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
public struct TileTask: Hashable, Sendable, CustomStringConvertible {
    public var mode: MapMode
    public var rect: PixelRect
    /// `shift` only: the displacement (dy, dx), each in 0..<S.
    public var displacement: Size2

    public init(mode: MapMode, rect: PixelRect, displacement: Size2 = .zero) {
        self.mode = mode
        self.rect = rect
        self.displacement = displacement
    }

    public var description: String {
        mode == .shift ? "\(mode) \(rect) +\(displacement.h),\(displacement.w)" : "\(mode) \(rect)"
    }
}

/// The geometry a task needs from the net: patch size, stride, and how many
/// input pixels one output pixel spans in the strided and the dense net.
public struct TaskGeometry: Sendable, Equatable {
    public var patch: Size2
    public var stride: Size2
    /// Input extent of one output pixel of the strided (fast, shift) net: the
    /// receptive field for exact nets.
    public var extent: Size2
    /// The same for the dense net.
    public var denseExtent: Size2
    /// How far a task's input starts before its first patch: 0 for exact nets
    /// (a patch's output reads its first rows); for approximate nets (padding)
    /// the net's window, which starts at `origin` and spans the receptive
    /// field, is centred on the patch.
    public var lead: Size2

    /// Exact nets: every extent is the receptive field.
    public init(_ g: NetGeometry) {
        self.init(g, extent: g.receptiveField, denseExtent: g.receptiveField)
    }

    public init(_ g: NetGeometry, extent: Size2, denseExtent: Size2) {
        patch = g.patchSize
        stride = g.stride
        self.extent = extent
        self.denseExtent = denseExtent
        lead = g.isExact ? .zero : Size2(g.origin.h + (g.receptiveField.h - g.patchSize.h).floorDiv(2),
                                         g.origin.w + (g.receptiveField.w - g.patchSize.w).floorDiv(2))
    }

    /// Half the patch: the padding added on the top/left of the image.
    public var halfPatch: Size2 { Size2(patch.h / 2, patch.w / 2) }

    /// Outputs of a shift task along one axis: pixels `y0 + d + i·S < y0 + length`.
    static func phaseCount(length: Int, displacement: Int, stride: Int) -> Int {
        length > displacement ? (length - displacement + stride - 1) / stride : 0
    }

    /// Output shape (rows, cols) of `task`.
    public func outputSize(_ task: TileTask) -> Size2 {
        switch task.mode {
        case .naive, .dense, .fast:
            return Size2(task.rect.height, task.rect.width)
        case .shift:
            return Size2(Self.phaseCount(length: task.rect.height, displacement: task.displacement.h, stride: stride.h),
                         Self.phaseCount(length: task.rect.width, displacement: task.displacement.w, stride: stride.w))
        }
    }

    /// The padded-image region `task` reads (padded coordinates: image row r is padded row r + ⌊P/2⌋).
    public func inputRect(_ task: TileTask) -> PixelRect {
        let r = task.rect
        switch task.mode {
        case .naive:
            return PixelRect(y: r.y, x: r.x, height: r.height + patch.h - 1, width: r.width + patch.w - 1)
        case .dense:
            return PixelRect(y: r.y - lead.h, x: r.x - lead.w,
                             height: r.height + denseExtent.h - 1, width: r.width + denseExtent.w - 1)
        case .fast:
            return PixelRect(y: r.y * stride.h - lead.h, x: r.x * stride.w - lead.w,
                             height: (r.height - 1) * stride.h + extent.h, width: (r.width - 1) * stride.w + extent.w)
        case .shift:
            let n = outputSize(task)
            return PixelRect(y: r.y + task.displacement.h - lead.h, x: r.x + task.displacement.w - lead.w,
                             height: (n.h - 1) * stride.h + extent.h, width: (n.w - 1) * stride.w + extent.w)
        }
    }
}
