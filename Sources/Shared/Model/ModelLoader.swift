import Foundation
import Logging
import TesseraCore

/// Which files make a model, as the user gave them on the command line.
package struct ModelSource: Sendable, Equatable {
    /// Deploy prototxt (text). Optional when the caffemodel holds its (training) net.
    package var model: String?
    /// Trained weights (binary caffemodel).
    package var weights: String?
    /// The classifier's patch size P, overriding what the files say.
    package var patchSize: Int?
    /// When false, a prototxt without weights loads with zero placeholder weights (shapes only).
    package var requireWeights: Bool

    package init(model: String? = nil, weights: String? = nil, patchSize: Int? = nil, requireWeights: Bool = true) {
        self.model = model
        self.weights = weights
        self.patchSize = patchSize
        self.requireWeights = requireWeights
    }
}

/// A model's files as bytes in memory, with the names error messages use.
package struct ModelContents: Sendable {
    /// Deploy prototxt (text), or nil when the caffemodel holds its (training) net.
    package var prototxt: Data?
    package var prototxtName: String
    /// Trained weights (binary caffemodel), or nil for a shape-only load.
    package var weights: Data?
    package var weightsName: String

    package init(
        prototxt: Data?, prototxtName: String = "deploy.prototxt", weights: Data?,
        weightsName: String = "weights.caffemodel"
    ) {
        self.prototxt = prototxt
        self.prototxtName = prototxtName
        self.weights = weights
        self.weightsName = weightsName
    }
}

/// A model ready for the engine: the fully convolutional net, its geometry, and what was done to get there.
package struct LoadedModel: Sendable {
    /// The net as imported (a patch classifier: may contain InnerProduct layers).
    package var classifier: Net
    /// The fully convolutional net (InnerProduct → Convolution); `patchSize` is set.
    package var net: Net
    /// Receptive field, stride, classes and exactness at patch size.
    package var geometry: NetGeometry
    package var layerGeometry: [LayerGeometry]
    /// Where the patch size came from (for reports).
    package var patchSizeSource: String
    /// The input size the definition declares, if any (a deploy FCN's full input, e.g. 2064).
    package var declaredInput: Size2?
    /// False for a shape-only load (prototxt without weights): the weights are zeros.
    package var hasWeights: Bool
    /// Mean file named by the training data layer (a path on the training machine), if any.
    package var meanFileHint: String?
    /// The training data layer's transform_param mean_value (net's channel order) and scale: the
    /// preprocessing Caffe applied, used when the command line gives none (`PreprocessingOptions`).
    package var declaredMean: [Float] = []
    package var declaredScale: Float?
    /// What the loader did that the user should know (skipped layers, ignored fields, BatchNorm layout…).
    package var notes: [String]

    package var patchSize: Size2 { geometry.patchSize }

    /// Throws, naming the layers and numbers, unless the FCN is exactly the classifier
    /// at every pixel or approximate maps were asked for (`--allow-padding`).
    package func requireExact(allowApproximate: Bool) throws {
        guard !geometry.isExact, !allowApproximate else { return }
        throw ModelError(
            .inexact,
            "the fully convolutional net is not exactly the patch classifier at every pixel: "
                + geometry.inexactReasons.joined(separator: "; "))
    }
}

