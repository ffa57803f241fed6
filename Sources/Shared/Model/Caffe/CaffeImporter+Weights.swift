import TesseraCore

/// Where each layer's blobs come from (the caffemodel, else the definition) and their
/// shape checks; placeholder zeros for a shape-only import.
extension CaffeImporter {
    func blobs(for lp: Caffe_LayerParameter) throws -> [Caffe_BlobProto]? {
        if weightsFile != nil {
            if let b = weightsByLayer[lp.name] { return b }
            // A layer sharing every blob by name with another (Caffe stores them with their owner only; a
            // Caffe audit found such a net refused as "has no weights").
            if lp.blobs.isEmpty, !lp.param.isEmpty, lp.param.allSatisfy({ sharedBlobs[$0.name] != nil }) {
                return lp.param.map { sharedBlobs[$0.name]! }
            }
            return lp.blobs.isEmpty ? nil : lp.blobs
        }
        return lp.blobs.isEmpty ? nil : lp.blobs
    }

    func weightFile() -> String? { weightsFile ?? definitionFile }

    /// The layer's blobs, checked against their expected shapes (each an array of
    /// dimensions; size-1 axes are ignored in the comparison). nil for a shape-only import.
    func weights(
        _ lp: Caffe_LayerParameter, expected: [(what: String, dims: [Int])],
        placeholderTotal: inout Int
    ) throws -> [[Float]]? {
        let name = lp.name
        guard let raw = try blobs(for: lp) else {
            if shapeOnly { return try placeholders(lp, expected: expected, placeholderTotal: &placeholderTotal) }
            let available = weightsByLayer.keys.sorted().joined(separator: ", ")
            throw ModelError(
                file: weightsFile ?? definitionFile, layer: name,
                "has no weights" + (weightsFile != nil ? " in the caffemodel (it holds weights for: \(available))" : "")
                    + (weightsFile == nil ? "; give the caffemodel with --weights" : ""))
        }
        guard raw.count >= expected.count else {
            throw ModelError(
                file: weightFile(), layer: name,
                "has \(raw.count) weight blob(s); expected \(expected.count) (\(expected.map(\.what).joined(separator: ", ")))"
            )
        }
        // Caffe refuses a caffemodel whose convolution or inner product has other blobs than its own.
        if ["Convolution", "InnerProduct"].contains(lp.type), raw.count > expected.count {
            throw ModelError(
                file: weightFile(), layer: name,
                "has \(raw.count) weight blobs in the caffemodel; its definition takes \(expected.count) "
                    + "(\(expected.map(\.what).joined(separator: ", "))): the caffemodel is of another net "
                    + "(or bias_term differs)")
        }
        var out: [[Float]] = []
        for (i, e) in expected.enumerated() {
            let v = try BlobValues(raw[i], file: weightFile(), layer: name, index: i)
            // Size-1 axes do not count (legacy 4-D shapes, 1×1×64×1024, match modern ones, 64×1024), except
            // in a convolution's 4-D kernel, where they place it (a 1×3 kernel was taken for a 3×1 one: Caffe audit;
            // a 5-D blob 4×3×3×1×1 was still taken for a 4×3×1×3 kernel: hostile-input audit 27). Caffe too
            // takes a convolution's kernel in exactly its 4-D shape.
            let exact = lp.type == "Convolution" && e.dims.count == 4
            guard exact ? v.dims == e.dims : v.squeezed == e.dims.filter({ $0 != 1 }) else {
                throw ModelError(
                    file: weightFile(), layer: name,
                    "weight shape mismatch for its \(e.what): expected \(e.dims.map(String.init).joined(separator: "×")), "
                        + "found \(v.shapeText) in the caffemodel")
            }
            out.append(v.data)
        }
        return out
    }

    /// Zeros of the expected shapes, for a shape-only import; each blob and the net's
    /// total stay under `placeholderLimit` so a hostile definition cannot exhaust memory.
    private func placeholders(
        _ lp: Caffe_LayerParameter, expected: [(what: String, dims: [Int])],
        placeholderTotal: inout Int
    ) throws -> [[Float]] {
        let name = lp.name
        let limitText =
            placeholderLimit.nonzeroBitCount == 1
            ? "2^\(placeholderLimit.trailingZeroBitCount)"
            : "\(placeholderLimit)"
        var out: [[Float]] = []
        for e in expected {
            var n = 1
            for d in e.dims {
                let (p, o) = n.multipliedReportingOverflow(by: d)
                guard !o, d >= 0, p <= placeholderLimit else {
                    throw ModelError(
                        file: definitionFile, layer: name,
                        "its \(e.what) would be \(e.dims.map(String.init).joined(separator: "×")): "
                            + "more than \(limitText) values (without weights, zeros stand in for them: "
                            + "give the caffemodel to inspect a net this large)")
                }
                n = p
            }
            placeholderTotal += n
            guard placeholderTotal <= placeholderLimit else {
                throw ModelError(
                    file: definitionFile, layer: name,
                    "the net's weights would hold more than \(limitText) values in total (without weights, "
                        + "zeros stand in for them: give the caffemodel to inspect a net this large)")
            }
            out.append([Float](repeating: 0, count: n))
        }
        return out
    }
}
