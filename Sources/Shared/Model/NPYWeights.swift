import Foundation
import TesseraImage

/// Weights from NumPy: a model trained outside Caffe (e.g. by
/// `tools/train-demo-model`) brings its deploy prototxt and one `.npy` float32
/// file per Caffe blob, named `<layer>.<blobIndex>.npy`, in Caffe's layouts:
///
/// | layer        | blob 0                         | blob 1          | blob 2            |
/// |--------------|--------------------------------|-----------------|-------------------|
/// | Convolution  | weights `(out, in/group, kh, kw)` | bias `(out,)` | –                 |
/// | InnerProduct | weights `(out, in)`            | bias `(out,)`   | –                 |
/// | BatchNorm    | mean `(C,)`                    | variance `(C,)` | factor `(1,)`, optional |
/// | Scale        | scale `(C,)`                   | bias `(C,)`     | –                 |
///
/// A bias file is expected exactly when the prototxt has `bias_term: true` (the default).
extension Net {
    /// The same net with every parameter blob read from `directory`. Throws a
    /// `ModelError` naming the layer and the file when a file is missing, is not a
    /// float32 `.npy`, or has the wrong shape, and when a `.npy` file in the
    /// directory belongs to no blob of the net (a misspelt layer name).
    package func fillingBlobs(fromNPYDirectory directory: String) throws -> Net {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ModelError(file: directory, "not a directory of .npy weights")
        }
        var used = Set<String>()
        func path(_ layer: Layer, _ index: Int) -> String {
            URL(fileURLWithPath: directory).appendingPathComponent("\(layer.name).\(index).npy").path
        }
        /// Reads blob `index` of `layer`, checking its shape against `dims`; nil when optional and absent.
        func read(
            _ layer: Layer, _ index: Int, _ what: String, _ dims: [Int], optional: Bool = false
        ) throws -> [Float]? {
            let file = path(layer, index)
            let shapeText = "(" + dims.map(String.init).joined(separator: ", ") + (dims.count == 1 ? ",)" : ")")
            guard FileManager.default.fileExists(atPath: file) else {
                if optional { return nil }
                throw ModelError(
                    .weights, file: file, layer: layer.name, "missing: expected its \(what), shape \(shapeText)")
            }
            used.insert((file as NSString).lastPathComponent)
            let array: NPY.FloatArray
            do {
                array = try NPY.read(path: file)
            } catch let e as ImageIOError {
                throw ModelError(layer: layer.name, "\(what): \(e.description)")
            }
            guard array.shape == dims else {
                let got =
                    "(" + array.shape.map(String.init).joined(separator: ", ") + (array.shape.count == 1 ? ",)" : ")")
                throw ModelError(
                    .weights, file: file, layer: layer.name, "its \(what) has shape \(got), expected \(shapeText)")
            }
            return array.data
        }

        var out = self
        for (i, layer) in layers.enumerated() {
            switch layer.op {
            case .convolution(var c):
                let dims = [c.outputs, c.inputsPerGroup, c.kernel.h, c.kernel.w]
                c.weights = try read(layer, 0, "weights", dims)!
                if c.bias != nil { c.bias = try read(layer, 1, "bias", [c.outputs])! }
                out.layers[i].op = .convolution(c)
            case .innerProduct(var ip):
                let dims = [ip.outputs, ip.inputs]
                ip.weights = try read(layer, 0, "weights", dims)!
                if ip.bias != nil { ip.bias = try read(layer, 1, "bias", [ip.outputs])! }
                out.layers[i].op = .innerProduct(ip)
            case .batchNorm(var bn):
                let c = bn.mean.count
                let mean = try read(layer, 0, "mean", [c])!
                let variance = try read(layer, 1, "variance", [c])!
                // Caffe stores running sums and their moving-average factor; 0 means "no statistics" (zeros).
                let factor = try read(layer, 2, "moving-average factor", [1], optional: true)?[0] ?? 1
                let f: Float = factor == 0 ? 0 : 1 / factor
                bn.mean = mean.map { $0 * f }
                bn.variance = variance.map { $0 * f }
                out.layers[i].op = .batchNorm(bn)
            case .scale(var s):
                let c = s.scale.count
                s.scale = try read(layer, 0, "scale", [c])!
                if s.bias != nil { s.bias = try read(layer, 1, "bias", [c])! }
                out.layers[i].op = .scale(s)
            default:
                continue
            }
        }
        let present = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let unused = present.filter { $0.hasSuffix(".npy") && !used.contains($0) }.sorted()
        guard unused.isEmpty else {
            throw ModelError(
                file: directory,
                "\(unused.joined(separator: ", ")) belong\(unused.count == 1 ? "s" : "") "
                    + "to no blob of the net (files are named <layer>.<blobIndex>.npy; layers with weights: "
                    + layers.filter(\.hasParameters).map(\.name).joined(separator: ", ") + ")")
        }
        // NaN weights were written into a caffemodel with rc 0; only running it refused them (audit 27).
        try ParameterCheck.requireFinite(out, file: directory)
        return out
    }
}

extension Layer {
    /// Whether the layer has blobs that `fillingBlobs(fromNPYDirectory:)` reads.
    var hasParameters: Bool {
        switch op {
        case .convolution, .innerProduct, .batchNorm, .scale: return true
        default: return false
        }
    }
}
