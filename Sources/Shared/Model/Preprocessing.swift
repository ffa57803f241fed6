import Foundation
import Logging

/// What happens to each pixel before the net (docs/ARCHITECTURE.md §1, Caffe's conventions,
/// and torchvision's per-channel std): `value = (raw · rawScale − mean[c]) · scale`, or with
/// a std `value = (raw · rawScale − mean[c]) / std[c] · scale`, channels in `channelOrder`.
package struct Preprocessing: Sendable, Equatable {
    package enum ChannelOrder: String, Sendable, CaseIterable, Codable {
        case bgr, rgb
    }

    /// Per-channel mean in the network's channel order (empty: none subtracted).
    package var mean: [Float]
    /// Applied to the raw 0–255 pixel first (Caffe's `raw_scale`).
    package var rawScale: Float
    /// Applied after the mean is subtracted (Caffe's `scale`/`input_scale`).
    package var scale: Float
    /// Per-channel divisor after the mean (torchvision's `Normalize(mean, std)`), in the
    /// network's channel order; empty: none, one value: every channel.
    package var std: [Float]
    /// The channel order the net was trained on (Caffe/OpenCV: BGR).
    package var channelOrder: ChannelOrder
    /// Where the mean came from, for reports ("mean.binaryproto (32×32 image reduced per channel)").
    package var meanSource: String?

    package init(
        mean: [Float] = [], rawScale: Float = 1, scale: Float = 1, channelOrder: ChannelOrder = .bgr,
        meanSource: String? = nil, std: [Float] = []
    ) {
        self.mean = mean
        self.rawScale = rawScale
        self.scale = scale
        self.std = std
        self.channelOrder = channelOrder
        self.meanSource = meanSource
    }

    /// Mean of channel `c` (a single mean applies to every channel).
    package func mean(channel c: Int) -> Float {
        mean.isEmpty ? 0 : (mean.count == 1 ? mean[0] : mean[c])
    }

    /// The std of channel `c` (nil: none).
    package func std(channel c: Int) -> Float? {
        std.isEmpty ? nil : (std.count == 1 ? std[0] : std[c])
    }

    /// Checks the mean and std against the net's input channels.
    package func validated(channels: Int) throws -> Preprocessing {
        guard mean.isEmpty || mean.count == 1 || mean.count == channels else {
            throw ModelError(
                .preprocessing, "the mean has \(mean.count) values but the net's input has \(channels) channels")
        }
        guard std.isEmpty || std.count == 1 || std.count == channels else {
            throw ModelError(
                .preprocessing, "the std has \(std.count) values but the net's input has \(channels) channels")
        }
        guard rawScale.isFinite, scale.isFinite, mean.allSatisfy(\.isFinite), std.allSatisfy(\.isFinite) else {
            throw ModelError(.preprocessing, "preprocessing values must be finite numbers")
        }
        guard std.allSatisfy({ $0 > 0 }) else {
            throw ModelError(.preprocessing, "the std values must be positive: each channel is divided by its std")
        }
        return self
    }

    /// One line per step, as `inspect` prints them.
    package var descriptionLines: [String] {
        var lines: [String] = []
        lines.append(
            "channel order: \(channelOrder.rawValue.uppercased()) (image channels are fed to the net in this order)")
        lines.append("raw scale: \(rawScale) (pixels 0–255 are multiplied by this first)")
        if mean.isEmpty {
            lines.append("mean: none")
        } else {
            let values = mean.map { String(format: "%.4f", $0) }.joined(separator: ", ")
            lines.append("mean: [\(values)] subtracted" + (meanSource.map { " (from \($0))" } ?? ""))
        }
        if std.isEmpty {
            lines.append("scale: \(scale) (applied after the mean)")
            lines.append("value = (raw × \(rawScale) − mean[c]) × \(scale)")
        } else {
            let values = std.map { String(format: "%.4f", $0) }.joined(separator: ", ")
            lines.append("std: [\(values)] (each channel divided by its std after the mean)")
            lines.append("scale: \(scale) (applied after the std)")
            lines.append("value = (raw × \(rawScale) − mean[c]) / std[c] × \(scale)")
        }
        return lines
    }

    /// Reads a `mean.binaryproto` (a C×H×W mean image) and reduces it to per-channel means,
    /// as the original fully convolutional code does.
    package static func readMeanFile(_ path: String, logger: Logger? = nil) throws -> (mean: [Float], source: String) {
        let blob = try CaffeFiles.readBlob(path)
        let v: BlobValues
        do {
            v = try BlobValues(blob, file: path, layer: "mean", index: 0)
        } catch let e as ModelError {
            // A mean file has no layer: the blob reader's "layer 'mean': blob 0" named one (audit 27).
            throw ModelError(.unreadable, file: path, "not a usable mean image: \(e.message)")
        }
        guard v.data.allSatisfy(\.isFinite) else {
            // It said only "preprocessing values must be finite numbers", naming neither file nor cause (audit 27).
            let bad = v.data.firstIndex { !$0.isFinite }!
            throw ModelError(
                .unreadable, file: path,
                "the mean image holds \(v.data[bad]) at value \(bad) (not a finite number): a damaged mean file?")
        }
        var dims = v.dims
        while dims.count > 3, dims.first == 1 { dims.removeFirst() }
        guard dims.count == 3 || dims.count == 1, v.count > 0 else {
            throw ModelError(
                .unreadable, file: path,
                "the mean blob has shape \(v.shapeText); expected channels×height×width "
                    + "(or 1×C×H×W)")
        }
        let c = dims[0]
        let hw = dims.count == 3 ? dims[1] * dims[2] : 1
        var means: [Float] = []
        for ch in 0..<c {
            var sum = 0.0
            for i in 0..<hw { sum += Double(v.data[ch * hw + i]) }
            means.append(Float(sum / Double(hw)))
        }
        let size = dims.count == 3 ? "\(dims[1])×\(dims[2])" : "1×1"
        let source = "\((path as NSString).lastPathComponent): \(size) mean image reduced to per-channel means"
        logger?.notice(
            "mean image reduced to per-channel means: a fully convolutional pass can only subtract one mean per channel",
            metadata: [
                "file": "\(path)", "size": "\(size)",
                "means": "\(means.map { String(format: "%.3f", $0) })",
            ])
        return (means, source)
    }
}
