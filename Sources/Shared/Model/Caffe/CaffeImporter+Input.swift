import TesseraCore

/// Where the net's input comes from and what shape it has: the net's `input` fields,
/// an Input layer, or a training net's data layer (whose crop size gives the patch size).
extension CaffeImporter {
    /// Input from the net's own fields: `input` with `input_shape` or `input_dim`.
    func readNetInput(_ def: Caffe_NetParameter, into progress: inout Progress) throws {
        let file = definitionFile
        guard let first = def.input.first else { return }
        progress.inputName = first
        if def.input.count > 1 {
            throw ModelError(
                file: file,
                "the net declares \(def.input.count) inputs (\(def.input.joined(separator: ", "))); "
                    + "a patch classifier has one")
        }
        if let shape = def.inputShape.first {
            progress.inputDims = shape.dim.map { Int(clamping: $0) }
        } else if def.inputDim.count >= 4 {
            progress.inputDims = def.inputDim.prefix(4).map { Int($0) }
        } else if !def.inputDim.isEmpty {
            throw ModelError(
                file: file, "input_dim has \(def.inputDim.count) values, expected 4 (num, channels, height, width)")
        }
    }

    /// A data or Input layer: the crop size, the mean file, the input shape and name; the first layer read gives
    /// each (`importNet` reads only the TEST phase's when it has any). A second input is an error only when it is
    /// part of the TEST phase.
    func readInputLayer(_ lp: Caffe_LayerParameter, into progress: inout Progress) throws {
        let type = lp.type
        if lp.hasTransformParam, lp.transformParam.cropSize > 0, progress.cropSize == nil {
            progress.cropSize = Int(lp.transformParam.cropSize)
        }
        if lp.hasDataParam, lp.dataParam.cropSize > 0, progress.cropSize == nil {
            progress.cropSize = Int(lp.dataParam.cropSize)
        }
        if lp.hasImageDataParam, lp.imageDataParam.cropSize > 0, progress.cropSize == nil {
            progress.cropSize = Int(lp.imageDataParam.cropSize)
        }
        if lp.hasTransformParam, lp.transformParam.hasMeanFile, progress.meanFileHint == nil {
            progress.meanFileHint = lp.transformParam.meanFile
        }
        // The preprocessing Caffe applied to the patches (a user audit: it was ignored, and the map was off by 0.6).
        if lp.hasTransformParam, progress.declaredMean.isEmpty, progress.declaredScale == nil {
            progress.declaredMean = lp.transformParam.meanValue
            if lp.transformParam.hasScale { progress.declaredScale = lp.transformParam.scale }
        }
        // Old files keep scale and mean_file in data_param or image_data_param (Caffe's upgrade moves them into
        // transform_param; a Caffe fuzz audit found the scale ignored, the map 0.74 off).
        if progress.declaredScale == nil {
            if lp.hasDataParam, lp.dataParam.hasScale {
                progress.declaredScale = lp.dataParam.scale
            } else if lp.hasImageDataParam, lp.imageDataParam.hasScale {
                progress.declaredScale = lp.imageDataParam.scale
            }
        }
        if progress.meanFileHint == nil {
            if lp.hasDataParam, lp.dataParam.hasMeanFile {
                progress.meanFileHint = lp.dataParam.meanFile
            } else if lp.hasImageDataParam, lp.imageDataParam.hasMeanFile {
                progress.meanFileHint = lp.imageDataParam.meanFile
            }
        }
        if type == "MemoryData", lp.hasMemoryDataParam, progress.inputDims == nil {
            let m = lp.memoryDataParam
            progress.inputDims = [Int(m.batchSize), Int(m.channels), Int(m.height), Int(m.width)]
        }
        if type == "Input" {
            if let s = lp.inputParam.shape.first { progress.inputDims = s.dim.map { Int(clamping: $0) } }
        }
        guard let top = lp.top.first else { throw layerError(lp, "the \(type) layer has no top") }
        if let existing = progress.inputName, existing != top {
            if Self.includedInTest(lp) {
                throw layerError(
                    lp, "a second input '\(top)' (the first is '\(existing)'): a patch classifier has one input")
            }
        } else {
            progress.inputName = top
        }
        progress.labelBlobs.formUnion(lp.top.dropFirst())
    }

