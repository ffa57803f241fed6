import Foundation
import TesseraCore

/// What `inspect` prints: per-layer table and summary, also as one JSON object.
package struct ModelReport: Codable, Sendable {
    package struct LayerRow: Codable, Sendable {
        package var name: String
        package var type: String
        /// Output shape at patch size: [channels, height, width].
        package var output: [Int]
        package var kernel: [Int]?
        package var stride: [Int]?
        package var pad: [Int]?
        package var dilation: [Int]?
        /// Pooling that rounds its output size down ("floor"; nil: up, as Caffe does by default).
        package var rounding: String?
        /// Multiply-accumulates for one output position (all output channels).
        package var macsPerPosition: Int
        /// Multiply-accumulates for one patch pass (at patch size).
        package var macsPerPatch: Int
        /// Receptive field of this layer's output.
        package var receptiveField: [Int]
    }

    /// Multiply-accumulates per pixel of the final H×W map, for each engine mode.
    package struct ModeCost: Codable, Sendable {
        package var naive: Int
        package var fast: Int
        package var shift: Int
        package var dense: Int
    }

    package struct PreprocessingInfo: Codable, Sendable {
        package var channelOrder: String
        package var rawScale: Float
        package var mean: [Float]
        package var meanSource: String?
        package var scale: Float
        /// Per-channel divisors after the mean (empty: none).
        package var std: [Float]
    }

    package var name: String
    package var inputChannels: Int
    package var patchSize: Int
    package var patchSizeSource: String
    package var receptiveField: Int
    package var receptiveFieldSize: [Int]
    package var stride: Int
    package var strideSize: [Int]
    package var origin: [Int]
    package var classes: Int
    package var exact: Bool
    package var inexactReasons: [String]
    package var hasWeights: Bool
    package var layers: [LayerRow]
    package var macsPerOutputPixel: ModeCost
    package var preprocessing: PreprocessingInfo
    package var notes: [String]

    package init(model: LoadedModel, preprocessing: Preprocessing) throws {
        let net = model.net
        let g = model.geometry
        let (_, shapes) = try net.shapes(input: g.patchSize)
        var rows: [LayerRow] = []
        var blobChannels: [String: Int] = [net.inputName: net.inputChannels]
        var naive = 0.0, fast = 0.0, dense = 0.0
        for (i, layer) in net.layers.enumerated() {
            let out = shapes[i]
            let lg = model.layerGeometry[i]
            var row = LayerRow(
                name: layer.name, type: layer.op.typeName, output: [out.c, out.h, out.w],
                macsPerPosition: 0, macsPerPatch: 0,
                receptiveField: [lg.receptiveField.h, lg.receptiveField.w])
            switch layer.op {
            case .convolution(let c):
                row.kernel = [c.kernel.h, c.kernel.w]
                row.stride = [c.stride.h, c.stride.w]
                row.pad = [c.pad.h, c.pad.w]
                row.dilation = [c.dilation.h, c.dilation.w]
                row.macsPerPosition = Self.saturatingProduct([c.outputs, c.inputsPerGroup, c.kernel.h, c.kernel.w])
            case .pooling(let p):
                let k = p.global ? Size2(blobChannels.isEmpty ? 1 : out.h, out.w) : p.kernel
                row.kernel = p.global ? nil : [k.h, k.w]
                row.stride = [p.stride.h, p.stride.w]
                row.pad = [p.pad.h, p.pad.w]
                row.dilation = [p.dilation.h, p.dilation.w]
                if !p.roundsUp { row.rounding = "floor" }
            case .innerProduct(let ip):
                row.macsPerPosition = Self.saturatingProduct([ip.outputs, ip.inputs])
            case .lrn(let l):
                row.kernel = l.region == .withinChannel ? [l.size, l.size] : [1, 1]
            default:
                break
            }
            for t in layer.tops { blobChannels[t] = out.c }
            row.macsPerPatch = Self.saturatingProduct([row.macsPerPosition, out.h, out.w])
            let jump = [lg.inputJump.h, lg.stride.h, lg.inputJump.w, lg.stride.w].reduce(1.0) { $0 * Double($1) }
            naive += Double(row.macsPerPatch)
            dense += Double(row.macsPerPosition)
            fast += Double(row.macsPerPosition) / jump
            rows.append(row)
        }
        let s2 = Double(g.stride.h) * Double(g.stride.w)
        name = net.name
        inputChannels = net.inputChannels
        patchSize = g.patchSize.h
        patchSizeSource = model.patchSizeSource
        receptiveField = g.receptiveField.h
        receptiveFieldSize = [g.receptiveField.h, g.receptiveField.w]
        stride = g.stride.h
        strideSize = [g.stride.h, g.stride.w]
        origin = [g.origin.h, g.origin.w]
        classes = g.classes
        exact = g.isExact
        inexactReasons = g.inexactReasons
        hasWeights = model.hasWeights
        layers = rows
        macsPerOutputPixel = ModeCost(
            naive: Self.saturatingInt(naive), fast: Self.saturatingInt(fast),
            shift: Self.saturatingInt(fast * s2), dense: Self.saturatingInt(dense))
        self.preprocessing = PreprocessingInfo(
            channelOrder: preprocessing.channelOrder.rawValue,
            rawScale: preprocessing.rawScale, mean: preprocessing.mean,
            meanSource: preprocessing.meanSource, scale: preprocessing.scale, std: preprocessing.std)
        notes = model.notes
        _ = blobChannels
    }

    /// The counts of absurd nets saturate at Int.max rather than trap.
    private static func saturatingProduct(_ factors: [Int]) -> Int {
        var p = 1
        for f in factors {
            let (q, overflow) = p.multipliedReportingOverflow(by: f)
            if overflow { return Int.max }
            p = q
        }
        return p
    }

    private static func saturatingInt(_ value: Double) -> Int {
        value.isNaN ? 0 : (value >= 0x1p63 ? Int.max : Int(value.rounded()))
    }

    /// One JSON object (snake_case keys, as `status --json`'s; sorted, pretty).
    package func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase  // docs/CLI audit 36 F13: camelCase beside snake_case
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// The human-readable table and summary.
    package func text(preprocessing: Preprocessing) -> String {
        func pair(_ v: [Int]?) -> String {
            guard let v else { return "-" }
            return v[0] == v[1] ? "\(v[0])" : "\(v[0])×\(v[1])"
        }
        var header = [
            "layer", "type", "output (C×H×W)", "kernel", "stride", "dilation", "pad", "MACs/position",
            "MACs/patch",
        ]
        var table: [[String]] = layers.map {
            [
                $0.name, $0.type + ($0.rounding.map { " (\($0))" } ?? ""),
                "\($0.output[0])×\($0.output[1])×\($0.output[2])", pair($0.kernel), pair($0.stride),
                pair($0.dilation), pair($0.pad), "\($0.macsPerPosition)", "\($0.macsPerPatch)",
            ]
        }
        table.insert(header, at: 0)
        header = []
        var widths = [Int](repeating: 0, count: table[0].count)
        for r in table { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        var out = ""
        for (n, r) in table.enumerated() {
            out +=
                r.enumerated().map { i, c in
                    i >= 7
                        ? String(repeating: " ", count: widths[i] - c.count) + c
                        : c + String(repeating: " ", count: widths[i] - c.count)
                }.joined(separator: "  ") + "\n"
            if n == 0 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        out += "\n"
        out += "input: \(inputChannels) channels, patch size \(patchSize) (from \(patchSizeSource))\n"
        out += "receptive field: \(pair(receptiveFieldSize))\n"
        out += "total stride: \(pair(strideSize))\n"
        out += "classes: \(classes)\n"
        if exact {
            out += "exact: yes (no padding, no partial pooling windows at patch size)\n"
        } else {
            out += "exact: no\n"
            for r in inexactReasons { out += "  - \(r)\n" }
            out +=
                "  (dense/shift maps will differ from the patch classifier; --allow-padding computes them anyway; naive is exact)\n"
        }
        out += "weights: \(hasWeights ? "loaded" : "none (shape-only)")\n"
        out += "MACs per output pixel (Convolution/InnerProduct multiply-accumulates): "
        out += "naive \(macsPerOutputPixel.naive), fast \(macsPerOutputPixel.fast), "
        out += "shift \(macsPerOutputPixel.shift), dense \(macsPerOutputPixel.dense)\n"
        out += "preprocessing:\n"
        for l in preprocessing.descriptionLines { out += "  \(l)\n" }
        if !notes.isEmpty {
            out += "notes:\n"
            for n in notes { out += "  - \(n)\n" }
        }
        return out
    }
}
