import TesseraCore

/// PReLU (Caffe audit: refused, though the ONNX importer maps PRelu) from existing layers, with the same
/// numbers as the ONNX path (`ONNXImporter+PRelu.swift`): one slope (`channel_shared`) is a leaky ReLU;
/// slopes per channel are `y = relu(x) + a·(x − relu(x))`, exact in float32.
extension CaffeImporter {
    mutating func addPReLU(_ lp: Caffe_LayerParameter, inC: Int?, to progress: inout Progress) throws {
        guard lp.bottom.count == 1, lp.top.count == 1, let x = lp.bottom.first, let top = lp.top.first else {
            throw layerError(lp, "a PReLU layer has one bottom and one top")
        }
        guard let channels = inC else { throw layerError(lp, Self.unknownChannels) }
        let shared = lp.preluParam.channelShared
        let slopes: [Float]
        if let raw = try blobs(for: lp) {
            guard raw.count == 1 else {
                throw layerError(lp, "has \(raw.count) weight blobs in the caffemodel; a PReLU has 1 (its slopes)")
            }
            let v = try BlobValues(raw[0], file: weightFile(), layer: lp.name, index: 0)
            if shared && v.count != 1 {
                throw layerError(
                    lp, "its prelu_param says channel_shared, but its slopes blob holds \(v.count) values, not 1")
            }
            // Said explicitly, as BVLC Caffe reads it (verification audit 34 L2: accepted as a shared slope). A file
            // that leaves prelu_param out keeps the leniency: one slope is a shared one.
            if lp.preluParam.hasChannelShared && !shared && v.count == 1 && channels > 1 {
                throw layerError(
                    lp,
                    "its prelu_param says channel_shared: false, but its slopes blob holds 1 value for \(channels) "
                        + "channels (set channel_shared: true for one slope)")
            }
            guard v.count == 1 || v.count == channels else {
                throw layerError(
                    lp,
                    "its slopes blob holds \(v.count) values; a PReLU of \(channels) channels has 1 (channel_shared) "
                        + "or \(channels)")
            }
            slopes = v.data
        } else {
            var total = progress.placeholderTotal
            let placeholder = try weights(lp, expected: [("slopes", [shared ? 1 : channels])], placeholderTotal: &total)
            progress.placeholderTotal = total
            slopes = placeholder?.first ?? [0]
        }
        if slopes.allSatisfy({ $0 == slopes[0] }) {
            try appendPart(
                Layer(name: lp.name, op: .relu(negativeSlope: slopes[0]), bottoms: [x], tops: [top]), channels,
                &progress)
            return
        }
        let positive = "\(top)/positive", negative = "\(top)/negative", scaled = "\(top)/slope"
        let parts = [
            Layer(name: "\(lp.name)/positive", op: .relu(negativeSlope: 0), bottoms: [x], tops: [positive]),
            Layer(
                name: "\(lp.name)/negative", op: .eltwise(Eltwise(operation: .sum, coefficients: [1, -1])),
                bottoms: [x, positive], tops: [negative]),
            Layer(
                name: "\(lp.name)/slope", op: .scale(Scale(scale: slopes, bias: nil)), bottoms: [negative],
                tops: [scaled]),
            Layer(name: lp.name, op: .eltwise(Eltwise(operation: .sum)), bottoms: [positive, scaled], tops: [top]),
        ]
        for layer in parts { try appendPart(layer, channels, &progress) }
    }
}
