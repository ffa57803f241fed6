import TesseraCore

/// The import itself: the definition's layers in order, each either giving the
/// input, left out of the TEST phase, or turned into a Tessera layer whose output
/// channels (and shape, once the input size is known) the next layers build on.
extension CaffeImporter {
    /// What the import has learnt so far, carried from one layer to the next.
    struct Progress {
        var inputName: String?
        /// The input shape as declared (num, channels, height, width), if it is.
        var inputDims: [Int]?
        var cropSize: Int?
        var meanFileHint: String?
        /// The data layer's transform_param mean_value and scale (Caffe's TEST-phase preprocessing).
        var declaredMean: [Float] = []
        var declaredScale: Float?
        var layers: [Layer] = []
        /// Channels of every blob produced so far.
        var channels: [String: Int] = [:]
        /// Shapes of every blob produced so far; empty while the input size is unknown.
        var shapes: [String: Shape] = [:]
        var patch: Size2?
        /// Placeholder weight values built so far (a shape-only import).
        var placeholderTotal = 0
        /// The data layers' extra tops (labels): layers reading them only train.
        var labelBlobs: Set<String> = []
        /// Blobs of two axes (N×K): an InnerProduct's output, a flattening's, and what the layers that keep the
        /// first input's axes make of them. A Softmax's axis −1 is their channel axis, a 4-D blob's width.
        var vectors: Set<String> = []
        /// Pooling layers that round up over a partial window (rounded down, their output
        /// would be smaller): the likely cause when an InnerProduct's weights are too few.
        var partialPools: [String] = []
        /// Pooling layers whose last window, in Caffe, starts past the input (stride > kernel, no padding):
        /// Caffe pools it from nothing, Tessera leaves it out (as PyTorch does), so later weights may not fit.
        var emptyWindowPools: [String] = []
    }

    mutating func importNet(_ param: Caffe_NetParameter) throws -> Imported {
        let def = try Self.upgradeV1(param, file: definitionFile)
        if !param.layers.isEmpty, param.layer.isEmpty {
            notes.append(
                "\(definitionFile): legacy V1 'layers' definition, read with its layer types mapped to current names")
        }
        var progress = Progress(patch: patchOverride)
        try readNetInput(def, into: &progress)
        // Data layers give the input name, the crop size and the preprocessing, whatever their phase, but those
        // of the TEST phase first: a train_val file's TRAIN layer usually comes first, and its mean, scale and
        // crop size were taken instead of the TEST layer's (model audit 48 F1: a map 0.97 off).
        // Only the TEST phase's, when it has one: a TEST layer without a mean took the TRAIN layer's (review).
        // The others' extra tops are still labels, which only training layers read.
        let inputLayers = def.layer.filter { Self.dataTypes.contains($0.type) || $0.type == "Input" }
        let testLayers = inputLayers.filter { Self.includedInTest($0) }
        for lp in testLayers.isEmpty ? inputLayers : testLayers { try readInputLayer(lp, into: &progress) }
        for lp in inputLayers where !testLayers.isEmpty && !Self.includedInTest(lp) {
            progress.labelBlobs.formUnion(lp.top.dropFirst())
        }
        for (i, lp) in def.layer.enumerated() {
            if Self.dataTypes.contains(lp.type) || lp.type == "Input" { continue }
            guard runsAtInference(lp, labelBlobs: progress.labelBlobs) else { continue }
            try settleInputShape(before: def.layer[i...], &progress)
            try addLayer(lp, of: def, to: &progress)
        }
        return try imported(def, progress)
    }

    /// Whether the layer runs at inference; a note says why one does not.
    private mutating func runsAtInference(_ lp: Caffe_LayerParameter, labelBlobs: Set<String>) -> Bool {
        let name = lp.name, type = lp.type
        guard Self.includedInTest(lp) else {
            notes.append("layer '\(name)' (\(type)) skipped: its include/exclude rules leave it out of the TEST phase")
            return false
        }
        if Self.dropTypes.contains(type) || (type.hasSuffix("Loss") && type != "SoftmaxWithLoss") {
            notes.append("layer '\(name)' (\(type)) dropped: it is only used in training")
            return false
        }
        if lp.bottom.contains(where: labelBlobs.contains), type != "SoftmaxWithLoss" {
            notes.append("layer '\(name)' (\(type)) dropped: it reads the training labels")
            return false
        }
        return true
    }

