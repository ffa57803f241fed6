import TesseraCore

/// BatchNorm's blobs are laid out differently by the Caffe forks that save them:
/// this tells them apart.
extension CaffeImporter {
    /// BatchNorm, from the blobs as the Caffe that saved them lays them out.
    ///
    /// - 3 blobs (BVLC): running mean sum, running variance sum, moving-average
    ///   factor (1 value). Statistics are the sums times 1/factor; a factor of 0
    ///   scales them by 0, as BVLC's `BatchNormLayer::Forward_cpu` does.
    /// - 5 blobs (NVIDIA Caffe 0.14, `CuDNNBatchNormLayer`): scale, bias, an unused
    ///   1-value blob (left at 0), running mean, running variance; the statistics
    ///   are stored as they are (no factor), and the layer's epsilon is 1e-4
    ///   whatever batch_norm_param.eps says.
    /// - 5 blobs (NVIDIA Caffe ≥ 0.16): mean, variance, factor (unused at
    ///   inference), scale, bias; eps = max(eps, 1e-5). Told apart from 0.14 by
    ///   which blob is a variance (non-negative) and the 1-value blob (0 vs 1).
    mutating func batchNorm(_ lp: Caffe_LayerParameter, channels: Int?, placeholderTotal: inout Int) throws -> BatchNorm
    {
        let name = lp.name
        func fail(_ m: String) -> ModelError { ModelError(file: weightFile(), layer: name, m) }
        guard let c = channels else { throw fail(Self.unknownChannels) }
        let p = lp.batchNormParam
        if p.hasUseGlobalStats, !p.useGlobalStats {
            // Caffe fuzz audit: the note said "as Caffe's TEST phase", but Caffe honours an explicit false in every
            // phase (each batch normalised by its own statistics), and OpenCV refuses the net.
            notes.append(
                ModelLoader.warningPrefix
                    + "layer '\(name)': use_global_stats is false in the file, so Caffe would normalise each batch "
                    + "with its own statistics (training behaviour, which has no per-pixel meaning); Tessera uses the "
                    + "saved mean and variance, as a net saved for inference (use_global_stats true) does")
        }
        let raw = try blobs(for: lp)
        let count = raw?.count ?? 3
        switch count {
        case 3:
            guard
                let w = try weights(
                    lp, expected: [("mean", [c]), ("variance", [c]), ("moving-average factor", [1])],
                    placeholderTotal: &placeholderTotal)
            else { throw fail("no weights") }
            let f = w[2].first ?? 1
            let s: Float = f == 0 ? 0 : 1 / f
            if raw != nil, f == 0 {
                notes.append("layer '\(name)': moving-average factor is 0, so its statistics are 0 (as in BVLC Caffe)")
            }
            return BatchNorm(mean: w[0].map { $0 * s }, variance: w[1].map { $0 * s }, eps: p.eps)
        case 5:
            let all = try weights(
                lp,
                expected: [
                    ("blob 0", [c]), ("blob 1", [c]), ("blob 2 (1 value)", [1]),
                    ("blob 3", [c]), ("blob 4", [c]),
                ], placeholderTotal: &placeholderTotal)!
            let marker = all[2][0]
            let v014 = all[4].allSatisfy { $0 >= 0 }
            let v016 = all[1].allSatisfy { $0 >= 0 }
            let use014: Bool
            if v014 && !v016 {
                use014 = true
            } else if v016 && !v014 {
                use014 = false
            } else if v014 && v016 {
                use014 = marker != 1
            } else {
                throw fail("5 BatchNorm blobs but neither blob 1 nor blob 4 is a variance (both have negative values)")
            }
            if use014 {
                notes.append(
                    "layer '\(name)': NVIDIA Caffe 0.14 BatchNorm blobs (scale, bias, unused, mean, variance; eps 1e-4)"
                )
                return BatchNorm(mean: all[3], variance: all[4], eps: 1e-4, scale: all[0], bias: all[1])
            }
            notes.append("layer '\(name)': NVIDIA Caffe 0.16+ BatchNorm blobs (mean, variance, unused, scale, bias)")
            return BatchNorm(mean: all[0], variance: all[1], eps: max(p.eps, 1e-5), scale: all[3], bias: all[4])
        default:
            throw fail("has \(count) BatchNorm blobs; expected 3 (BVLC: mean, variance, factor) or 5 (NVIDIA Caffe)")
        }
    }
}