package enum ModelLoader {
    /// Loads a model: reads the files, merges weights by layer name, drops training-only
    /// layers, finds the patch size, and performs net surgery.
    package static func load(_ source: ModelSource, logger: Logger? = nil) throws -> LoadedModel {
        if let path = source.model, ONNXFiles.isONNX(nil, name: path) {
            if let w = source.weights {
                throw ModelError(
                    .invalid, file: w,
                    "an ONNX model holds its own weights: give the .onnx model alone, without weights")
            }
            return try loadONNX(ONNXFiles.read(path), file: path, patchSize: source.patchSize, logger: logger)
        }
        if source.model == nil, let w = source.weights, ONNXFiles.isONNX(nil, name: w) {
            throw ModelError(.invalid, file: w, "an ONNX model is given as the model, not as weights")
        }
        let definition = try source.model.map { try CaffeFiles.readBytes($0, what: "model definition (prototxt)") }
        let weights = try source.weights.map { try CaffeFiles.readBytes($0, what: "weights (caffemodel)") }
        let contents = ModelContents(
            prototxt: definition, prototxtName: source.model ?? "",
            weights: weights, weightsName: source.weights ?? "")
        return try load(contents, patchSize: source.patchSize, requireWeights: source.requireWeights, logger: logger)
    }

    /// Loads a model from its files' contents in memory (what a worker receives):
    /// the same parsing, checks and surgery as from files, with the names in messages.
    package static func load(
        _ contents: ModelContents, patchSize: Int?, requireWeights: Bool = true,
        logger: Logger? = nil
    ) throws -> LoadedModel {
        var ignored: [String] = []
        if let data = contents.prototxt, ONNXFiles.isONNX(data, name: contents.prototxtName) {
            if contents.weights != nil {
                throw ModelError(
                    .invalid, file: contents.weightsName,
                    "an ONNX model holds its own weights: give the .onnx model alone, without weights")
            }
            let file = contents.prototxtName
            return try loadONNX(ONNXFiles.decode(data, file: file), file: file, patchSize: patchSize, logger: logger)
        }
        if let data = contents.prototxt {
            let model = contents.prototxtName
            let definition = try CaffeFiles.decodePrototxt(data, file: model, ignored: &ignored)
            let recorded = try String(data: data, encoding: .utf8).flatMap {
                try CaffeWriter.recordedPatchSize($0, file: model)
            }
            var weights: Caffe_NetParameter?
            if let w = contents.weights {
                weights = try CaffeFiles.decodeCaffemodel(w, file: contents.weightsName)
            } else if requireWeights {
                throw ModelError(.weights, file: model, "no weights: give the trained .caffemodel")
            }
            return try load(
                definition: definition, definitionFile: model, weights: weights,
                weightsFile: contents.weights == nil ? nil : contents.weightsName, patchSize: patchSize,
                recordedPatch: recorded, ignored: ignored, logger: logger)
        } else if let w = contents.weights {
            let definition = try CaffeFiles.decodeCaffemodel(w, file: contents.weightsName)
            return try load(
                definition: definition, definitionFile: contents.weightsName, definitionHoldsWeights: true,
                patchSize: patchSize, ignored: ignored, logger: logger)
        } else {
            throw ModelError("no model: give a deploy prototxt and/or a caffemodel")
        }
    }

    /// Loads a model from messages already read: `definition` from `definitionFile`,
    /// with the weights of `weights` (merged by layer name) when given; without
    /// them, shapes only (zero placeholder weights) unless the definition holds
    /// its own weights (a caffemodel given alone). `placeholderLimit` caps the
    /// placeholder weights of a shape-only load (elements); `patchValueLimit` the
    /// activation values of one patch (`requirePatchFits`).
    static func load(
        definition: Caffe_NetParameter, definitionFile: String, definitionHoldsWeights: Bool = false,
        weights: Caffe_NetParameter? = nil, weightsFile: String? = nil, patchSize: Int?, recordedPatch: Size2? = nil,
        ignored: [String] = [], placeholderLimit: Int = CaffeImporter.maxPlaceholderElements,
        patchValueLimit: Int = maxPatchValues,
        logger: Logger? = nil
    ) throws -> LoadedModel {
        var importer = CaffeImporter(definitionFile: definitionFile)
        importer.placeholderLimit = placeholderLimit
        if let weights {
            let file = weightsFile ?? "(weights)"
            let w = try CaffeImporter.upgradeV1(weights, file: file)
            importer.weightsFile = file
            for l in w.layer where !l.blobs.isEmpty {
                importer.weightsByLayer[l.name] = l.blobs
                // Blobs shared by name (`param { name: … }`) are stored with the layer that owns them.
                for (i, spec) in l.param.enumerated() where !spec.name.isEmpty && i < l.blobs.count {
                    if importer.sharedBlobs[spec.name] == nil { importer.sharedBlobs[spec.name] = l.blobs[i] }
                }
            }
            if importer.weightsByLayer.isEmpty {
                throw ModelError(.weights, file: file, "the caffemodel holds no weights at all")
            }
        } else if !definitionHoldsWeights {
            importer.shapeOnly = true
        }
        if let p = patchSize {
            guard p > 0, p <= 1 << 16 else {
                throw ModelError(.patchSize, "the patch size \(p) is not between 1 and 65536")
            }
            importer.patchOverride = Size2(square: p)
        }
        let imported: CaffeImporter.Imported
        do {
            imported = try importer.importNet(definition)
        } catch var e as ModelError {
            // A misspelt field is ignored as unknown, and the error comes later, about the field it should have
            // been (user review: "kernel_sise: 3" gave "convolution_param has no kernel_size", nothing more).
            let unknown = ignored.filter { $0.contains(": ignored field '") }
            if !unknown.isEmpty {
                e.message +=
                    " (the file's unknown fields were ignored: "
                    + unknown.prefix(5).map { $0.components(separatedBy: ": ignored field ").last ?? $0 }
                    .joined(separator: "; ")
                    + (unknown.count > 5 ? "; …" : "") + ": a misspelt field?)"
            }
            throw e
        }
        var notes = ignored + importer.notes
        if importer.shapeOnly {
            notes.append("no weights given: shapes and geometry only (weights are zero placeholders)")
        }

        // Patch size: --patch-size, the data layer's crop_size, the declared input when the
        // net gives 1×1 there, the size `convert` recorded, else (a fully convolutional net)
        // its receptive field.
        let classifier = imported.net
        let patch: Size2
        let patchSource: String
        if let p = importer.patchOverride {
            (patch, patchSource) = (p, "--patch-size")
        } else if let c = imported.cropSize {
            (patch, patchSource) = (Size2(square: c), "the data layer's crop_size")
        } else if let d = imported.declaredInput, (try? classifier.geometry(patch: d)) != nil {
            (patch, patchSource) = (d, "the declared input size")
        } else if let r = recordedPatch {
            (patch, patchSource) = (r, "the prototxt's '\(CaffeWriter.patchSizeComment)' line")
        } else if let rf = classifier.receptiveFieldWithoutShapes() {
            (patch, patchSource) = (
                rf,
                "the receptive field ("
                    + (imported.declaredInput.map { "the declared input \($0) is a full image, not a patch" }
                        ?? "the net declares no input size nor crop_size")
                    + ")"
            )
        } else {
            // Why the declared input was no patch size, when it was not (Caffe fuzz: the net's own fault, a layer
            // whose inputs do not line up, hid behind "give --patch-size"). Branches that do not line up are the
            // error whatever the size (model audit 48 F3: --patch-size then gave the same error); other reasons
            // (a stride too large at this size) leave the patch size to give.
            var why = "the patch size is unknown: give the size of the patches the classifier was trained on"
            if let d = imported.declaredInput {
                do { _ = try classifier.geometry(patch: d) } catch var e as ModelError where e.kind == .shape {
                    e.message += " (at the input size the file declares, \(d))"
                    throw e.inFile(importer.definitionFile)
                } catch {
                    why += " (at the declared input size \(d): \(error))"
                }
            }
            throw ModelError(.patchSize, file: importer.definitionFile, why)
        }
        // The patch size the files give, which --patch-size may override.
        let given =
            imported.cropSize.map { Size2(square: $0) }
            ?? imported.declaredInput.flatMap { (try? classifier.geometry(patch: $0)) != nil ? $0 : nil }
            ?? recordedPatch
        var loaded = try finish(
            classifier, patch: patch, patchSource: patchSource, given: given, file: importer.definitionFile,
            declaredInput: imported.declaredInput, hasWeights: !importer.shapeOnly,
            meanFileHint: imported.meanFileHint, notes: notes, patchValueLimit: patchValueLimit,
            parametersFile: importer.weightsFile, logger: logger)
        loaded.declaredMean = imported.declaredMean
        loaded.declaredScale = imported.declaredScale
        return loaded
    }

    /// Net surgery and geometry at patch size: what every format's import ends with.
    /// A note that starts so is logged as a warning (without it): the map may not be what the user expects.
    package static let warningPrefix = "warning: "

    static func finish(
        _ imported: Net, patch: Size2, patchSource: String, given: Size2? = nil, file: String, declaredInput: Size2?,
        hasWeights: Bool, meanFileHint: String?, notes: [String], patchValueLimit: Int = maxPatchValues,
        parametersFile: String? = nil, logger: Logger?
    ) throws -> LoadedModel {
        var classifier = imported
        var notes = notes
        classifier.patchSize = patch
        try ParameterCheck.requireFinite(classifier, file: parametersFile ?? file)
        var fcn = try classifier.fullyConvolutional(patch: patch)
        fcn.patchSize = patch
        let (geometry, perLayer): (NetGeometry, [LayerGeometry])
        do {
            (geometry, perLayer) = try fcn.geometry(patch: patch)
        } catch let e as ModelError {
            throw e.inFile(file)
        }
        try requirePatchFits(fcn, patch: patch, file: file, limit: patchValueLimit)
        if let note = scoresNote(classifier) { notes.append(note) }
        for n in notes {
            if n.hasPrefix(Self.warningPrefix) {
                logger?.warning("\(n.dropFirst(Self.warningPrefix.count))")
            } else {
                logger?.info("\(n)")
            }
        }
        // For `inspect`'s report only: a command that maps warns when neither --mean-file nor --mean
        // is given (`ModelOptions`), and logged here the note also followed a given --mean-file (user review F4).
        if let hint = meanFileHint {
            notes.append(
                "the data layer subtracted the mean image \(hint) (mean_file): give that file with "
                    + "--mean-file (reduced to one mean per channel), or its per-channel values with --mean")
        }
        if patchSource.hasPrefix("the receptive field"), geometry.receptiveField == patch {
            // Nothing records the size the classifier was trained on; a larger one places its
            // window elsewhere in the patch, and the map would be shifted.
            let warning =
                "patch size \(patch) from \(patchSource): if the classifier was trained on larger patches, "
                + "give --patch-size (the map is placed by it)"
            logger?.warning("\(warning)")
        } else {
            logger?.info("patch size \(patch) from \(patchSource)")
        }
        notes.append("patch size \(patch) from \(patchSource)")
        if patchSource == "--patch-size", let given, given != patch {
            // A net that runs at any size (a global pooling head) would otherwise quietly become
            // another classifier (user audit).
            let warning =
                "--patch-size \(patch) overrides the model's own patch size \(given): the map is the classifier's "
                + "on \(patch.h)×\(patch.w) patches"
            logger?.warning("\(warning)")
            notes.append(warning)
        }
        return LoadedModel(
            classifier: classifier, net: fcn, geometry: geometry, layerGeometry: perLayer,
            patchSizeSource: patchSource, declaredInput: declaredInput,
            hasWeights: hasWeights, meanFileHint: meanFileHint, notes: notes)
    }

    /// A warning when the net does not end in a Softmax or Sigmoid (Identity layers aside): its map
    /// holds raw scores, which the outputs would present as probabilities (audit 53 F7: a deploy file
    /// without its `prob` layer mapped values −7.5…6.4, clipped in the PNGs, without a word).
    static func scoresNote(_ net: Net) -> String? {
        let last = net.layers.last { if case .identity = $0.op { false } else { true } }
        guard let last, !last.op.isProbability else { return nil }
        return Self.warningPrefix
            + "the net ends in layer '\(last.name)' (\(last.op.typeName)), not a Softmax or Sigmoid: its map holds "
            + "raw scores, not probabilities (PNGs, overlays and uint8/uint16 samples clamp them to [0, 1]); "
            + "add the net's Softmax layer if it was left out"
    }

    /// Most activation values one patch may need at once (8 GiB of floats).
    static let maxPatchValues = 1 << 31

    /// Refuses a net whose activations for one patch (a layer's input and output at
    /// once) pass `maxPatchValues`: every tile of a map, in every mode, needs at least
    /// as much, so a small model file declaring a 65536×65536 input would otherwise
    /// make each worker that takes one of its tasks allocate tens of GiB and abort.
    static func requirePatchFits(_ fcn: Net, patch: Size2, file: String, limit: Int = maxPatchValues) throws {
        let (_, shapes) = try fcn.shapes(input: patch)
        var previous = patch.h * patch.w * fcn.inputChannels
        var peak = (values: previous, layer: "the input")
        for (layer, shape) in zip(fcn.layers, shapes) {
            if previous + shape.count > peak.values { peak = (previous + shape.count, "layer '\(layer.name)'") }
            previous = shape.count
        }
        guard peak.values <= limit else {
            throw ModelError(
                .shape, file: file,
                "at patch size \(patch), one patch needs \(peak.values) activation values at once (at \(peak.layer)), "
                    + "more than the \(limit) (\(limit >> 28) GiB of floats) Tessera computes with: every map tile would need as much"
            )
        }
    }

    /// Imports an ONNX model (its external data already read) and performs net surgery.
    static func loadONNX(
        _ model: Onnx_ModelProto, file: String, patchSize: Int?, logger: Logger?
    ) throws -> LoadedModel {
        var importer = ONNXImporter(file: file)
        if let p = patchSize {
            guard p > 0, p <= 1 << 16 else {
                throw ModelError(.patchSize, "the patch size \(p) is not between 1 and 65536")
            }
            importer.patchOverride = Size2(square: p)
        }
        let imported = try importer.importModel(model)
        let patch = imported.net.patchSize!
        let source =
            importer.patchOverride != nil
            ? "--patch-size"
            : imported.declaredInput != nil
                ? "the ONNX graph's input shape" : "the model's metadata (\(ONNXImporter.patchSizeKey))"
        return try finish(
            imported.net, patch: patch, patchSource: source, given: imported.declaredInput ?? importer.recordedPatch,
            file: file, declaredInput: imported.declaredInput,
            hasWeights: true, meanFileHint: nil, notes: importer.notes, logger: logger)
    }
}