    /// Turns `lp` into a layer (or folds a Scale into the BatchNorm before it) and
    /// records its tops' channels and shapes.
    private mutating func addLayer(
        _ lp: Caffe_LayerParameter, of def: Caffe_NetParameter,
        to progress: inout Progress
    ) throws {
        var bottoms = Array(lp.bottom)
        let tops = Array(lp.top)
        let inC = bottoms.first.flatMap { progress.channels[$0] }
        let inShape = bottoms.first.flatMap { progress.shapes[$0] }
        let vectorInput = bottoms.first.map { progress.vectors.contains($0) } ?? false
        // (A Reshape to { 0, -1, 1, 1 } keeps 4 axes: review of audit 48 F2.)
        let makesVector =
            lp.type == "InnerProduct" || lp.type == "Flatten"
            || (lp.type == "Reshape" && lp.reshapeParam.shape.dim.count == 2)
        defer { if makesVector || (vectorInput && lp.type != "Reshape") { progress.vectors.formUnion(tops) } }
        if lp.type == "PReLU" {
            try addPReLU(lp, inC: inC, to: &progress)
            return
        }
        if lp.type == "Clip" || lp.type == "ReLU6" {
            try addClip(lp, inC: inC, to: &progress)
            return
        }
        let op: LayerOp
        do {
            op = try operation(
                lp, inputChannels: inC, inputShape: inShape, vectorInput: vectorInput, bottoms: &bottoms,
                placeholderTotal: &progress.placeholderTotal)
        } catch var e as ModelError
            where lp.type == "InnerProduct" && e.message.contains("shape mismatch")
            && !(progress.partialPools.isEmpty && progress.emptyWindowPools.isEmpty)
        {
            if !progress.emptyWindowPools.isEmpty {
                let pools = progress.emptyWindowPools.map { "'\($0)'" }.joined(separator: ", ")
                e.message +=
                    "; pooling \(pools) has, in Caffe, a last window that starts past its input (a stride larger "
                    + "than the kernel, no padding), which Caffe pools from no pixels: Tessera leaves that window "
                    + "out (as PyTorch does), so the weights trained with it do not fit"
            } else {
                let pools = progress.partialPools.map { "'\($0)'" }.joined(separator: ", ")
                e.message +=
                    "; pooling \(pools) rounds its output size up (Caffe's default) over a partial window: weights "
                    + "trained with pooling that rounds down (BVLC Caffe's round_mode: FLOOR, PyTorch's "
                    + "ceil_mode=False) need round_mode: FLOOR in its pooling_param"
            }
            throw e
        }
        guard !bottoms.isEmpty else { throw layerError(lp, "the layer has no bottom (input)") }
        if tops.isEmpty { throw layerError(lp, "the layer has no top (output)") }
        if lp.type == "Flatten" || lp.type == "Reshape" { try checkFlatten(lp, inShape: inShape, of: def) }
        if lp.type != "Split", tops.count > 1 {
            throw layerError(lp, "the layer has \(tops.count) tops; a \(lp.type) layer has one")
        }
        if case .scale(let s) = op,
            foldScale(s, lp, of: def, bottoms: bottoms, tops: tops, inC: inC, inShape: inShape, into: &progress)
        {
            return
        }
        try append(Layer(name: lp.name, op: op, bottoms: bottoms, tops: tops), inC: inC, to: &progress)
    }

