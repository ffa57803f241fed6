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
    private var plans: [PlanKey: ConvolutionPlan] = [:]
    private var workspace: DevicePointer = 0
    private var workspaceBytes = 0
    private let profile = ProcessInfo.processInfo.environment["TESSERA_CUDA_PROFILE"] == "1"
    private let findAlgorithms = ProcessInfo.processInfo.environment["TESSERA_CUDNN_ALGO"] == "find"
    /// im2col path: floats in one column buffer (256 MiB).
    static let columnBudget = 64 << 20
    /// cuDNN workspace limit per convolution.
    static let workspaceLimit = 2 << 30

    /// `fragments`: the undilated convolution of a dilated one's `batch` fragments
    /// (`FragmentGeometry`); else `batch` images (`naive`'s patches) or one.
    private struct PlanKey: Hashable { let layer: Int; let input: Shape; let batch: Int; let fragments: Bool }
    /// Descriptors and the algorithms cuDNN ranks first for one input shape, best first
    /// (the next is tried when one reports NOT_SUPPORTED at run time).
    private struct ConvolutionPlan {
        let x: CUHandle; let y: CUHandle; var candidates: [(algorithm: Int32, workspace: Int)]
    }

    private final class ConvolutionStep {
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
            if let rect = masks?[i] ?? nil, let window = layout.windows[i], let name = layer.bottoms.first,
                let t = blobs[name]
            {
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
                try run(steps[i], layer: i, inputs, output, batch: batch)
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
    private func run(_ step: Step, layer i: Int, _ inputs: [DeviceTensor], _ y: DeviceTensor, batch: Int) throws {
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

    private func tensorDescriptor(_ dnn: CuDNN, _ s: Shape, batch: Int = 1) throws -> CUHandle {
        var d: CUHandle = nil
        try dnn.check(dnn.cudnnCreateTensorDescriptor(&d), "cudnnCreateTensorDescriptor")
        try dnn.check(
            dnn.cudnnSetTensor4dDescriptor(
                d, CuDNN.formatNCHW, CuDNN.float32, Int32(batch), Int32(s.c), Int32(s.h),
                Int32(s.w)), "cudnnSetTensor4dDescriptor \(batch)×\(s)")
        return d
    }

    /// `descriptor`: the step's own or its fragment descriptor; `batch` images of `input` each.
    private func plan(
        _ c: ConvolutionStep, layer i: Int, descriptor: CUHandle, input: Shape, output: Shape, batch: Int
    ) throws -> ConvolutionPlan {
        let key = PlanKey(layer: i, input: input, batch: batch, fragments: descriptor == c.fragmentDescriptor)
        if let p = plans[key] { return p }
        let dnn = context.cudnn!
        let handle = context.cudnnHandle
        let name = net.layers[i].name
        let xd = try tensorDescriptor(dnn, input, batch: batch)
        var n: Int32 = 0, ch: Int32 = 0, h: Int32 = 0, w: Int32 = 0
        try dnn.check(
            dnn.cudnnGetConvolution2dForwardOutputDim(descriptor, xd, c.filter, &n, &ch, &h, &w),
            "layer \(name): cudnnGetConvolution2dForwardOutputDim")
        guard Int(n) == batch, Int(ch) == output.c, Int(h) == output.h, Int(w) == output.w else {
            throw CUDAError(
                "layer \(name): cuDNN computes a \(n)×\(ch)×\(h)×\(w) output for \(batch)×\(input), "
                    + "Tessera's shape inference \(batch)×\(output)")
        }
        let yd = try tensorDescriptor(dnn, output, batch: batch)
        let requested: Int32 = 8
        let perf = UnsafeMutableRawPointer.allocate(byteCount: CuDNN.perfStructBytes * Int(requested), alignment: 8)
        defer { perf.deallocate() }
        var returned: Int32 = 0
        if findAlgorithms {
            try dnn.check(
                dnn.cudnnFindConvolutionForwardAlgorithm(
                    handle, xd, c.filter, descriptor, yd, requested,
                    &returned, perf),
                "layer \(name): cudnnFindConvolutionForwardAlgorithm")
        } else {
            try dnn.check(
                dnn.cudnnGetConvolutionForwardAlgorithm_v7(
                    handle, xd, c.filter, descriptor, yd,
                    requested, &returned, perf),
                "layer \(name): cudnnGetConvolutionForwardAlgorithm_v7")
        }
        var candidates: [(algorithm: Int32, workspace: Int)] = []
        var measured: [String] = []
        for k in 0..<Int(returned) {
            let entry = perf + k * CuDNN.perfStructBytes
            let algorithm = entry.load(as: Int32.self)
            let status = entry.load(fromByteOffset: 4, as: Int32.self)
            guard status == 0 else { continue }
            var bytes = 0
            guard
                dnn.cudnnGetConvolutionForwardWorkspaceSize(
                    handle, xd, c.filter, descriptor, yd, algorithm,
                    &bytes) == 0,
                bytes <= Self.workspaceLimit
            else { continue }
            candidates.append((algorithm, bytes))
            if findAlgorithms {
                measured.append(String(format: "%d: %.2f ms", algorithm, entry.load(fromByteOffset: 8, as: Float.self)))
            }
        }
        guard !candidates.isEmpty else {
            throw CUDAError(
                "layer \(name): cuDNN offers no forward algorithm for input \(input) "
                    + "within a \(Self.workspaceLimit >> 20) MiB workspace")
        }
        let p = ConvolutionPlan(x: xd, y: yd, candidates: candidates)
        plans[key] = p
        if profile {
            let list = candidates.map { "\($0.algorithm) (\($0.workspace >> 20) MiB)" }.joined(separator: ", ")
            let what =
                key.fragments ? "\(batch) fragments \(input)" : batch == 1 ? "\(input)" : "\(batch) × \(input)"
            FileHandle.standardError.write(
                Data(
                    ("cuda plan \(name) \(what): algorithms \(list)"
                        + (measured.isEmpty ? "" : "; measured \(measured.joined(separator: ", "))") + "\n").utf8))
        }
        return p
    }

    /// A dilated convolution through its fragments (`FragmentGeometry`): space-to-batch,
    /// one batched undilated convolution, batch-to-space with the bias and ReLU.
    private func fragmentConvolution(
        _ c: ConvolutionStep, layer i: Int, _ x: DeviceTensor, _ y: DeviceTensor, _ g: FragmentGeometry
    ) throws {
        let input = Shape(c: x.shape.c, h: g.fragment.h, w: g.fragment.w)
        let output = Shape(c: y.shape.c, h: g.result.h, w: g.result.w)
        let f = try DeviceTensor(Shape(c: g.count * input.c, h: input.h, w: input.w), pool: context.pool)
        try context.launch(
            "space_to_batch", count: f.shape.count,
            [
                .pointer(x.pointer), .pointer(f.pointer), .int(x.shape.c), .int(x.shape.h), .int(x.shape.w),
                .int(g.dilation.h), .int(g.dilation.w), .int(g.pad.h), .int(g.pad.w), .int(input.h), .int(input.w),
            ])
        let r = try DeviceTensor(Shape(c: g.count * output.c, h: output.h, w: output.w), pool: context.pool)
        try cudnnConvolution(
            c, layer: i, descriptor: c.fragmentDescriptor, x: f.pointer, input: input, y: r.pointer,
            output: output, batch: g.count)
        try context.launch(
            "batch_to_space", count: y.shape.count,
            [
                .pointer(r.pointer), .pointer(y.pointer), .int(y.shape.c), .int(y.shape.h), .int(y.shape.w),
                .int(g.dilation.h), .int(g.dilation.w), .int(output.h), .int(output.w), .pointer(c.bias?.pointer ?? 0),
                .int(c.bias != nil ? 1 : 0), .int(c.reluSlope != nil ? 1 : 0), .float(c.reluSlope ?? 0),
            ])
    }

    private func cudnnConvolution(
        _ c: ConvolutionStep, layer i: Int, descriptor: CUHandle, x: DevicePointer, input: Shape, y: DevicePointer,
        output: Shape, batch: Int
    ) throws {
        let dnn = context.cudnn!
        var p = try plan(c, layer: i, descriptor: descriptor, input: input, output: output, batch: batch)
        var one: Float = 1, zero: Float = 0
        while true {
            let (algorithm, bytes) = p.candidates[0]
            if bytes > workspaceBytes {
                try context.synchronize()
                if workspaceBytes > 0 { context.pool.release(workspace, bytes: workspaceBytes) }
                workspaceBytes = 0
                workspace = try context.pool.allocate(bytes)
                workspaceBytes = bytes
            }
            let status = dnn.cudnnConvolutionForward(
                context.cudnnHandle, &one, p.x, x, c.filter,
                c.weights.pointer, descriptor, algorithm, workspace, bytes,
                &zero, p.y, y)
            if status != 0 && p.candidates.count > 1 {  // e.g. NOT_SUPPORTED (9; 3000… in cuDNN 9): next one
                p.candidates.removeFirst()
                plans[PlanKey(layer: i, input: input, batch: batch, fragments: descriptor == c.fragmentDescriptor)] = p
                continue
            }
            try dnn.check(status, "layer \(net.layers[i].name): cudnnConvolutionForward (algorithm \(algorithm))")
            return
        }
    }

    /// InnerProduct on `batch` images: one sgemm, y[n, o] = Σᵢ w[o, i] x[n, i] (column-major
    /// view: Y[outputs × batch] = Wᵀ[outputs × inputs] · X[inputs × batch]), then the bias.
    /// Without cuBLAS, a kernel with one thread per output (its weight reads are not
    /// coalesced: slow for a big InnerProduct on a big batch).
    private func innerProduct(
        _ ip: InnerProduct, weights w: DeviceTensor, bias b: DeviceTensor?,
        _ x: DevicePointer, _ y: DevicePointer, batch: Int
    ) throws {
        guard let blas = context.cublas else {
            try context.launch(
                "inner_product", count: ip.outputs * batch,
                [
                    .pointer(x), .pointer(w.pointer), .pointer(b?.pointer ?? 0), .pointer(y),
                    .int(ip.outputs), .int(ip.inputs), .int(b != nil ? 1 : 0), .int(batch),
                ])
            return
        }
        var one: Float = 1, zero: Float = 0
        try blas.check(
            blas.cublasSgemm(
                context.cublasHandle, 1, 0, Int32(ip.outputs), Int32(batch), Int32(ip.inputs), &one,
                w.pointer, Int32(ip.inputs), x, Int32(ip.inputs), &zero, y, Int32(ip.outputs)),
            "cublasSgemm (InnerProduct)")
        guard let b else { return }
        try context.launch(
            "bias_act", count: ip.outputs * batch,
            [
                .pointer(y), .pointer(b.pointer), .long(1), .int(ip.outputs), .long(ip.outputs * batch),
                .int(1), .int(0), .float(0),
            ])
    }

    /// im2col in row chunks + one sgemm per chunk and group, written straight into
    /// the output planes (column-major view: C[pixels × outputs] = col[pixels × K] · W[K × outputs]).
    /// One image: `x` (`input`-shaped) to `y` (`output`-shaped).
    private func gemmConvolution(
        _ c: ConvolutionStep, _ x: DevicePointer, _ input: Shape, _ y: DevicePointer, _ output: Shape
    ) throws {
        guard let blas = context.cublas else { throw CUDAError(.library, "no cuBLAS for the im2col convolution path") }
        let conv = c.conv
        let g = conv.group, cg = input.c / g, mg = conv.outputs / g
        let k = cg * conv.kernel.h * conv.kernel.w
        let (outH, outW) = (output.h, output.w)
        let rowsPerChunk = max(1, min(outH, Self.columnBudget / max(1, k * outW)))
        let col = try DeviceTensor(Shape(c: 1, h: 1, w: k * rowsPerChunk * outW), pool: context.pool)
        var one: Float = 1, zero: Float = 0
        for grp in 0..<g {
            var row0 = 0
            while row0 < outH {
                let rows = min(rowsPerChunk, outH - row0)
                try context.launch(
                    "im2col", count: k * rows * outW,
                    [
                        .pointer(x + UInt64(grp * cg * input.h * input.w * 4)), .pointer(col.pointer),
                        .int(cg), .int(input.h), .int(input.w), .int(outW), .int(row0), .int(rows),
                        .int(conv.kernel.h), .int(conv.kernel.w), .int(conv.stride.h), .int(conv.stride.w),
                        .int(conv.pad.h), .int(conv.pad.w), .int(conv.dilation.h), .int(conv.dilation.w),
                    ])
                let n = rows * outW
                try blas.check(
                    blas.cublasSgemm(
                        context.cublasHandle, 0, 0, Int32(n), Int32(mg), Int32(k), &one,
                        col.pointer, Int32(n), c.weights.pointer + UInt64(grp * mg * k * 4),
                        Int32(k), &zero,
                        y + UInt64((grp * mg * outH * outW + row0 * outW) * 4),
                        Int32(outH * outW)), "cublasSgemm")
                row0 += rows
            }
        }
    }
}
