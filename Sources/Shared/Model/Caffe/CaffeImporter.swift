import Foundation
import TesseraCore

/// Turns Caffe's NetParameter (a deploy prototxt, a caffemodel, or both merged by
/// layer name) into Tessera's `Net`, as Caffe would run it in the TEST phase.
struct CaffeImporter {
    /// Where the layer definitions came from (for messages).
    var definitionFile: String
    /// Where the weights came from, if anywhere.
    var weightsFile: String?
    /// Blobs of the weights file by layer name.
    var weightsByLayer: [String: [Caffe_BlobProto]] = [:]
    /// Build placeholder (zero) weights when there are none: shapes only.
    var shapeOnly = false
    /// Patch size given by the user, which wins over everything else.
    var patchOverride: Size2?
    /// What the importer did that a user should know.
    var notes: [String] = []

    /// Largest total of placeholder weights built for a shape-only import (elements).
    static let maxPlaceholderElements = 1 << 31
    /// The cap this import uses (tests lower it to keep hostile inputs cheap).
    var placeholderLimit = maxPlaceholderElements

    /// Result of an import.
    struct Imported {
        var net: Net
        /// The input size the definition declares (Input layer, input_shape, input_dim), if any.
        var declaredInput: Size2?
        /// crop_size of the training data layer, if any.
        var cropSize: Int?
        /// Mean file named by the data layer (a path on the training machine), if any.
        var meanFileHint: String?
    }

    // MARK: - Layer selection

    /// Caffe's NetStateRule check for the TEST phase, level 0, no stages.
    static func meets(_ rule: Caffe_NetStateRule) -> Bool {
        if rule.hasPhase, rule.phase != .test { return false }
        if rule.hasMinLevel, 0 < rule.minLevel { return false }
        if rule.hasMaxLevel, 0 > rule.maxLevel { return false }
        if !rule.stage.isEmpty { return false }
        return true
    }

    static func includedInTest(_ layer: Caffe_LayerParameter) -> Bool {
        if !layer.include.isEmpty { return layer.include.contains(where: meets) }
        if !layer.exclude.isEmpty { return !layer.exclude.contains(where: meets) }
        if layer.hasPhase { return layer.phase == .test }
        return true
    }

