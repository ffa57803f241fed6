import Foundation
import TesseraCore
import TesseraModel

/// Something that runs a `Net` forward: the CPU `NetRunner` or the GPU `CUDANetRunner`.
package protocol NetExecutor: AnyObject, Sendable {
    var net: Net { get }
    /// The net's output for `input`; `origin` is the global position of the input's
    /// pixel (0, 0) (the CPU engine aligns its work to it; see `ConvolutionKernel`).
    /// `masks` (from `PassLayout.paddingMasks`, one entry per layer): before a layer
    /// with a rectangle runs, its input outside the rectangle is set to the layer's
    /// padding value, so the pass pads where the whole-image pass does.
    func forward(_ input: Tensor, threads: Int, origin: Size2, masks: [PixelRect?]?) throws -> Tensor
}

extension NetExecutor {
    package func forward(_ input: Tensor, threads: Int, origin: Size2) throws -> Tensor {
        try forward(input, threads: threads, origin: origin, masks: nil)
    }
}

/// Runs a `Net` forward on one input tensor. Built once per net (weights and
/// coefficients prepared here, never per call); `forward` only reads it, so one
/// runner serves any number of tiles, from any number of threads.
package final class NetRunner: NetExecutor, @unchecked Sendable {
    package let net: Net
    private let steps: [Step]
    /// Runs of 1×1 layers computed band by band (`FusedHead`), by their first layer.
    let heads: [Int: FusedHead]
    /// For each layer, the bottoms whose last reader it is (freed after it runs).
    private let releases: [[String]]
    /// Where each layer's pixels sit (convolutions align their blocks to it) and which layers pad.
    let layout: PassLayout
    private let blas: BLAS
    /// `TESSERA_PROFILE=1`: print each layer's time to stderr after every forward pass.
    private let profile = ProcessInfo.processInfo.environment["TESSERA_PROFILE"] == "1"

    private enum Step {
        case convolution(ConvolutionKernel)
        case pooling(PoolingKernel)
        case innerProduct(InnerProduct)
        case relu(Float)
        case sigmoid
        case tanh
        case elu(Float)
        case softplus
        case lrn(LRNKernel)
        case affine(a: [Float], b: [Float])
        case identity
        case softmax
        case concat
        case eltwise(Eltwise)
    }

    /// - Parameter lrnDilation: per-layer dilation for WITHIN_CHANNEL LRN (dense mode); default 1.
    /// - Parameter fuseHead: run 1×1 conv → 1×1 conv (→ Softmax) band by band (`FusedHead`).
    /// - Parameter packing: packed weights shared with the engine's other runners (`PackedWeights`).
    package init(
        net: Net, lrnDilation: [Size2]? = nil, fuseHead: Bool = FusedHead.enabled, packing: PackedWeights? = nil
    ) throws {
        self.net = net
        blas = try BLAS.get()
        MemoryTuning.keepLargeBuffers()
        // The engine parallelises over bands and tiles itself; each sgemm runs on one thread.
        blas.threads = 1
        var steps: [Step] = []
        for (i, layer) in net.layers.enumerated() {
            switch layer.op {
            case .convolution(let c):
                steps.append(
                    .convolution(
                        ConvolutionKernel(
                            conv: c, fusedReLUSlope: Self.fusedReLU(after: i, in: net), packing: packing)))
            case .pooling(let p): steps.append(.pooling(PoolingKernel(pool: p)))
            case .innerProduct(let ip): steps.append(.innerProduct(ip))
            case .relu(let slope):
                if i > 0, Self.fusedReLU(after: i - 1, in: net) != nil,
                    case .convolution = net.layers[i - 1].op
                {
                    steps.append(.identity)  // done by the convolution before it
                } else {
                    steps.append(.relu(slope))
                }
            case .sigmoid: steps.append(.sigmoid)
            case .tanh: steps.append(.tanh)
            case .elu(let alpha): steps.append(.elu(alpha))
            case .softplus: steps.append(.softplus)
            case .lrn(let l): steps.append(.lrn(LRNKernel(lrn: l, dilation: lrnDilation?[i] ?? .one)))
            case .batchNorm(let bn):
                let (a, b) = PointwiseKernels.batchNormCoefficients(bn)
                steps.append(.affine(a: a, b: b))
            case .scale(let s):
                steps.append(.affine(a: s.scale, b: s.bias ?? [Float](repeating: 0, count: s.scale.count)))
            case .identity: steps.append(.identity)
            case .softmax: steps.append(.softmax)
            case .concat: steps.append(.concat)
            case .eltwise(let e): steps.append(.eltwise(e))
            }
        }
        self.steps = steps
        heads = fuseHead ? Self.fusedHeads(net, steps) : [:]
        layout = PassLayout(net, lrnDilation: lrnDilation)
        releases = Self.releaseSchedule(net)
    }

    /// Runs of layers `FusedHead` computes: a direct 1×1 convolution, layers that change
    /// nothing (its fused ReLU, Dropout), another direct 1×1 convolution, then optionally
    /// nothing-layers and a Softmax; one chain whose inner blobs nothing else reads.
    private static func fusedHeads(_ net: Net, _ steps: [Step]) -> [Int: FusedHead] {
        var heads: [Int: FusedHead] = [:]
        func direct1x1(_ i: Int) -> ConvolutionKernel? {
            guard i < steps.count, case .convolution(let k) = steps[i], k.isDirect1x1 else { return nil }
            return k
        }
        func identity(_ i: Int) -> Bool {
            guard i < steps.count, case .identity = steps[i] else { return false }
            return true
        }
        var i = 0
        while i < steps.count {
            guard let first = direct1x1(i) else {
                i += 1
                continue
            }
            var j = i + 1
            while identity(j) { j += 1 }
            guard let second = direct1x1(j) else {
                i += 1
                continue
            }
            var end = j
            var k = j + 1
            while identity(k) { k += 1 }
            var softmax = false
            if k < steps.count, case .softmax = steps[k] {
                softmax = true
                end = k
            }
            // One chain, single tops; the blobs inside it read by nothing outside it.
            let chain = (i...end).allSatisfy { l in
                net.layers[l].tops.count == 1 && (l == i || net.layers[l].bottoms == net.layers[l - 1].tops)
            }
            let inner = Set((i..<end).map { net.layers[$0].tops[0] }).subtracting([net.layers[end].tops[0]])
            let readOutside = net.layers.indices.contains { l in
                !(i...end).contains(l) && net.layers[l].bottoms.contains { inner.contains($0) }
            }
            if chain, !readOutside, !inner.contains(net.outputName),
                first.conv.outputs == second.conv.weights.count / max(1, second.conv.outputs)
            {
                heads[i] = FusedHead(first: first, second: second, softmax: softmax, start: i, end: end)
                i = end + 1
            } else {
                i += 1
            }
        }
        return heads
    }

    /// For each layer, the blobs whose last reader it is (freed after it runs).
    package static func releaseSchedule(_ net: Net) -> [[String]] {
        var lastReader: [String: Int] = [:]
        for (i, layer) in net.layers.enumerated() {
            for b in layer.bottoms { lastReader[b] = i }
        }
        var releases = [[String]](repeating: [], count: net.layers.count)
        for (name, i) in lastReader where !net.layers[i].tops.contains(name) && name != net.outputName {
            releases[i].append(name)
        }
        return releases
    }

    /// The slope of a ReLU that directly follows layer `i` in place (same blob
    /// in and out, the blob's only reader), so the layer can apply it itself.
    package static func fusedReLU(after i: Int, in net: Net) -> Float? {
        guard i + 1 < net.layers.count, let top = net.layers[i].tops.first, net.layers[i].tops.count == 1 else {
            return nil
        }
        let next = net.layers[i + 1]
        guard case .relu(let slope) = next.op, next.bottoms == [top], next.tops == [top] else { return nil }
        return slope
    }

    /// The net's output for `input` (shape checked against the net first).
    /// `origin` is the global position of the input's pixel (0, 0): convolutions
    /// block their work on a grid aligned to it, so a pixel's value does not
    /// depend on how the image was tiled (see `ConvolutionKernel`).
    package func forward(
        _ input: Tensor, threads: Int, origin: Size2 = .zero, masks: [PixelRect?]? = nil
    )
        throws -> Tensor
    {
        let (_, shapes) = try net.shapes(input: input.shape.spatial)
        guard input.c == net.inputChannels else {
            throw ModelError("the input has \(input.c) channels but the net expects \(net.inputChannels)")
        }
        let plan = memoryPlan(shapes, masks: masks)
        let arena = try ActivationArena(count: plan.count, input: input.shape)
        /// Layer `i`'s output tensor (of shape `shape`), where the plan put it.
        func allocate(_ i: Int, _ shape: Shape) -> Tensor {
            if let offset = plan.offsets[i] { return Tensor(uninitialized: shape, in: arena, at: offset) }
            return Tensor(uninitialized: shape)
        }
        var blobs: [String: Tensor] = [net.inputName: input]
        var times: [String] = []
        var clock = DispatchTime.now()
        var skipThrough = -1
        for (i, layer) in net.layers.enumerated() {
            if i <= skipThrough {
                for name in releases[i] { blobs[name] = nil }
                continue
            }
            if let head = fusedHead(at: i, masks: masks) {
                let output = allocate(i, shapes[head.end])
                head.forward(blobs[layer.bottoms[0]]!, into: output, threads: threads)
                for top in net.layers[head.end].tops { blobs[top] = output }
                for name in releases[i] { blobs[name] = nil }
                skipThrough = head.end
                if profile {
                    let now = DispatchTime.now()
                    let names = (head.start...head.end).map { net.layers[$0].name }.joined(separator: "+")
                    times.append(
                        String(
                            format: "%@ (fused) %.1f", names,
                            Double(now.uptimeNanoseconds - clock.uptimeNanoseconds) / 1e6))
                    clock = now
                }
                continue
            }
            var counted: PixelRect?
            if let rect = masks?[i] ?? nil, let window = layout.windows[i], let name = layer.bottoms.first {
                // The caller's input is not ours to overwrite.
                if blobs[name] === input { blobs[name] = input.copy() }
                blobs[name]!.fill(outside: rect, with: window.padValue)
                counted = rect.grown(by: window.pad)
            }
            let inputs = layer.bottoms.map { blobs[$0]! }
            let output: Tensor
            switch steps[i] {
            case .identity:
                output = inputs[0]
            case .concat:
                output = allocate(i, shapes[i])
                PointwiseKernels.concat(inputs, output)
            case .eltwise(let e):
                output = allocate(i, shapes[i])
                PointwiseKernels.eltwise(inputs, output, op: e, threads: threads)
            default:
                output = allocate(i, shapes[i])
                let p = layout.outputs[i]
                let layerOrigin = Size2(
                    (origin.h + p.offset.h).floorDiv(p.jump.h),
                    (origin.w + p.offset.w).floorDiv(p.jump.w))
                if case .pooling(let k) = steps[i] {
                    k.forward(inputs[0], into: output, threads: threads, counted: counted)
                } else {
                    run(steps[i], inputs[0], output, origin: layerOrigin, threads: threads)
                }
            }
            for top in layer.tops { blobs[top] = output }
            for name in releases[i] { blobs[name] = nil }
            if profile {
                let now = DispatchTime.now()
                times.append(
                    String(format: "%@ %.1f", layer.name, Double(now.uptimeNanoseconds - clock.uptimeNanoseconds) / 1e6)
                )
                clock = now
            }
        }
        if profile {
            FileHandle.standardError.write(Data("profile (ms) \(input.shape): \(times.joined(separator: ", "))\n".utf8))
        }
        return blobs[net.outputName]!
    }

    /// The fused head starting at layer `i` that runs in this pass: not where a mask
    /// must pad one of its layers' inputs.
    private func fusedHead(at i: Int, masks: [PixelRect?]?) -> FusedHead? {
        guard let head = heads[i], (head.start...head.end).allSatisfy({ (masks?[$0] ?? nil) == nil }) else {
            return nil
        }
        return head
    }

    /// Where a pass puts each layer's output: `offsets[i]` in the pass's arena (see
    /// `ActivationArena`), nil for a layer that allocates nothing (an identity, a layer
    /// inside a fused head) or whose output is the net's (its own allocation, so that
    /// the caller holding the result does not hold the arena). Follows `forward` step by
    /// step: a layer's output is written while its inputs are alive, and an activation
    /// dies after the step that drops its last name (`releases`, or a top that reuses it).
    func memoryPlan(_ shapes: [Shape], masks: [PixelRect?]?) -> (offsets: [Int?], count: Int) {
        var buffers: [ActivationPlan.Buffer] = [], owner: [Int] = []  // owner: the layer that writes it
        var bound: [String: Int] = [:]  // blob → buffer; the caller's input (or its masked copy) has none
        var names: [Int] = []  // names bound to each buffer
        func drop(_ name: String, at i: Int) {
            guard let b = bound.removeValue(forKey: name) else { return }
            names[b] -= 1
            if names[b] == 0 { buffers[b].last = i }
        }
        func bind(_ name: String, to b: Int?, at i: Int) {
            if bound[name] == b && b != nil { return }
            drop(name, at: i)
            guard let b else { return }
            bound[name] = b
            names[b] += 1
        }
        func newBuffer(_ count: Int, at i: Int) -> Int {
            buffers.append(ActivationPlan.Buffer(count: count, first: i, last: net.layers.count))
            owner.append(i)
            names.append(0)
            return buffers.count - 1
        }
        var skipThrough = -1
        for (i, layer) in net.layers.enumerated() {
            if i > skipThrough {
                if let head = fusedHead(at: i, masks: masks) {
                    let b = newBuffer(shapes[head.end].count, at: i)
                    for top in net.layers[head.end].tops { bind(top, to: b, at: i) }
                    skipThrough = head.end
                } else {
                    let output: Int?
                    if case .identity = steps[i] {
                        output = layer.bottoms.first.flatMap { bound[$0] }
                    } else {
                        output = newBuffer(shapes[i].count, at: i)
                    }
                    for top in layer.tops { bind(top, to: output, at: i) }
                }
            }
            for name in releases[i] { drop(name, at: i) }
        }
        let result = bound[net.outputName]
        let placed = buffers.indices.filter { $0 != result }
        let (offsets, count) = ActivationPlan.offsets(placed.map { buffers[$0] })
        var layerOffsets = [Int?](repeating: nil, count: net.layers.count)
        for (k, b) in placed.enumerated() { layerOffsets[owner[b]] = offsets[k] }
        return (layerOffsets, count)
    }

    private func run(_ step: Step, _ input: Tensor, _ output: Tensor, origin: Size2, threads: Int) {
        switch step {
        case .convolution(let k): k.forward(input, into: output, origin: origin, threads: threads, blas: blas)
        case .pooling(let k): k.forward(input, into: output, threads: threads)
        case .innerProduct(let ip): PointwiseKernels.innerProduct(input, output, ip: ip, blas: blas)
        case .relu(let slope): PointwiseKernels.relu(input, output, slope: slope, threads: threads)
        case .sigmoid: PointwiseKernels.sigmoid(input, output, threads: threads)
        case .tanh: PointwiseKernels.tanh(input, output, threads: threads)
        case .elu(let alpha): PointwiseKernels.elu(input, output, alpha: alpha, threads: threads)
        case .softplus: PointwiseKernels.softplus(input, output, threads: threads)
        case .lrn(let k): k.forward(input, into: output, threads: threads)
        case .affine(let a, let b): PointwiseKernels.affine(input, output, a: a, b: b, threads: threads)
        case .softmax: PointwiseKernels.softmax(input, output, threads: threads)
        case .identity, .concat, .eltwise: preconditionFailure("handled by forward")
        }
    }
}
