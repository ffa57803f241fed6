import TesseraCore
import TesseraModel

/// Which definition of the map a stored job's tiles were computed with (`JobRecord`'s
/// `window-placement`), so that a job resumed by a later release is not finished with tiles of
/// another definition (a 1–3 pixel jump, or different last rows, at tile edges).
extension TaskGeometry {
    /// 2 (release 0.3.0): windows placed where the classifier places them (`centring = −origin`).
    /// 3: the whole-image pass of a net that pads reads the whole mirror-padded image (`wholeImageInput`).
    /// 4 (release 0.3.2): that pass keeps the partial last windows of poolings that round up, as Caffe's
    /// (`ModelPlan.placementChange` tells which nets and images that changed).
    /// 5 (release 0.3.4): of those windows, only the ones that start on a real input pixel hold real values
    /// (`PassLayout.PartialWindows.startingInInput`).
    /// Records of releases before 0.3.0 have none.
    package static let placementVersion = 5

    /// How the release that wrote `recorded` computed this net's map differently from this one, or nil
    /// when it computed the same numbers. `exact`: the net's `NetGeometry.isExact`; `mode` and `image`:
    /// the job's, when known (a `fast` map's far edges changed too).
    package func placementChange(
        since recorded: Int?, exact: Bool, mode: MapMode? = nil, image: Size2? = nil
    ) -> String? {
        if recorded == nil {
            // Before 0.3.0: windows centred on the patch.
            let before =
                exact
                ? Size2.zero
                : Size2((receptiveField.h - patch.h).floorDiv(2), (receptiveField.w - patch.w).floorDiv(2))
            if before != centring {
                return "placed this net's windows \(before) pixels from the patch's corner where this one places "
                    + "them \(centring) (the classifier's own placement)"
            }
        }
        if (recorded ?? 2) < 3, pads, minimalInput.h < patch.h || minimalInput.w < patch.w {
            return "ended this net's pass over the image \(patch.h - minimalInput.h)×\(patch.w - minimalInput.w) "
                + "pixels before the mirror-padded image ends (it padded the map's last rows and columns where "
                + "the classifier sees mirrored pixels)"
        }
        if (recorded ?? 2) < 3, pads, mode == .fast, let image,
            (image.h - 1) % stride.h != 0 || (image.w - 1) % stride.w != 0
        {
            return "interpolated this net's fast map past the last grid point inside the image from a point "
                + "beyond it (computed from padding alone)"
        }
        return nil
    }
}

extension ModelPlan {
    /// `TaskGeometry.placementChange`, and placements 4 and 5: whether the whole-image pass of `image` (of any
    /// image, when not known) keeps partial pooling windows as the release that wrote `recorded` did not.
    package func placementChange(
        since recorded: Int?, exact: Bool, mode: MapMode? = nil, image: Size2? = nil
    ) -> String? {
        if let change = tasks.placementChange(since: recorded, exact: exact, mode: mode, image: image) {
            return change
        }
        let then: PassLayout.PartialWindows =
            (recorded ?? 3) < 4 ? .leftOut : (recorded! < 5 ? .wholeStride : .startingInInput)
        guard then != .startingInInput, tasks.pads, stridedLayout.windows.contains(where: { $0?.roundsUp == true })
        else {
            return nil
        }
        if let image {
            let input = tasks.wholeImageInput(image)
            if stridedLayout.validRegions(fcn, input: input)
                == stridedLayout.validRegions(fcn, input: input, partialWindows: then)
            {
                return nil
            }
        }
        return then == .leftOut
            ? "left out the partial last windows of this net's poolings from its pass over the image, where "
                + "Caffe's pass keeps them (the map's last rows and columns differ)"
            : "took pooling windows that start past their input's end for real values in its pass over the image "
                + "(NaN or saturated pixels in dense and shift maps)"
    }
}
