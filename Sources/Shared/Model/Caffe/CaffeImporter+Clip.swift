import TesseraCore

/// Caffe's Clip layer (`clip_param { min max }`) and the ReLU6 of Caffe forks (MobileNet ports): a
/// clamp built from ReLU and Scale layers (`ClampSteps`), as the ONNX importer builds Clip.
extension CaffeImporter {
    mutating func addClip(_ lp: Caffe_LayerParameter, inC: Int?, to progress: inout Progress) throws {
        guard lp.bottom.count == 1, lp.top.count == 1, let x = lp.bottom.first, let top = lp.top.first else {
            throw layerError(lp, "a \(lp.type) layer has one bottom and one top")
        }
        guard let channels = inC else { throw layerError(lp, Self.unknownChannels) }
        let low: Float, high: Float
        if lp.type == "ReLU6" {
            (low, high) = (0, 6)
        } else {
            guard lp.hasClipParam, lp.clipParam.hasMin, lp.clipParam.hasMax else {
                throw layerError(lp, "a Clip layer needs clip_param { min max }")
            }
            (low, high) = (lp.clipParam.min, lp.clipParam.max)
            guard low.isFinite, high.isFinite else {
                throw layerError(lp, "clip_param min \(low), max \(high): the bounds must be finite numbers")
            }
        }
        let ops = ClampSteps.steps(low: low, high: high, channels: channels)
        var last = x
        for (i, op) in ops.enumerated() {
            let final = i == ops.count - 1
            let out = final ? top : "\(top)/step\(i)"
            try appendPart(
                Layer(name: final ? lp.name : "\(lp.name)/step\(i)", op: op, bottoms: [last], tops: [out]), channels,
                &progress)
            last = out
        }
        notes.append(
            "layer '\(lp.name)' (\(lp.type)) to [\(low), \(high)] is computed as \(ops.count) ReLU and Scale layers "
                + "(the same numbers to about 1e-7)")
    }
}