    static let dataTypes: Set<String> = ["Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData",
                                         "AnnotatedData", "Python"]
    static let dropTypes: Set<String> = ["Accuracy", "Silence", "EuclideanLoss", "HingeLoss", "InfogainLoss",
                                         "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "ContrastiveLoss"]

    // MARK: - Legacy V1

    static func upgradeV1(_ net: Caffe_NetParameter, file: String) throws -> Caffe_NetParameter {
        guard net.layer.isEmpty, !net.layers.isEmpty else { return net }
        var out = net
        out.layers = []
        for old in net.layers {
            var l = Caffe_LayerParameter()
            l.name = old.name
            l.bottom = old.bottom
            l.top = old.top
            l.include = old.include
            l.exclude = old.exclude
            l.blobs = old.blobs
            guard let type = v1Types[old.type] else {
                throw ModelError(file: file, layer: old.name,
                    "this legacy (V1 'layers') file uses the layer type \(old.type), which Tessera does not support; "
                    + "upgrade it with Caffe's upgrade_net_proto_text/upgrade_net_proto_binary")
            }
            l.type = type
            if old.hasConvolutionParam { l.convolutionParam = old.convolutionParam }
            if old.hasPoolingParam { l.poolingParam = old.poolingParam }
            if old.hasInnerProductParam { l.innerProductParam = old.innerProductParam }
            if old.hasLrnParam { l.lrnParam = old.lrnParam }
            if old.hasReluParam { l.reluParam = old.reluParam }
            if old.hasDropoutParam { l.dropoutParam = old.dropoutParam }
            if old.hasConcatParam { l.concatParam = old.concatParam }
            if old.hasEltwiseParam { l.eltwiseParam = old.eltwiseParam }
            if old.hasSoftmaxParam { l.softmaxParam = old.softmaxParam }
            if old.hasDataParam { l.dataParam = old.dataParam }
            if old.hasTransformParam { l.transformParam = old.transformParam }
            if old.hasImageDataParam { l.imageDataParam = old.imageDataParam }
            if old.hasMemoryDataParam { l.memoryDataParam = old.memoryDataParam }
            out.layer.append(l)
        }
        return out
    }

    static let v1Types: [Caffe_V1LayerParameter.LayerType: String] = [
        .accuracy: "Accuracy", .concat: "Concat", .convolution: "Convolution", .data: "Data",
        .dropout: "Dropout", .eltwise: "Eltwise", .imageData: "ImageData", .innerProduct: "InnerProduct",
        .lrn: "LRN", .memoryData: "MemoryData", .pooling: "Pooling", .relu: "ReLU", .sigmoid: "Sigmoid",
        .softmax: "Softmax", .softmaxLoss: "SoftmaxWithLoss", .split: "Split", .tanh: "TanH",
        .silence: "Silence", .euclideanLoss: "EuclideanLoss", .hdf5Data: "HDF5Data", .dummyData: "DummyData",
    ]

    // MARK: - Import

    mutating func importNet(_ param: Caffe_NetParameter) throws -> Imported {
        let file = definitionFile
        let def = try Self.upgradeV1(param, file: file)
        if !param.layers.isEmpty, param.layer.isEmpty {
            notes.append("\(file): legacy V1 'layers' definition, read with its layer types mapped to current names")
        }

        // Input: input + input_shape / input_dim, or an Input layer, or a data layer.
        var inputName: String?
        var inputDims: [Int]?
        if let first = def.input.first {
            inputName = first
            if def.input.count > 1 {
                throw ModelError(file: file, "the net declares \(def.input.count) inputs (\(def.input.joined(separator: ", "))); "
                    + "a patch classifier has one")
            }
            if let shape = def.inputShape.first {
                inputDims = shape.dim.map { Int(clamping: $0) }
            } else if def.inputDim.count >= 4 {
                inputDims = def.inputDim.prefix(4).map { Int($0) }
            } else if !def.inputDim.isEmpty {
                throw ModelError(file: file, "input_dim has \(def.inputDim.count) values, expected 4 (num, channels, height, width)")
            }
        }
        var cropSize: Int?
        var meanFileHint: String?
        var layers: [Layer] = []
        var channels: [String: Int] = [:]
        var shapes: [String: Shape] = [:]
        var patch: Size2? = patchOverride
        var placeholderTotal = 0
        var labelBlobs: Set<String> = []

        for lp in def.layer {
            let name = lp.name
            func fail(_ m: String) -> ModelError { ModelError(file: file, layer: name, m) }
            let type = lp.type

            // Data layers give the input name and the crop size, whatever their phase.
            if Self.dataTypes.contains(type) || type == "Input" {
                if lp.hasTransformParam, lp.transformParam.cropSize > 0, cropSize == nil {
                    cropSize = Int(lp.transformParam.cropSize)
                }
                if lp.hasDataParam, lp.dataParam.cropSize > 0, cropSize == nil { cropSize = Int(lp.dataParam.cropSize) }
                if lp.hasImageDataParam, lp.imageDataParam.cropSize > 0, cropSize == nil {
                    cropSize = Int(lp.imageDataParam.cropSize)
                }
                if lp.hasTransformParam, lp.transformParam.hasMeanFile { meanFileHint = lp.transformParam.meanFile }
                if type == "MemoryData", lp.hasMemoryDataParam, inputDims == nil {
                    let m = lp.memoryDataParam
                    inputDims = [Int(m.batchSize), Int(m.channels), Int(m.height), Int(m.width)]
                }
                if type == "Input" {
                    if let s = lp.inputParam.shape.first { inputDims = s.dim.map { Int(clamping: $0) } }
                }
                guard let top = lp.top.first else { throw fail("the \(type) layer has no top") }
                if let existing = inputName, existing != top {
                    if Self.includedInTest(lp) {
                        throw fail("a second input '\(top)' (the first is '\(existing)'): a patch classifier has one input")
                    }
                } else {
                    inputName = top
                }
                labelBlobs.formUnion(lp.top.dropFirst())
                continue
            }
            guard Self.includedInTest(lp) else {
                notes.append("layer '\(name)' (\(type)) skipped: its include/exclude rules leave it out of the TEST phase")
                continue
            }
            if Self.dropTypes.contains(type) || (type.hasSuffix("Loss") && type != "SoftmaxWithLoss") {
                notes.append("layer '\(name)' (\(type)) dropped: it is only used in training")
                continue
            }
            if lp.bottom.contains(where: labelBlobs.contains), type != "SoftmaxWithLoss" {
                notes.append("layer '\(name)' (\(type)) dropped: it reads the training labels")
                continue
            }

            // Input shape, once the input is known.
            if shapes.isEmpty, let input = inputName {
                let declared = try Self.spatial(inputDims, file: file)
                if patch == nil, let c = cropSize { patch = Size2(square: c) }
                if let dims = inputDims, dims.count >= 2 { channels[input] = dims[1] }
                let inC = try channels[input] ?? Self.guessChannels(lp, weights: blobs(for: lp))
                if let inC { channels[input] = inC }
                if let p = patch ?? declared, let c = channels[input] {
                    shapes[input] = Shape(c: c, h: p.h, w: p.w)
                }
            }

            var op: LayerOp
            var tops = Array(lp.top)
            var bottoms = Array(lp.bottom)
            let inC = bottoms.first.flatMap { channels[$0] }
            let inShape = bottoms.first.flatMap { shapes[$0] }
            switch type {
            case "Convolution":
                op = .convolution(try convolution(lp, inputChannels: inC, placeholderTotal: &placeholderTotal))
            case "Pooling":
                op = .pooling(try pooling(lp))
            case "InnerProduct":
                op = .innerProduct(try innerProduct(lp, input: inShape, placeholderTotal: &placeholderTotal))
            case "ReLU":
                op = .relu(negativeSlope: lp.reluParam.negativeSlope)
            case "Sigmoid":
                op = .sigmoid
            case "TanH":
                op = .tanh
            case "LRN":
                let p = lp.lrnParam
                guard p.localSize % 2 == 1 else { throw fail("lrn_param.local_size is \(p.localSize); Caffe requires an odd size") }
                op = .lrn(LRN(region: p.normRegion == .withinChannel ? .withinChannel : .acrossChannels,
                              size: Int(p.localSize), alpha: p.alpha, beta: p.beta, k: p.k))
            case "BatchNorm":
                op = .batchNorm(try batchNorm(lp, channels: inC, placeholderTotal: &placeholderTotal))
            case "Scale":
                guard lp.bottom.count == 1 else {
                    throw fail("a Scale layer with \(lp.bottom.count) inputs (scale taken from a second input) is not supported")
                }
                op = .scale(try scale(lp, channels: inC))
            case "Dropout":
                op = .identity
            case "Split":
                op = .identity
            case "Softmax", "SoftmaxWithLoss":
                if lp.hasSoftmaxParam, lp.softmaxParam.axis != 1 {
                    throw fail("softmax_param.axis is \(lp.softmaxParam.axis); only the channel axis (1) is supported")
                }
                if type == "SoftmaxWithLoss" {
                    bottoms = Array(bottoms.prefix(1))
                    notes.append("layer '\(name)' (SoftmaxWithLoss) replaced by Softmax")
                }
                op = .softmax
            case "Concat":
                let axis = lp.concatParam.hasAxis ? Int(lp.concatParam.axis) : Int(lp.concatParam.concatDim)
                guard axis == 1 else { throw fail("concat_param axis is \(axis); only the channel axis (1) is supported") }
                op = .concat
            case "Eltwise":
                let p = lp.eltwiseParam
                guard p.coeff.isEmpty || p.coeff.count == lp.bottom.count else {
                    throw fail("eltwise_param has \(p.coeff.count) coeff values for \(lp.bottom.count) inputs")
                }
                let operation: Eltwise.Operation
                switch p.operation {
                case .prod: operation = .product
                case .max: operation = .max
                default: operation = .sum
                }
                op = .eltwise(Eltwise(operation: operation, coefficients: p.coeff))
            default:
                throw fail("unsupported layer type '\(type)'. Tessera runs Convolution, Pooling, InnerProduct, ReLU, "
                    + "Sigmoid, TanH, LRN, BatchNorm, Scale, Dropout, Softmax, Concat, Eltwise and Split")
            }
            guard !bottoms.isEmpty else { throw fail("the layer has no bottom (input)") }
            if tops.isEmpty { throw fail("the layer has no top (output)") }
            if type != "Split", tops.count > 1 { throw fail("the layer has \(tops.count) tops; a \(type) layer has one") }
            tops = Array(tops)

            // BatchNorm followed by its Scale: one layer.
            if case .scale(let s) = op, let last = layers.last, case .batchNorm(var bn) = last.op,
               bottoms.count == 1, last.tops.first == bottoms[0],
               tops == bottoms || !def.layer.contains(where: { $0.name != lp.name && $0.bottom.contains(bottoms[0]) }) {
                let s0 = bn.scale ?? [Float](repeating: 1, count: s.scale.count)
                let b0 = bn.bias ?? [Float](repeating: 0, count: s.scale.count)
                bn.scale = zip(s0, s.scale).map { $0 * $1 }
                bn.bias = (0..<s.scale.count).map { b0[$0] * s.scale[$0] + (s.bias?[$0] ?? 0) }
                var merged = last
                merged.op = .batchNorm(bn)
                merged.tops = tops
                layers[layers.count - 1] = merged
                for t in tops {
                    channels[t] = inC
                    if let sh = inShape { shapes[t] = sh }
                }
                notes.append("layer '\(name)' (Scale) folded into BatchNorm '\(last.name)'")
                continue
            }

            let layer = Layer(name: name, op: op, bottoms: bottoms, tops: tops)
            // Channels and (when the input size is known) shapes.
            var outC = inC
            switch op {
            case .convolution(let c): outC = c.outputs
            case .innerProduct(let ip): outC = ip.outputs
            case .concat: outC = bottoms.reduce(0) { $0 + (channels[$1] ?? 0) }
            default: break
            }
            if !shapes.isEmpty {
                let ins = try bottoms.map { b -> Shape in
                    guard let s = shapes[b] else {
                        throw fail("its input blob '\(b)' is not produced by any earlier layer")
                    }
                    return s
                }
                let out: Shape
                do { out = try layer.outputShape(inputs: ins) } catch let e as ModelError { throw e.inFile(file) }
                for t in tops { shapes[t] = out }
            } else {
                for b in bottoms where channels[b] == nil && b != inputName {
                    throw fail("its input blob '\(b)' is not produced by any earlier layer")
                }
            }
            for t in tops { channels[t] = outC }
            layers.append(layer)
        }

        guard let input = inputName else {
            throw ModelError(file: file, "the net declares no input (no Input layer, 'input:' field, or data layer)")
        }
        guard let inChannels = channels[input] else {
            throw ModelError(file: file, "the number of input channels is unknown: declare an Input layer "
                + "(input_param { shape { dim: 1 dim: 3 dim: P dim: P } })")
        }
        guard !layers.isEmpty else { throw ModelError(file: file, "the net has no layers Tessera can run") }
        let declared = try Self.spatial(inputDims, file: file)
        let net = Net(name: def.name, inputName: input, inputChannels: inChannels, patchSize: patch ?? declared,
                      layers: layers)
        return Imported(net: net, declaredInput: declared, cropSize: cropSize, meanFileHint: meanFileHint)
    }

    static func spatial(_ dims: [Int]?, file: String) throws -> Size2? {
        guard let dims else { return nil }
        guard dims.count == 4 else {
            throw ModelError(file: file, "the input shape has \(dims.count) dimensions (\(dims.map(String.init).joined(separator: "×"))); "
                + "expected 4: num, channels, height, width")
        }
        for d in dims where d <= 0 || d > 1 << 20 {
            throw ModelError(file: file, "the input shape \(dims.map(String.init).joined(separator: "×")) has a dimension "
                + "that is not between 1 and 2^20")
        }
        return Size2(dims[2], dims[3])
    }

    /// Channels of the input from the first layer's weights (for a training net whose data layer does not say).
    static func guessChannels(_ lp: Caffe_LayerParameter, weights: [Caffe_BlobProto]?) -> Int? {
        guard lp.type == "Convolution", let w = weights?.first,
              let v = try? BlobValues(w, file: nil, layer: lp.name, index: 0) else { return nil }
        guard v.dims.count == 4, v.dims[1] > 0 else { return nil }
        let group = Int(max(1, lp.convolutionParam.group))
        let (c, overflow) = v.dims[1].multipliedReportingOverflow(by: group)
        return overflow ? nil : c
    }

    // MARK: - Weights

    func blobs(for lp: Caffe_LayerParameter) throws -> [Caffe_BlobProto]? {
        if weightsFile != nil {
            if let b = weightsByLayer[lp.name] { return b }
            return lp.blobs.isEmpty ? nil : lp.blobs
        }
        return lp.blobs.isEmpty ? nil : lp.blobs
    }

    func weightFile() -> String? { weightsFile ?? definitionFile }

    /// The layer's blobs, checked against their expected shapes (each an array of
    /// dimensions; size-1 axes are ignored in the comparison). nil for a shape-only import.
    func weights(_ lp: Caffe_LayerParameter, expected: [(what: String, dims: [Int])],
                 placeholderTotal: inout Int) throws -> [[Float]]? {
        let name = lp.name
        guard let raw = try blobs(for: lp) else {
            if shapeOnly {
                let limitText = placeholderLimit.nonzeroBitCount == 1 ? "2^\(placeholderLimit.trailingZeroBitCount)"
                    : "\(placeholderLimit)"
                var out: [[Float]] = []
                for e in expected {
                    var n = 1
                    for d in e.dims {
                        let (p, o) = n.multipliedReportingOverflow(by: d)
                        guard !o, d >= 0, p <= placeholderLimit else {
                            throw ModelError(file: definitionFile, layer: name,
                                "its \(e.what) would be \(e.dims.map(String.init).joined(separator: "×")): "
                                + "more than \(limitText) values")
                        }
                        n = p
                    }
                    placeholderTotal += n
                    guard placeholderTotal <= placeholderLimit else {
                        throw ModelError(file: definitionFile, layer: name,
                            "the net's weights would hold more than \(limitText) values in total")
                    }
                    out.append([Float](repeating: 0, count: n))
                }
                return out
            }
            let available = weightsByLayer.keys.sorted().joined(separator: ", ")
            throw ModelError(file: weightsFile ?? definitionFile, layer: name,
                "has no weights" + (weightsFile != nil ? " in the caffemodel (it holds weights for: \(available))" : "")
                + (weightsFile == nil ? "; give the caffemodel with --weights" : ""))
        }
        guard raw.count >= expected.count else {
            throw ModelError(file: weightFile(), layer: name,
                "has \(raw.count) weight blob(s); expected \(expected.count) (\(expected.map(\.what).joined(separator: ", ")))")
        }
        var out: [[Float]] = []
        for (i, e) in expected.enumerated() {
            let v = try BlobValues(raw[i], file: weightFile(), layer: name, index: i)
            let want = e.dims.filter { $0 != 1 }
            guard v.squeezed == want else {
                throw ModelError(file: weightFile(), layer: name,
                    "weight shape mismatch for its \(e.what): expected \(e.dims.map(String.init).joined(separator: "×")), "
                    + "found \(v.shapeText) in the caffemodel")
            }
            out.append(v.data)
        }
        return out
    }

    // MARK: - Layers

    static func pair(_ repeated: [UInt32], h: UInt32?, w: UInt32?, default d: Int, field: String,
                     file: String, layer: String) throws -> Size2 {
        if h != nil || w != nil {
            guard let h, let w else {
                throw ModelError(file: file, layer: layer, "\(field)_h and \(field)_w must be given together")
            }
            guard repeated.isEmpty else {
                throw ModelError(file: file, layer: layer, "give either \(field) or \(field)_h/\(field)_w, not both")
            }
            return Size2(Int(h), Int(w))
        }
        switch repeated.count {
        case 0: return Size2(square: d)
        case 1: return Size2(square: Int(repeated[0]))
        case 2: return Size2(Int(repeated[0]), Int(repeated[1]))
        default:
            throw ModelError(file: file, layer: layer, "\(field) has \(repeated.count) values; a 2-D layer takes 1 or 2")
        }
    }

    static let maxKernel = 1 << 16

    func convolution(_ lp: Caffe_LayerParameter, inputChannels: Int?, placeholderTotal: inout Int) throws -> Convolution {
        let p = lp.convolutionParam
        let file = definitionFile, name = lp.name
        func fail(_ m: String) -> ModelError { ModelError(file: file, layer: name, m) }
        guard lp.hasConvolutionParam, p.numOutput > 0 else { throw fail("convolution_param.num_output is missing or 0") }
        let kernel = try Self.pair(p.kernelSize, h: p.hasKernelH ? p.kernelH : nil, w: p.hasKernelW ? p.kernelW : nil,
                                   default: 0, field: "kernel", file: file, layer: name)
        guard kernel.h > 0, kernel.w > 0 else { throw fail("convolution_param has no kernel_size (or kernel_h/kernel_w)") }
        let stride = try Self.pair(p.stride, h: p.hasStrideH ? p.strideH : nil, w: p.hasStrideW ? p.strideW : nil,
                                   default: 1, field: "stride", file: file, layer: name)
        let pad = try Self.pair(p.pad, h: p.hasPadH ? p.padH : nil, w: p.hasPadW ? p.padW : nil,
                                default: 0, field: "pad", file: file, layer: name)
        let dilation = try Self.pair(p.dilation, h: nil, w: nil, default: 1, field: "dilation", file: file, layer: name)
        for (v, f) in [(kernel, "kernel"), (stride, "stride"), (pad, "pad"), (dilation, "dilation")]
            where v.h > Self.maxKernel || v.w > Self.maxKernel {
            throw fail("\(f) \(v) is absurdly large")
        }
        guard stride.h > 0, stride.w > 0, dilation.h > 0, dilation.w > 0 else { throw fail("stride and dilation must be at least 1") }
        guard p.axis == 1 else { throw fail("convolution_param.axis is \(p.axis); only 1 is supported") }
        let group = Int(p.group)
        let outputs = Int(p.numOutput)
        guard group >= 1, outputs % group == 0 else { throw fail("num_output \(outputs) is not a multiple of group \(group)") }
        if let c = inputChannels, c % group != 0 {
            throw fail("its input has \(c) channels, not a multiple of group \(group)")
        }
        let perGroup: Int
        if let c = inputChannels {
            perGroup = c / group
        } else if let raw = try blobs(for: lp)?.first, let v = try? BlobValues(raw, file: nil, layer: name, index: 0),
                  v.dims.count == 4 {
            perGroup = v.dims[1]
        } else {
            throw fail("the number of its input channels is unknown")
        }
        guard perGroup >= 1 else {
            throw fail(inputChannels.map { "its input has \($0) channels, \(perGroup) per group" }
                ?? "its weights blob gives 0 input channels" + ": a convolution needs at least one")
        }
        var expected = [(what: "weights", dims: [outputs, perGroup, kernel.h, kernel.w])]
        if p.biasTerm { expected.append((what: "bias", dims: [outputs])) }
        guard let w = try weights(lp, expected: expected, placeholderTotal: &placeholderTotal) else { throw fail("no weights") }
        return Convolution(outputs: outputs, kernel: kernel, stride: stride, pad: pad, dilation: dilation, group: group,
                           weights: w[0], bias: p.biasTerm ? w[1] : nil)
    }

    func pooling(_ lp: Caffe_LayerParameter) throws -> Pooling {
        let p = lp.poolingParam
        let file = definitionFile, name = lp.name
        func fail(_ m: String) -> ModelError { ModelError(file: file, layer: name, m) }
        let method: Pooling.Method
        switch p.pool {
        case .max: method = .max
        case .ave: method = .average
        default: throw fail("pooling method \(p.pool) is not supported (MAX and AVE are)")
        }
        func hw(_ single: UInt32?, _ h: UInt32?, _ w: UInt32?, _ d: Int, _ f: String) throws -> Size2 {
            if h != nil || w != nil {
                guard let h, let w else { throw fail("\(f)_h and \(f)_w must be given together") }
                return Size2(Int(h), Int(w))
            }
            return Size2(square: single.map(Int.init) ?? d)
        }
        let pad = try hw(p.hasPad ? p.pad : nil, p.hasPadH ? p.padH : nil, p.hasPadW ? p.padW : nil, 0, "pad")
        let stride = try hw(p.hasStride ? p.stride : nil, p.hasStrideH ? p.strideH : nil, p.hasStrideW ? p.strideW : nil, 1, "stride")
        if p.globalPooling {
            return Pooling(method: method, kernel: .one, stride: .one, pad: .zero, global: true)
        }
        let kernel = try hw(p.hasKernelSize ? p.kernelSize : nil, p.hasKernelH ? p.kernelH : nil,
                            p.hasKernelW ? p.kernelW : nil, 0, "kernel")
        guard kernel.h > 0, kernel.w > 0 else { throw fail("pooling_param has no kernel_size (or kernel_h/kernel_w)") }
        guard stride.h > 0, stride.w > 0 else { throw fail("pooling stride must be at least 1") }
        for v in [kernel, stride, pad] where v.h > Self.maxKernel || v.w > Self.maxKernel {
            throw fail("pooling size \(v) is absurdly large")
        }
        guard pad.h < kernel.h, pad.w < kernel.w else { throw fail("pad \(pad) must be smaller than the kernel \(kernel)") }
        return Pooling(method: method, kernel: kernel, stride: stride, pad: pad)
    }

    mutating func innerProduct(_ lp: Caffe_LayerParameter, input: Shape?, placeholderTotal: inout Int) throws -> InnerProduct {
        let p = lp.innerProductParam
        let file = definitionFile, name = lp.name
        func fail(_ m: String) -> ModelError { ModelError(file: file, layer: name, m) }
        guard p.numOutput > 0 else { throw fail("inner_product_param.num_output is missing or 0") }
        guard p.axis == 1 else { throw fail("inner_product_param.axis is \(p.axis); only 1 is supported") }
        let outputs = Int(p.numOutput)
        let inputs: Int
        if let input {
            inputs = input.count
        } else if let raw = try blobs(for: lp)?.first, let v = try? BlobValues(raw, file: nil, layer: name, index: 0),
                  let last = v.squeezed.last {
            inputs = p.transpose ? (v.squeezed.first ?? last) : (v.count / max(1, outputs))
        } else {
            throw fail("its input size is unknown: give the patch size")
        }
        let wDims = p.transpose ? [inputs, outputs] : [outputs, inputs]
        var expected = [(what: "weights", dims: wDims)]
        if p.biasTerm { expected.append((what: "bias", dims: [outputs])) }
        guard var w = try weights(lp, expected: expected, placeholderTotal: &placeholderTotal) else { throw fail("no weights") }
        if p.transpose {
            // Stored [inputs, outputs]; Tessera keeps [outputs, inputs].
            var t = [Float](repeating: 0, count: w[0].count)
            for i in 0..<inputs { for o in 0..<outputs { t[o * inputs + i] = w[0][i * outputs + o] } }
            w[0] = t
            notes.append("layer '\(name)': InnerProduct weights stored transposed; transposed back")
        }
        return InnerProduct(outputs: outputs, weights: w[0], bias: p.biasTerm ? w[1] : nil)
    }

    func scale(_ lp: Caffe_LayerParameter, channels: Int?) throws -> Scale {
        let p = lp.scaleParam
        func fail(_ m: String) -> ModelError { ModelError(file: definitionFile, layer: lp.name, m) }
        guard p.axis == 1, p.numAxes == 1 else {
            throw fail("scale_param axis \(p.axis), num_axes \(p.numAxes): only per-channel scaling (axis 1, num_axes 1) is supported")
        }
        guard let c = channels else { throw fail("the number of its input channels is unknown") }
        var expected = [(what: "scale", dims: [c])]
        if p.biasTerm { expected.append((what: "bias", dims: [c])) }
        var total = 0
        guard let w = try weights(lp, expected: expected, placeholderTotal: &total) else { throw fail("no weights") }
        return Scale(scale: w[0], bias: p.biasTerm ? w[1] : nil)
    }

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
    mutating func batchNorm(_ lp: Caffe_LayerParameter, channels: Int?, placeholderTotal: inout Int) throws -> BatchNorm {
        let name = lp.name
        func fail(_ m: String) -> ModelError { ModelError(file: weightFile(), layer: name, m) }
        guard let c = channels else { throw fail("the number of its input channels is unknown") }
        let p = lp.batchNormParam
        if p.hasUseGlobalStats, !p.useGlobalStats {
            notes.append("layer '\(name)': use_global_stats is false in the file; inference uses the saved statistics, as Caffe's TEST phase")
        }
        let raw = try blobs(for: lp)
        let count = raw?.count ?? 3
        switch count {
        case 3:
            guard let w = try weights(lp, expected: [("mean", [c]), ("variance", [c]), ("moving-average factor", [1])],
                                      placeholderTotal: &placeholderTotal) else { throw fail("no weights") }
            let f = w[2].first ?? 1
            let s: Float = f == 0 ? 0 : 1 / f
            if raw != nil, f == 0 {
                notes.append("layer '\(name)': moving-average factor is 0, so its statistics are 0 (as in BVLC Caffe)")
            }
            return BatchNorm(mean: w[0].map { $0 * s }, variance: w[1].map { $0 * s }, eps: p.eps)
        case 5:
            let all = try weights(lp, expected: [("blob 0", [c]), ("blob 1", [c]), ("blob 2 (1 value)", [1]),
                                                 ("blob 3", [c]), ("blob 4", [c])], placeholderTotal: &placeholderTotal)!
            let marker = all[2][0]
            let v014 = all[4].allSatisfy { $0 >= 0 }
            let v016 = all[1].allSatisfy { $0 >= 0 }
            let use014: Bool
            if v014 && !v016 { use014 = true }
            else if v016 && !v014 { use014 = false }
            else if v014 && v016 { use014 = marker != 1 }
            else { throw fail("5 BatchNorm blobs but neither blob 1 nor blob 4 is a variance (both have negative values)") }
            if use014 {
                notes.append("layer '\(name)': NVIDIA Caffe 0.14 BatchNorm blobs (scale, bias, unused, mean, variance; eps 1e-4)")
                return BatchNorm(mean: all[3], variance: all[4], eps: 1e-4, scale: all[0], bias: all[1])
            }
            notes.append("layer '\(name)': NVIDIA Caffe 0.16+ BatchNorm blobs (mean, variance, unused, scale, bias)")
            return BatchNorm(mean: all[0], variance: all[1], eps: max(p.eps, 1e-5), scale: all[3], bias: all[4])
        default:
            throw fail("has \(count) BatchNorm blobs; expected 3 (BVLC: mean, variance, factor) or 5 (NVIDIA Caffe)")
        }
    }
}