    /// The layer's operation, its settings and weights checked. A SoftmaxWithLoss
    /// becomes a Softmax on its first bottom only (the others are labels).
    private mutating func operation(
        _ lp: Caffe_LayerParameter, inputChannels inC: Int?, inputShape inShape: Shape?, vectorInput: Bool,
        bottoms: inout [String], placeholderTotal: inout Int
    ) throws -> LayerOp {
        let type = lp.type
        switch type {
        case "Convolution":
            return .convolution(try convolution(lp, inputChannels: inC, placeholderTotal: &placeholderTotal))
        case "Pooling":
            return .pooling(try pooling(lp))
        case "InnerProduct":
            return .innerProduct(try innerProduct(lp, input: inShape, placeholderTotal: &placeholderTotal))
        case "ReLU":
            return .relu(negativeSlope: lp.reluParam.negativeSlope)
        case "Sigmoid":
            return .sigmoid
        case "TanH":
            return .tanh
        case "ELU":
            return .elu(alpha: lp.eluParam.alpha)
        case "BNLL":
            return .softplus
        case "LRN":
            return .lrn(try lrn(lp))
        case "BatchNorm":
            return .batchNorm(try batchNorm(lp, channels: inC, placeholderTotal: &placeholderTotal))
        case "Scale":
            guard lp.bottom.count == 1 else {
                throw layerError(
                    lp,
                    "a Scale layer with \(lp.bottom.count) inputs (scale taken from a second input) is not supported")
            }
            return .scale(try scale(lp, channels: inC))
        case "AbsVal":
            return .relu(negativeSlope: -1)  // |x| = x for x > 0, −1·x otherwise
        case "Power":
            return .scale(try power(lp, channels: inC))
        case "Dropout", "Split":
            return .identity
        case "Flatten", "Reshape":
            // Flattening before an InnerProduct (which flattens its input itself): nothing to compute
            // (Caffe audit); checkFlatten refuses other readers.
            try checkFlattening(lp, inputShape: inShape)
            return .identity
        case "Softmax", "SoftmaxWithLoss":
            // The channel axis: 1, or counted from the end: -3 of N×C×H×W, -1 of N×C (an InnerProduct's output).
            let axis = lp.hasSoftmaxParam ? Int(lp.softmaxParam.axis) : 1
            guard axis == 1 || axis == (vectorInput ? -1 : -3) else {
                // (Axis -1 of a 4-D blob was taken for its channels when it was 1×1 at the patch size: Caffe takes
                // its width, and gives 1 for every class. Model audit 48 F2.)
                let which =
                    vectorInput
                    ? " (this N×K blob, an InnerProduct's output, has two axes: its classes are axis 1 or -1)"
                    : axis == -1 ? " (of this N×C×H×W blob, the width: Caffe computes 1 for every class)" : ""
                throw layerError(
                    lp, "softmax_param.axis is \(axis)\(which); only the channel axis (1) is supported")
            }
            if type == "SoftmaxWithLoss" {
                bottoms = Array(bottoms.prefix(1))
                notes.append("layer '\(lp.name)' (SoftmaxWithLoss) replaced by Softmax")
            }
            return .softmax
        case "Concat":
            let axis = lp.concatParam.hasAxis ? Int(lp.concatParam.axis) : Int(lp.concatParam.concatDim)
            guard axis == 1 || axis == -3 else {
                throw layerError(lp, "concat_param axis is \(axis); only the channel axis (1, or -3) is supported")
            }
            return .concat
        case "Eltwise":
            return .eltwise(try eltwise(lp))
        case "":
            // (Audit 53 F12: a caffemodel of empty layers, given alone, said "unsupported layer type ''".)
            throw layerError(
                lp,
                "it has no type: every layer of a net definition names one (a damaged file? A caffemodel given "
                    + "alone must hold the net's definition too; else give the deploy prototxt with --model)")
        default:
            // A near miss ("ReLu", "relu") is named (docs/CLI audit 36 F6).
            let meant = Self.computedTypes.first { $0.lowercased() == type.lowercased() }
            throw layerError(
                lp,
                "unsupported layer type '\(type)'\(meant.map { " (did you mean '\($0)'? Types are case-sensitive)" } ?? ""). "
                    + "Tessera runs Convolution, Pooling, InnerProduct, ReLU, Sigmoid, TanH, ELU, BNLL, AbsVal, "
                    + "Power (power 1), Clip, ReLU6, LRN, BatchNorm, Scale, Dropout, Softmax, Concat, Eltwise, Split, "
                    + "Flatten, Reshape (flattening) and PReLU "
                    + "(data, Input, Accuracy and loss layers are read or dropped)")
        }
    }

