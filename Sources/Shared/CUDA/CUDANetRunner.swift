import Foundation
import TesseraCore
import TesseraEngine
import TesseraModel

/// Runs a `Net` forward on a CUDA device: the GPU counterpart of `NetRunner`,
/// with the same contract (same net, same input tensor, output on the host).
/// Weights are uploaded once; activations stay on the device between layers;
/// only the input and the output cross the bus, through pinned buffers.
/// Convolutions run on cuDNN (or im2col + cuBLAS), everything else on the
/// backend's own kernels (`CUDAKernelSource`).
///
/// Not bit-identical to the CPU engine (different summation order; ≤ 1e-4 on
/// probabilities, checked by `tessera-coordinator gpu-check`), and the same tile
/// gives the same bytes on the same kind of device: algorithms are chosen by
/// cuDNN's heuristics, which depend only on the device and the shapes.
package final class CUDANetRunner: NetExecutor, @unchecked Sendable {
    package let net: Net
    package let context: CUDAContext
    package let precision: CUDAPrecision
    private var steps: [Step] = []
    private let releases: [[String]]
    /// Which layers pad, and with what (`PassLayout`).
    private let layout: PassLayout
    /// cuDNN plans per (layer, input shape), made on first use.
    var plans: [PlanKey: ConvolutionPlan] = [:]
    var workspace: DevicePointer = 0
    var workspaceBytes = 0
    let profile = ProcessInfo.processInfo.environment["TESSERA_CUDA_PROFILE"] == "1"
    let findAlgorithms = ProcessInfo.processInfo.environment["TESSERA_CUDNN_ALGO"] == "find"
    /// im2col path: floats in one column buffer (256 MiB).
    static let columnBudget = 64 << 20
    /// cuDNN workspace limit per convolution.
    static let workspaceLimit = 2 << 30

    /// `fragments`: the undilated convolution of a dilated one's `batch` fragments
    /// (`FragmentGeometry`); else `batch` images (`naive`'s patches) or one.
    struct PlanKey: Hashable { let layer: Int; let input: Shape; let batch: Int; let fragments: Bool }
    /// Descriptors and the algorithms cuDNN ranks first for one input shape, best first
    /// (the next is tried when one reports NOT_SUPPORTED at run time).
    struct ConvolutionPlan {
        let x: CUHandle; let y: CUHandle; var candidates: [(algorithm: Int32, workspace: Int)]
    }

    final class ConvolutionStep {
        let conv: Convolution
        let weights: DeviceTensor
        let bias: DeviceTensor?
        let reluSlope: Float?
        var filter: CUHandle = nil
        var descriptor: CUHandle = nil
        /// The same convolution undilated and unpadded, for its fragments (nil: not used).
        var fragmentDescriptor: CUHandle = nil
        init(conv: Convolution, weights: DeviceTensor, bias: DeviceTensor?, reluSlope: Float?) {
            self.conv = conv
            self.weights = weights
            self.bias = bias
            self.reluSlope = reluSlope
        }
    }

    private enum Step {
        case convolution(ConvolutionStep)
        case pooling(Pooling)
        case innerProduct(InnerProduct, weights: DeviceTensor, bias: DeviceTensor?)
        case activation(kind: Int, slope: Float)
        case lrn(LRN, dilation: Size2)
        case affine(a: DeviceTensor, b: DeviceTensor)
        case identity, softmax, concat
        case eltwise(Eltwise)
    }

    /// - Parameter lrnDilation: per-layer dilation for WITHIN_CHANNEL LRN (dense mode).
    package init(net: Net, lrnDilation: [Size2]? = nil, context: CUDAContext, precision: CUDAPrecision = .fp32) throws {
        self.net = net
        self.context = context
        self.precision = precision
        releases = NetRunner.releaseSchedule(net)
        layout = PassLayout(net, lrnDilation: lrnDilation)
        try context.exclusive {
            for (i, layer) in net.layers.enumerated() {
                steps.append(try makeStep(layer, index: i, lrnDilation: lrnDilation?[i] ?? .one))
            }
            try context.synchronize()
        }
    }

    /// Gives back what the runner holds beyond its tensors: the cuDNN workspace (to the
    /// context's pool, for the next runner) and the descriptors (host objects; no pass can
    /// be running on a runner that is going away).
    deinit {
        if workspaceBytes > 0 { context.pool.release(workspace, bytes: workspaceBytes) }
        guard let dnn = context.cudnn else { return }
        for p in plans.values {
            _ = dnn.cudnnDestroyTensorDescriptor(p.x)
            _ = dnn.cudnnDestroyTensorDescriptor(p.y)
        }
        for case .convolution(let c) in steps {
            if c.filter != nil { _ = dnn.cudnnDestroyFilterDescriptor(c.filter) }
            for d in [c.descriptor, c.fragmentDescriptor] where d != nil {
                _ = dnn.cudnnDestroyConvolutionDescriptor(d)
            }
        }
    }

    private func convolutionDescriptor(
        _ dnn: CuDNN, _ c: Convolution, pad: Size2, dilation: Size2, layer name: String
    ) throws -> CUHandle {
        var d: CUHandle = nil
        try dnn.check(dnn.cudnnCreateConvolutionDescriptor(&d), "cudnnCreateConvolutionDescriptor")
        try dnn.check(
            dnn.cudnnSetConvolution2dDescriptor(
                d, Int32(pad.h), Int32(pad.w), Int32(c.stride.h), Int32(c.stride.w), Int32(dilation.h),
                Int32(dilation.w), CuDNN.crossCorrelation, CuDNN.float32),
            "layer \(name): cudnnSetConvolution2dDescriptor")
        try dnn.check(
            dnn.cudnnSetConvolutionGroupCount(d, Int32(c.group)), "layer \(name): cudnnSetConvolutionGroupCount")
        try dnn.check(
            dnn.cudnnSetConvolutionMathType(d, precision == .fp32 ? CuDNN.fmaMath : CuDNN.defaultMath),
            "layer \(name): cudnnSetConvolutionMathType")
        return d
    }

    private func array(_ values: [Float]) throws -> DeviceTensor {
        let t = try DeviceTensor(Shape(c: 1, h: 1, w: max(1, values.count)), pool: context.pool)
        if !values.isEmpty {
            try values.withUnsafeBufferPointer {
                try context.upload($0.baseAddress!, count: values.count, to: t.pointer)
            }
        }
        return t
    }

    private func makeStep(_ layer: Layer, index i: Int, lrnDilation: Size2) throws -> Step {
        switch layer.op {
        case .convolution(let c):
            let step = ConvolutionStep(
                conv: c, weights: try array(c.weights), bias: try c.bias.map(array),
                reluSlope: NetRunner.fusedReLU(after: i, in: net))
            if let dnn = context.cudnn {
                try dnn.check(dnn.cudnnCreateFilterDescriptor(&step.filter), "cudnnCreateFilterDescriptor")
                try dnn.check(
                    dnn.cudnnSetFilter4dDescriptor(
                        step.filter, CuDNN.float32, CuDNN.formatNCHW,
                        Int32(c.outputs), Int32(c.inputsPerGroup), Int32(c.kernel.h), Int32(c.kernel.w)),
                    "layer \(layer.name): cudnnSetFilter4dDescriptor")
                step.descriptor = try convolutionDescriptor(
                    dnn, c, pad: c.pad, dilation: c.dilation, layer: layer.name)
                if FragmentGeometry.enabled, c.stride == .one, c.dilation != .one {
                    step.fragmentDescriptor = try convolutionDescriptor(
                        dnn, c, pad: .zero, dilation: .one, layer: layer.name)
                }
            }
            return .convolution(step)
        case .pooling(let p): return .pooling(p)
        case .innerProduct(let ip):
            return .innerProduct(ip, weights: try array(ip.weights), bias: try ip.bias.map(array))
        case .relu(let slope):
            if i > 0, NetRunner.fusedReLU(after: i - 1, in: net) != nil, case .convolution = net.layers[i - 1].op {
                return .identity
            }
            return .activation(kind: 0, slope: slope)
        case .sigmoid: return .activation(kind: 1, slope: 0)
        case .tanh: return .activation(kind: 2, slope: 0)
        case .elu(let alpha): return .activation(kind: 3, slope: alpha)
        case .softplus: return .activation(kind: 4, slope: 0)
        case .lrn(let l): return .lrn(l, dilation: lrnDilation)
        case .batchNorm(let bn):
            let (a, b) = PointwiseKernels.batchNormCoefficients(bn)
            return .affine(a: try array(a), b: try array(b))
        case .scale(let s):
            return .affine(a: try array(s.scale), b: try array(s.bias ?? [Float](repeating: 0, count: s.scale.count)))
        case .identity: return .identity
        case .softmax: return .softmax
        case .concat: return .concat
        case .eltwise(let e): return .eltwise(e)
        }
    }

    package func forward(
        _ input: Tensor, threads: Int, origin: Size2 = .zero, masks: [PixelRect?]? = nil
    )
        throws -> Tensor
    {
        let (_, shapes) = try net.shapes(input: input.shape.spatial)
        guard input.c == net.inputChannels else {
            throw ModelError("the input has \(input.c) channels but the net expects \(net.inputChannels)")
        }
        for (i, s) in shapes.enumerated() where s.count >= Int(Int32.max) {
            throw ModelError(
                "layer \(net.layers[i].name) would produce \(s) = \(s.count) values on the GPU, "
                    + "more than 2³¹: use smaller tiles (--tile)")
        }
        do {
            return try pass(input, shapes: shapes, masks: masks)
        } catch {
            throw context.explain(error, input: input.shape)
        }
    }

    private func pass(_ input: Tensor, shapes: [Shape], masks: [PixelRect?]?) throws -> Tensor {
        if TransferLane.enabled {
            return try context.withLane { lane in
                let x = try lane.upload(input)
                let out = try context.exclusive {
                    try lane.computeWaits()
                    let out = try layers(x, batch: 1, shapes: shapes, masks: masks, label: "\(input.shape)")
                    try lane.computeQueued()
                    return out
                }
                return try lane.download(out)
            }
        }
        return try context.exclusive {
            var clock = DispatchTime.now()
            func lap() throws -> Double {
                try context.synchronize()
                let now = DispatchTime.now()
                defer { clock = now }
                return Double(now.uptimeNanoseconds - clock.uptimeNanoseconds) / 1e6
            }
            let x = try DeviceTensor(input.shape, pool: context.pool)
            try context.upload(input.pointer, count: input.count, to: x.pointer)
            let up = profile ? try lap() : 0
            let out = try layers(x, batch: 1, shapes: shapes, masks: masks, label: "\(input.shape)")
            if profile { _ = try lap() }
            let result = Tensor(uninitialized: out.shape)
            try context.download(out.pointer, count: out.shape.count, into: result.pointer)
            if profile {
                let down = try lap()
                FileHandle.standardError.write(
                    Data(
                        String(
                            format: "cuda transfers (ms) %@: upload %.2f (%.0f MB), download %.2f (%.0f MB)\n",
                            "\(input.shape)", up, Double(input.count * 4) / 1e6, down,
                            Double(out.shape.count * 4) / 1e6
                        ).utf8))
            }
            return result
        }
    }

    /// The net on `x`, a batch of `batch` images one after another (each of the net's input
    /// shape; `shapes`: each layer's output for one image), on the device; the caller holds
    /// `context.exclusive`. `masks` (one image only): padding like the whole-image pass.
    func layers(
        _ x: DeviceTensor, batch: Int, shapes: [Shape], masks: [PixelRect?]? = nil, label: @autoclosure () -> String
    ) throws -> DeviceTensor {
        precondition(batch == 1 || masks == nil, "padding masks apply to one image")
        var blobs: [String: DeviceTensor] = [net.inputName: x]
        var times: [(String, Double)] = []
        var clock = DispatchTime.now()
        if profile { try context.synchronize(); clock = DispatchTime.now() }
        for (i, layer) in net.layers.enumerated() {
            var counted: PixelRect?
            if let rect = masks?[i] ?? nil, let window = layout.windows[i], let name = layer.bottoms.first,
                let t = blobs[name]
            {
                counted = rect.grown(by: window.pad)
                let (h, w) = (t.shape.h, t.shape.w)
                let y0 = min(max(rect.y, 0), h), y1 = min(max(rect.y + rect.height, y0), h)
                let x0 = min(max(rect.x, 0), w), x1 = min(max(rect.x + rect.width, x0), w)
                if !(y0 == 0 && y1 == h && x0 == 0 && x1 == w) {
                    try context.launch(
                        "fill_outside", count: t.shape.count,
                        [
                            .pointer(t.pointer), .long(t.shape.count), .int(h), .int(w), .int(y0), .int(y1),
                            .int(x0), .int(x1), .float(window.padValue),
                        ])
                }
            }
            let inputs = layer.bottoms.map { blobs[$0]! }
            let output: DeviceTensor
            switch steps[i] {
            case .identity:
                output = inputs[0]
            default:
                let s = shapes[i]
                output = try DeviceTensor(Shape(c: s.c * batch, h: s.h, w: s.w), pool: context.pool)
                try run(steps[i], layer: i, inputs, output, batch: batch, counted: counted)
            }
            for top in layer.tops { blobs[top] = output }
            for name in releases[i] { blobs[name] = nil }
            if profile {
                try context.synchronize()
                let now = DispatchTime.now()
                times.append((layer.name, Double(now.uptimeNanoseconds - clock.uptimeNanoseconds) / 1e6))
                clock = now
            }
        }
        if profile {
            let line = times.map { String(format: "%@ %.2f", $0.0, $0.1) }.joined(separator: ", ")
            let what = batch == 1 ? label() : "\(batch) × \(label())"
            FileHandle.standardError.write(Data("cuda profile (ms) \(what): \(line)\n".utf8))
        }
        return blobs[net.outputName]!
    }

    /// One layer on a batch of `batch` images (`x` and `y` hold them one after another).
    /// `counted`: a pooling's whole-image padded input in its input's pixels (`PoolingKernel`).
    private func run(
        _ step: Step, layer i: Int, _ inputs: [DeviceTensor], _ y: DeviceTensor, batch: Int, counted: PixelRect? = nil
    ) throws {
        let x = inputs[0]
        let plane = y.shape.h * y.shape.w
        /// Channels of one image of the input and of the output.
        let (xc, yc) = (x.shape.c / batch, y.shape.c / batch)
        switch step {
        case .convolution(let c):
            if batch == 1, c.fragmentDescriptor != nil, let g = FragmentGeometry(c.conv, input: x.shape),
                g.count * max(x.shape.c * g.fragment.h * g.fragment.w, y.shape.c * g.result.h * g.result.w)
                    < Int(Int32.max)
            {
                try fragmentConvolution(c, layer: i, x, y, g)  // the epilogue included
                return
            }
            if context.cudnn != nil {
                try cudnnConvolution(
                    c, layer: i, descriptor: c.descriptor, x: x.pointer,
                    input: Shape(c: xc, h: x.shape.h, w: x.shape.w),
                    y: y.pointer, output: Shape(c: yc, h: y.shape.h, w: y.shape.w), batch: batch)
            } else {
                let (xs, ys) = (xc * x.shape.h * x.shape.w, yc * plane)
                for n in 0..<batch {
                    try gemmConvolution(
                        c, x.pointer + UInt64(n * xs * 4), Shape(c: xc, h: x.shape.h, w: x.shape.w),
                        y.pointer + UInt64(n * ys * 4), Shape(c: yc, h: y.shape.h, w: y.shape.w))
                }
            }
            if c.bias != nil || c.reluSlope != nil {
                try context.launch(
                    "bias_act", count: y.shape.count,
                    [
                        .pointer(y.pointer), .pointer(c.bias?.pointer ?? 0), .long(plane), .int(yc),
                        .long(y.shape.count), .int(c.bias != nil ? 1 : 0), .int(c.reluSlope != nil ? 1 : 0),
                        .float(c.reluSlope ?? 0),
                    ])
            }
        case .pooling(let p):
            let kernel = p.global ? x.shape.spatial : p.kernel
            let stride = p.global ? Size2.one : p.stride
            let pad = p.global ? Size2.zero : p.pad
            let dil = p.global ? Size2.one : p.dilation
            try context.launch(
                "pool2d", count: y.shape.count,
                [
                    .pointer(x.pointer), .pointer(y.pointer), .int(x.shape.c), .int(x.shape.h), .int(x.shape.w),
                    .int(y.shape.h), .int(y.shape.w), .int(kernel.h), .int(kernel.w), .int(stride.h), .int(stride.w),
                    .int(pad.h), .int(pad.w), .int(dil.h), .int(dil.w), .int(p.method == .max ? 1 : 0),
                    .int(counted?.y ?? -pad.h), .int(counted.map { $0.y + $0.height } ?? x.shape.h + pad.h),
                    .int(counted?.x ?? -pad.w), .int(counted.map { $0.x + $0.width } ?? x.shape.w + pad.w),
                ])
        case .innerProduct(let ip, let w, let b):
            guard x.shape.count == ip.inputs * batch else {
                throw ModelError(
                    "layer \(net.layers[i].name): InnerProduct expects \(ip.inputs) inputs, got "
                        + "\(Shape(c: xc, h: x.shape.h, w: x.shape.w))")
            }
            try innerProduct(ip, weights: w, bias: b, x.pointer, y.pointer, batch: batch)
        case .activation(let kind, let slope):
            try context.launch(
                "activation", count: y.shape.count,
                [
                    .pointer(x.pointer), .pointer(y.pointer), .long(y.shape.count), .int(kind), .float(slope),
                ])
        case .lrn(let l, let dilation):
            switch l.region {
            case .acrossChannels:
                try context.launch(
                    "lrn_across", count: plane * batch,
                    [
                        .pointer(x.pointer), .pointer(y.pointer), .int(xc), .long(plane), .int(l.size),
                        .float(l.alpha / Float(l.size)), .float(l.k), .float(l.beta), .int(batch),
                    ])
            case .withinChannel:
                try context.launch(
                    "lrn_within", count: y.shape.count,
                    [
                        .pointer(x.pointer), .pointer(y.pointer), .int(x.shape.c), .int(x.shape.h), .int(x.shape.w),
                        .int(l.size), .float(l.alpha / Float(l.size * l.size)), .float(l.beta),
                        .int(dilation.h), .int(dilation.w),
                    ])
            }
        case .affine(let a, let b):
            try context.launch(
                "affine", count: y.shape.count,
                [
                    .pointer(x.pointer), .pointer(y.pointer), .pointer(a.pointer), .pointer(b.pointer), .long(plane),
                    .int(yc), .long(y.shape.count),
                ])
        case .softmax:
            try context.launch(
                "softmax_channels", count: plane * batch,
                [
                    .pointer(x.pointer), .pointer(y.pointer), .int(xc), .long(plane), .int(batch),
                ])
        case .concat:  // each image's channels are its inputs' channels in turn
            var offset = 0
            for t in inputs {
                let count = t.shape.count / batch
                if batch == 1 {
                    try context.copy(t.pointer, to: y.pointer + UInt64(offset * 4), bytes: count * 4)
                } else {
                    try context.launch(
                        "concat_images", count: t.shape.count,
                        [
                            .pointer(t.pointer), .pointer(y.pointer), .long(count), .long(y.shape.count / batch),
                            .long(offset), .int(batch),
                        ])
                }
                offset += count
            }
        case .eltwise(let e):
            let coefficients = e.coefficients.isEmpty ? [Float](repeating: 1, count: inputs.count) : e.coefficients
            let op: Int
            switch e.operation {
            case .product: op = 0
            case .sum: op = 1
            case .max: op = 2
            }
            for (j, t) in inputs.enumerated() {
                try context.launch(
                    "eltwise", count: y.shape.count,
                    [
                        .pointer(y.pointer), .pointer(t.pointer), .long(y.shape.count), .int(op),
                        .float(coefficients[j]), .int(j == 0 ? 1 : 0),
                    ])
            }
        case .identity:
            preconditionFailure("identity is handled by forward")
        }
    }
}