extension Net {
    /// Receptive field from kernels, strides and dilations alone (no InnerProduct):
    /// the patch size of a net that is already fully convolutional.
    func receptiveFieldWithoutShapes() -> Size2? {
        var rf: [String: (Size2, Size2)] = [inputName: (.one, .one)]
        for layer in layers {
            guard let first = layer.bottoms.first, let start = rf[first] else { return nil }
            var r = start.0
            let j = start.1
            // Branches that meet share a centre (`geometry` checks it): the largest window is the output's.
            for other in layer.bottoms.dropFirst() {
                if let (o, _) = rf[other] { r = Size2(max(r.h, o.h), max(r.w, o.w)) }
            }
            var k = Size2.one, s = Size2.one, d = Size2.one
            switch layer.op {
            case .convolution(let c): (k, s, d) = (c.kernel, c.stride, c.dilation)
            case .pooling(let p):
                if p.global { return nil }
                (k, s, d) = (p.kernel, p.stride, p.dilation)
            case .innerProduct: return nil
            case .lrn(let l) where l.region == .withinChannel: k = Size2(square: l.size)
            default: break
            }
            // Checked: a net whose receptive field or stride passes Net.maxGeometry has no patch size.
            func grow(_ r: Int, _ d: Int, _ k: Int, _ j: Int, _ s: Int) -> (Int, Int)? {
                let a = d.multipliedReportingOverflow(by: k - 1)
                let b = a.partialValue.multipliedReportingOverflow(by: j)
                let c = r.addingReportingOverflow(b.partialValue)
                let n = j.multipliedReportingOverflow(by: s)
                guard !a.overflow, !b.overflow, !c.overflow, !n.overflow, c.partialValue <= Net.maxGeometry,
                    n.partialValue <= Net.maxGeometry
                else { return nil }
                return (c.partialValue, n.partialValue)
            }
            guard let (rh, jh) = grow(r.h, d.h, k.h, j.h, s.h), let (rw, jw) = grow(r.w, d.w, k.w, j.w, s.w) else {
                return nil
            }
            let out = (Size2(rh, rw), Size2(jh, jw))
            for t in layer.tops { rf[t] = out }
        }
        return rf[outputName]?.0
    }
}