    /// Until the input has a shape: its channels (declared, else guessed from the
    /// mean values or the weights of the layers from `rest.first`, the next layer that computes) and, once a
    /// patch size is known (given, crop size, declared), its shape.
    func settleInputShape(before rest: ArraySlice<Caffe_LayerParameter>, _ progress: inout Progress) throws {
        guard progress.shapes.isEmpty, let input = progress.inputName else { return }
        let declared = try Self.spatial(progress.inputDims, file: definitionFile)
        if progress.patch == nil, let c = progress.cropSize { progress.patch = Size2(square: c) }
        if let dims = progress.inputDims, dims.count >= 2 { progress.channels[input] = dims[1] }
        if progress.channels[input] == nil, progress.declaredMean.count > 1 {
            progress.channels[input] = progress.declaredMean.count  // one mean_value per channel
        }
        let inC = try progress.channels[input] ?? guessChannels(rest)
        if let inC { progress.channels[input] = inC }
        if let p = progress.patch ?? declared, let c = progress.channels[input] {
            progress.shapes[input] = Shape(c: c, h: p.h, w: p.w)
        }
    }

    /// Height and width of a declared (num, channels, height, width) input shape.
    static func spatial(_ dims: [Int]?, file: String) throws -> Size2? {
        guard let dims else { return nil }
        guard dims.count == 4 else {
            throw ModelError(
                file: file,
                "the input shape has \(dims.count) dimensions (\(dims.map(String.init).joined(separator: "×"))); "
                    + "expected 4: num, channels, height, width")
        }
        for d in dims where d <= 0 || d > 1 << 20 {
            throw ModelError(
                file: file,
                "the input shape \(dims.map(String.init).joined(separator: "×")) has a dimension "
                    + "that is not between 1 and 2^20")
        }
        return Size2(dims[2], dims[3])
    }

    /// Channels of the input from the weights of the first layer that has some, past layers that keep the channels
    /// (a training net whose data layer does not say; a Caffe fuzz audit found nets starting with a ReLU or a
    /// BatchNorm refused).
    func guessChannels(_ layers: ArraySlice<Caffe_LayerParameter>) throws -> Int? {
        let keeping: Set<String> = [
            "ReLU", "Sigmoid", "TanH", "ELU", "BNLL", "AbsVal", "Power", "Clip", "ReLU6", "Dropout", "Split", "LRN",
            "Pooling",
        ]
        for lp in layers where Self.includedInTest(lp) && !Self.dataTypes.contains(lp.type) {
            if Self.dropTypes.contains(lp.type) { continue }
            switch lp.type {
            case "Convolution":
                return Self.guessChannels(lp, weights: try blobs(for: lp))
            case "BatchNorm", "Scale", "PReLU":
                // One value per channel (one channel: one value); a PReLU's single slope may be shared by all
                // channels: the layers after it tell.
                guard let w = try blobs(for: lp)?.first,
                    let v = try? BlobValues(w, file: nil, layer: lp.name, index: 0), v.count >= 1
                else { return nil }
                if lp.type == "PReLU" && v.count == 1 { continue }
                return v.count
            default:
                guard keeping.contains(lp.type) else { return nil }
            }
        }
        return nil
    }

    /// Channels of the input from a Convolution's weights.
    static func guessChannels(_ lp: Caffe_LayerParameter, weights: [Caffe_BlobProto]?) -> Int? {
        guard lp.type == "Convolution", let w = weights?.first,
            let v = try? BlobValues(w, file: nil, layer: lp.name, index: 0)
        else { return nil }
        guard v.dims.count == 4, v.dims[1] > 0 else { return nil }
        let group = Int(max(1, lp.convolutionParam.group))
        let (c, overflow) = v.dims[1].multipliedReportingOverflow(by: group)
        return overflow ? nil : c
    }
}