    /// The layer types the importer turns into computation (the refusal above lists them).
    static let computedTypes = [
        "Convolution", "Pooling", "InnerProduct", "ReLU", "Sigmoid", "TanH", "ELU", "BNLL", "AbsVal", "Power", "Clip",
        "ReLU6", "LRN", "BatchNorm", "Scale", "Dropout", "Softmax", "SoftmaxWithLoss", "Concat", "Eltwise", "Split",
        "Flatten", "Reshape", "PReLU",
    ]

    /// A Flatten (or flattening Reshape) is read as nothing to compute: true before an InnerProduct,
    /// which flattens its input itself, or of a 1×1 input. Any other reader of a flattened C×H×W blob
    /// (a Softmax over all its values, say) would get per-position channels instead, so such a net is
    /// refused.
    private func checkFlatten(_ lp: Caffe_LayerParameter, inShape: Shape?, of def: Caffe_NetParameter) throws {
        if let s = inShape, s.h == 1, s.w == 1 { return }
        let readers = def.layer.filter { other in
            other.name != lp.name && lp.top.contains(where: other.bottom.contains)
                && Self.includedInTest(other) && !Self.dropTypes.contains(other.type)
                && !(other.type.hasSuffix("Loss") && other.type != "SoftmaxWithLoss")
        }
        let others = readers.filter { $0.type != "InnerProduct" }
        let size = inShape.map { "\($0.c)×\($0.h)×\($0.w) " } ?? ""
        guard others.isEmpty else {
            let names = others.map { "'\($0.name)' (\($0.type))" }.joined(separator: ", ")
            throw layerError(
                lp,
                "the \(lp.type) of a \(size)blob is read by \(names): Tessera reads a flattening \(lp.type) only "
                    + "before an InnerProduct (or of a 1×1 blob), where it changes nothing")
        }
    }

    /// A Scale right after a BatchNorm, on its output (in place, or a blob nothing
    /// else reads), becomes that BatchNorm's scale and bias: one layer. False when
    /// it does not follow one that way.
    private mutating func foldScale(
        _ s: Scale, _ lp: Caffe_LayerParameter, of def: Caffe_NetParameter,
        bottoms: [String], tops: [String], inC: Int?, inShape: Shape?,
        into progress: inout Progress
    ) -> Bool {
        guard let last = progress.layers.last, case .batchNorm(var bn) = last.op,
            bottoms.count == 1, last.tops.first == bottoms[0],
            tops == bottoms || !def.layer.contains(where: { $0.name != lp.name && $0.bottom.contains(bottoms[0]) })
        else { return false }
        let s0 = bn.scale ?? [Float](repeating: 1, count: s.scale.count)
        let b0 = bn.bias ?? [Float](repeating: 0, count: s.scale.count)
        bn.scale = zip(s0, s.scale).map { $0 * $1 }
        bn.bias = (0..<s.scale.count).map { b0[$0] * s.scale[$0] + (s.bias?[$0] ?? 0) }
        var merged = last
        merged.op = .batchNorm(bn)
        merged.tops = tops
        progress.layers[progress.layers.count - 1] = merged
        for t in tops {
            progress.channels[t] = inC
            if let sh = inShape { progress.shapes[t] = sh }
        }
        notes.append("layer '\(lp.name)' (Scale) folded into BatchNorm '\(last.name)'")
        return true
    }

    /// Appends the layer and records its tops' channels and, when the input size is
    /// known, their shapes; every bottom must come from an earlier layer.
    /// `append` for a layer another file builds (a PReLU's parts).
    func appendPart(_ layer: Layer, _ inC: Int, _ progress: inout Progress) throws {
        try append(layer, inC: inC, to: &progress)
    }

