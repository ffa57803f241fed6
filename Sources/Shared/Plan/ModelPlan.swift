import TesseraCore
import TesseraModel

/// What planning a map needs from a model, and nothing that computes: the
/// classifier, its fully convolutional and dense forms, their layouts and the
/// task geometry. The coordinator plans jobs from this alone; the engine is
/// built from it (`MapEngine(plan:device:)`), so both agree on every tile.
package struct ModelPlan: Sendable {
    /// The patch classifier as imported (InnerProduct layers allowed): `naive` runs it.
    package let classifier: Net
    /// Its fully convolutional form: `fast` and `shift` run it.
    package let fcn: Net
    /// The dense form (every layer after a stride dilated): `dense` runs it.
    package let dense: Net
    /// Per layer of `dense`, the dilation a WITHIN_CHANNEL LRN uses.
    package let lrnDilation: [Size2]
    package let geometry: NetGeometry
    package let tasks: TaskGeometry
    /// Where each pass's pixels sit and which layers pad (`PassLayout`).
    package let stridedLayout: PassLayout
    package let denseLayout: PassLayout

    /// - Parameters:
    ///   - classifier: the patch classifier as imported.
    ///   - patch: the patch size when the net does not say.
    ///   - allowPadding: accept a net that cannot be exact (padding, partial pooling windows).
    package init(classifier: Net, patch: Size2? = nil, allowPadding: Bool = false) throws {
        let fcn = try classifier.fullyConvolutional(patch: patch)
        let (geometry, _) = try fcn.geometry(patch: patch ?? classifier.patchSize)
        try self.init(classifier: classifier, fcn: fcn, geometry: geometry, allowPadding: allowPadding)
    }

    /// The plan for a model as `ModelLoader` loaded it (surgery already done).
    package init(model: LoadedModel, allowPadding: Bool = false) throws {
        try self.init(
            classifier: model.classifier, fcn: model.net, geometry: model.geometry, allowPadding: allowPadding)
    }

    package init(classifier: Net, fcn: Net, geometry: NetGeometry, allowPadding: Bool) throws {
        if !geometry.isExact && !allowPadding {
            throw ModelError(
                .inexact,
                "the net cannot give an exact dense map: "
                    + geometry.inexactReasons.joined(separator: "; ")
                    + " (approximate maps must be allowed to compute it)")
        }
        let (dense, lrnDilation) = try fcn.densified(patch: geometry.patchSize)
        self.classifier = classifier
        self.fcn = fcn
        self.dense = dense
        self.lrnDilation = lrnDilation
        self.geometry = geometry
        stridedLayout = PassLayout(fcn)
        denseLayout = PassLayout(dense, lrnDilation: lrnDilation)
        if geometry.isExact {
            tasks = TaskGeometry(geometry)
        } else {
            tasks = TaskGeometry(
                geometry,
                minimalInput: try Self.extent(of: dense, limit: 8 * max(geometry.patchSize.h, geometry.patchSize.w)),
                pads: stridedLayout.pads)
        }
    }

    package var classes: Int { geometry.classes }
    package var inputChannels: Int { fcn.inputChannels }

    /// The smallest input for which `net` produces an output, per axis (each with the other axis
    /// large). It was the smallest square one, too large on the smaller axis of a net whose extents
    /// differ: its whole-image pass then padded past the image's mirrored edge there (review).
    static func extent(of net: Net, limit: Int) throws -> Size2 {
        let big = max(1, limit)
        func produces(_ input: Size2) -> Bool {
            guard let (_, shapes) = try? net.shapes(input: input), let last = shapes.last else { return false }
            return last.h >= 1 && last.w >= 1
        }
        guard let h = (1...big).first(where: { produces(Size2($0, big)) }),
            let w = (1...big).first(where: { produces(Size2(big, $0)) })
        else {
            throw ModelError(.shape, "the net produces no output for inputs up to \(limit)×\(limit) pixels")
        }
        return Size2(h, w)
    }
}
