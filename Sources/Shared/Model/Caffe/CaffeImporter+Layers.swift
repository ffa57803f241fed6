import TesseraCore

/// One Tessera layer value from each Caffe layer parameter that has settings or
/// weights, with Caffe's defaults and every value checked.
extension CaffeImporter {
    static func pair(
        _ repeated: [UInt32], h: UInt32?, w: UInt32?, default d: Int, field: String,
        file: String, layer: String
    ) throws -> Size2 {
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
            throw ModelError(
                file: file, layer: layer, "\(field) has \(repeated.count) values; a 2-D layer takes 1 or 2")
        }
    }

    static let maxKernel = 1 << 16

    func convolution(_ lp: Caffe_LayerParameter, inputChannels: Int?, placeholderTotal: inout Int) throws -> Convolution
    {
        let p = lp.convolutionParam
        let file = definitionFile, name = lp.name
        func fail(_ m: String) -> ModelError { ModelError(file: file, layer: name, m) }
        guard lp.hasConvolutionParam, p.numOutput > 0 else {
            throw fail("convolution_param.num_output is missing or 0")
        }
        let kernel = try Self.pair(
            p.kernelSize, h: p.hasKernelH ? p.kernelH : nil, w: p.hasKernelW ? p.kernelW : nil,
            default: 0, field: "kernel", file: file, layer: name)
        guard kernel.h > 0, kernel.w > 0 else {
            throw fail("convolution_param has no kernel_size (or kernel_h/kernel_w)")
        }
        let stride = try Self.pair(
            p.stride, h: p.hasStrideH ? p.strideH : nil, w: p.hasStrideW ? p.strideW : nil,
            default: 1, field: "stride", file: file, layer: name)
        let pad = try Self.pair(
            p.pad, h: p.hasPadH ? p.padH : nil, w: p.hasPadW ? p.padW : nil,
            default: 0, field: "pad", file: file, layer: name)
        let dilation = try Self.pair(p.dilation, h: nil, w: nil, default: 1, field: "dilation", file: file, layer: name)
        for (v, f) in [(kernel, "kernel"), (stride, "stride"), (pad, "pad"), (dilation, "dilation")]
        where v.h > Self.maxKernel || v.w > Self.maxKernel {
            throw fail("\(f) \(v) is absurdly large")
        }
        guard stride.h > 0, stride.w > 0, dilation.h > 0, dilation.w > 0 else {
            throw fail("stride and dilation must be at least 1")
        }
        guard p.axis == 1 || p.axis == -3 else {
            throw fail("convolution_param.axis is \(p.axis); only the channel axis (1, or -3) is supported")
        }
        let group = Int(p.group)
        let outputs = Int(p.numOutput)
        guard group >= 1, outputs % group == 0 else {
            throw fail("num_output \(outputs) is not a multiple of group \(group)")
        }
        if let c = inputChannels, c % group != 0 {
            throw fail("its input has \(c) channels, not a multiple of group \(group)")
        }
        let perGroup: Int
        if let c = inputChannels {
            perGroup = c / group
        } else if let raw = try blobs(for: lp)?.first, let v = try? BlobValues(raw, file: nil, layer: name, index: 0),
            v.dims.count == 4
        {
            perGroup = v.dims[1]
        } else {
            throw fail(Self.unknownChannels)
        }
        guard perGroup >= 1 else {
            throw fail(
                inputChannels.map { "its input has \($0) channels, \(perGroup) per group" }
                    ?? "its weights blob gives 0 input channels" + ": a convolution needs at least one")
        }
        var expected = [(what: "weights", dims: [outputs, perGroup, kernel.h, kernel.w])]
        if p.biasTerm { expected.append((what: "bias", dims: [outputs])) }
        guard let w = try weights(lp, expected: expected, placeholderTotal: &placeholderTotal) else {
            throw fail("no weights")
        }
        return Convolution(
            outputs: outputs, kernel: kernel, stride: stride, pad: pad, dilation: dilation, group: group,
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
        let stride = try hw(
            p.hasStride ? p.stride : nil, p.hasStrideH ? p.strideH : nil, p.hasStrideW ? p.strideW : nil, 1, "stride")
        if p.globalPooling {
            return Pooling(method: method, kernel: .one, stride: .one, pad: .zero, global: true)
        }
        let kernel = try hw(
            p.hasKernelSize ? p.kernelSize : nil, p.hasKernelH ? p.kernelH : nil,
            p.hasKernelW ? p.kernelW : nil, 0, "kernel")
        guard kernel.h > 0, kernel.w > 0 else { throw fail("pooling_param has no kernel_size (or kernel_h/kernel_w)") }
        guard stride.h > 0, stride.w > 0 else { throw fail("pooling stride must be at least 1") }
        for v in [kernel, stride, pad] where v.h > Self.maxKernel || v.w > Self.maxKernel {
            throw fail("pooling size \(v) is absurdly large")
        }
        guard pad.h < kernel.h, pad.w < kernel.w else {
            throw fail("pad \(pad) must be smaller than the kernel \(kernel)")
        }
        return Pooling(method: method, kernel: kernel, stride: stride, pad: pad, roundsUp: p.roundMode == .ceil)
    }

    mutating func innerProduct(
        _ lp: Caffe_LayerParameter, input: Shape?, placeholderTotal: inout Int
    ) throws -> InnerProduct {
        let p = lp.innerProductParam
        let file = definitionFile, name = lp.name
        func fail(_ m: String) -> ModelError { ModelError(file: file, layer: name, m) }
        guard p.numOutput > 0 else { throw fail("inner_product_param.num_output is missing or 0") }
        guard p.axis == 1 || p.axis == -3 else {
            throw fail("inner_product_param.axis is \(p.axis); only the channel axis (1, or -3) is supported")
        }
        let outputs = Int(p.numOutput)
        let inputs: Int
        if let input {
            inputs = input.count
        } else if let raw = try blobs(for: lp)?.first, let v = try? BlobValues(raw, file: nil, layer: name, index: 0),
            let last = v.squeezed.last
        {
            inputs = p.transpose ? (v.squeezed.first ?? last) : (v.count / max(1, outputs))
        } else {
            throw fail("its input size is unknown: give the patch size")
        }
        let wDims = p.transpose ? [inputs, outputs] : [outputs, inputs]
        var expected = [(what: "weights", dims: wDims)]
        if p.biasTerm { expected.append((what: "bias", dims: [outputs])) }
        guard var w = try weights(lp, expected: expected, placeholderTotal: &placeholderTotal) else {
            throw fail("no weights")
        }
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
        guard p.axis == 1 || p.axis == -3, p.numAxes == 1 else {
            throw fail(
                "scale_param axis \(p.axis), num_axes \(p.numAxes): only per-channel scaling (axis 1, num_axes 1) is supported"
            )
        }
        guard let c = channels else { throw fail(Self.unknownChannels) }
        var expected = [(what: "scale", dims: [c])]
        if p.biasTerm { expected.append((what: "bias", dims: [c])) }
        var total = 0
        guard let w = try weights(lp, expected: expected, placeholderTotal: &total) else { throw fail("no weights") }
        return Scale(scale: w[0], bias: p.biasTerm ? w[1] : nil)
    }

    /// Caffe's Power layer, y = (shift + scale·x)^power, of power 1: a per-channel Scale with the same
    /// factor and bias for every channel.
    func power(_ lp: Caffe_LayerParameter, channels: Int?) throws -> Scale {
        let p = lp.powerParam
        guard p.power == 1 else {
            throw layerError(
                lp, "power_param.power is \(p.power): only power 1 (y = shift + scale·x) is supported")
        }
        guard let c = channels else { throw layerError(lp, Self.unknownChannels) }
        return Scale(
            scale: [Float](repeating: p.scale, count: c),
            bias: p.shift == 0 ? nil : [Float](repeating: p.shift, count: c))
    }

    /// A Flatten or Reshape that flattens from the channel axis on: flatten_param axis 1 (or −3) to the
    /// end, or a reshape_param shape { dim: 0 or 1, dim: −1 or C·H·W } (trailing 1s allowed) over all axes.
    func checkFlattening(_ lp: Caffe_LayerParameter, inputShape: Shape?) throws {
        if lp.type == "Flatten" {
            let p = lp.flattenParam
            guard p.axis == 1 || p.axis == -3, p.endAxis == -1 || p.endAxis == 3 else {
                throw layerError(
                    lp,
                    "flatten_param axis \(p.axis), end_axis \(p.endAxis): only flattening from the channel axis "
                        + "to the end (axis 1, end_axis -1) is supported")
            }
            return
        }
        let p = lp.reshapeParam
        let dims = p.shape.dim
        let total = inputShape.map { Int64($0.c * $0.h * $0.w) }
        let flattens =
            p.axis == 0 && p.numAxes == -1 && dims.count >= 2 && (dims[0] == 0 || dims[0] == 1)
            && (dims[1] == -1 || (total != nil && dims[1] == total)) && dims.dropFirst(2).allSatisfy { $0 == 1 }
        guard flattens else {
            let shape = dims.map(String.init).joined(separator: ", ")
            throw layerError(
                lp,
                "reshape_param shape [\(shape)] (axis \(p.axis), num_axes \(p.numAxes)): only a Reshape that "
                    + "flattens each image before an InnerProduct (shape { dim: 0 dim: -1 }) is supported")
        }
    }

    func lrn(_ lp: Caffe_LayerParameter) throws -> LRN {
        let p = lp.lrnParam
        guard p.localSize % 2 == 1 else {
            throw layerError(lp, "lrn_param.local_size is \(p.localSize); Caffe requires an odd size")
        }
        return LRN(
            region: p.normRegion == .withinChannel ? .withinChannel : .acrossChannels,
            size: Int(p.localSize), alpha: p.alpha, beta: p.beta, k: p.k)
    }

    func eltwise(_ lp: Caffe_LayerParameter) throws -> Eltwise {
        let p = lp.eltwiseParam
        guard p.coeff.isEmpty || p.coeff.count == lp.bottom.count else {
            throw layerError(lp, "eltwise_param has \(p.coeff.count) coeff values for \(lp.bottom.count) inputs")
        }
        let operation: Eltwise.Operation
        switch p.operation {
        case .prod: operation = .product
        case .max: operation = .max
        default: operation = .sum
        }
        // Caffe (and OpenCV) refuse coefficients for PROD and MAX; ignoring them computed another net.
        guard operation == .sum || p.coeff.isEmpty else {
            throw layerError(
                lp,
                "eltwise_param has coeff values for a \(operation == .max ? "MAX" : "PROD") operation: Caffe "
                    + "takes coefficients only for SUM")
        }
        return Eltwise(operation: operation, coefficients: p.coeff)
    }
}