    private func append(_ layer: Layer, inC: Int?, to progress: inout Progress) throws {
        var outC = inC
        switch layer.op {
        case .convolution(let c): outC = c.outputs
        case .innerProduct(let ip): outC = ip.outputs
        case .concat: outC = layer.bottoms.reduce(0) { $0 + (progress.channels[$1] ?? 0) }
        default: break
        }
        if !progress.shapes.isEmpty {
            let ins = try layer.bottoms.map { b -> Shape in
                guard let s = progress.shapes[b] else {
                    throw ModelError(
                        file: definitionFile, layer: layer.name,
                        "its input blob '\(b)' is not produced by any earlier layer")
                }
                return s
            }
            let out: Shape
            do { out = try layer.outputShape(inputs: ins) } catch let e as ModelError { throw e.inFile(definitionFile) }
            if case .pooling(var p) = layer.op, p.roundsUp, !p.global {
                p.roundsUp = false
                let floor = try? Layer(name: layer.name, op: .pooling(p), bottoms: layer.bottoms, tops: layer.tops)
                    .outputShape(inputs: ins)
                if let floor, floor != out { progress.partialPools.append(layer.name) }
                if p.pad == .zero, let input = ins.first {
                    // Caffe drops a window starting past the input only when it pads.
                    func caffe(_ n: Int, _ k: Int, _ s: Int) -> Int { (n - k + s - 1).floorDiv(s) + 1 }
                    if caffe(input.h, p.kernel.h, p.stride.h) != out.h
                        || caffe(input.w, p.kernel.w, p.stride.w) != out.w
                    {
                        progress.emptyWindowPools.append(layer.name)
                    }
                }
            }
            for t in layer.tops { progress.shapes[t] = out }
        } else {
            for b in layer.bottoms where progress.channels[b] == nil && b != progress.inputName {
                if progress.layers.contains(where: { $0.tops.contains(b) }) {
                    // Made from the input by layers that keep its channels, which nothing told.
                    throw ModelError(file: definitionFile, layer: layer.name, Self.unknownChannels)
                }
                throw ModelError(
                    file: definitionFile, layer: layer.name,
                    "its input blob '\(b)' is not produced by any earlier layer")
            }
        }
        for t in layer.tops { progress.channels[t] = outC }
        progress.layers.append(layer)
    }

    /// The net, once every layer is read: it needs an input with known channels and
    /// at least one layer.
    private mutating func imported(_ def: Caffe_NetParameter, _ progress: Progress) throws -> Imported {
        let file = definitionFile
        guard let input = progress.inputName else {
            throw ModelError(file: file, "the net declares no input (no Input layer, 'input:' field, or data layer)")
        }
        guard let inChannels = progress.channels[input] else {
            throw ModelError(
                file: file,
                "the number of input channels is unknown: declare an Input layer "
                    + "(input_param { shape { dim: 1 dim: 3 dim: P dim: P } })")
        }
        guard !progress.layers.isEmpty else { throw ModelError(file: file, "the net has no layers Tessera can run") }
        let declared = try Self.spatial(progress.inputDims, file: file)
        let net = Net(
            name: def.name, inputName: input, inputChannels: inChannels,
            patchSize: progress.patch ?? declared, layers: try chooseOutput(progress.layers))
        return Imported(
            net: net, declaredInput: declared, cropSize: progress.cropSize,
            meanFileHint: progress.meanFileHint, declaredMean: progress.declaredMean,
            declaredScale: progress.declaredScale)
    }

    /// An error about layer `lp` of the definition file.
    func layerError(_ lp: Caffe_LayerParameter, _ message: String) -> ModelError {
        ModelError(file: definitionFile, layer: lp.name, message)
    }

    /// What a layer whose input channels nothing told says (a training net's data layer gives none: they come
    /// from the mean values or the first weights, when there are some).
    static let unknownChannels =
        "the number of its input channels is unknown (the net's input declares none, and neither its mean_value "
        + "list nor the weights before this layer tell): give the weights, or a deploy prototxt with input_shape "
        + "{ dim: 1 dim: C dim: P dim: P }"
}
