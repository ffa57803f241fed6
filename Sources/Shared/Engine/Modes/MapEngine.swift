import CKernels
import Foundation
import TesseraCore
import TesseraModel
import TesseraPlan

/// Everything needed to compute any task of any mode for one model: the
/// classifier (naive), its fully convolutional form (fast, shift) and the
/// dense form (dense), each prepared once. Immutable after init and safe to
/// share between threads; this is what a worker holds per model.
package final class MapEngine: @unchecked Sendable {
    /// The model's classifier, nets, layouts and task geometry.
    package let plan: ModelPlan
    /// Where every mode runs.
    package let device: ComputeDevice
    private let classifierRunner: NetRunner
    /// The classifier on batches of patches (`naive`); nil where the net has no batched form.
    let batchedClassifier: BatchedClassifier?
    /// `naive` on a GPU device, made when the first `naive` task comes (most jobs run other modes).
    private let gpuClassifier = LazyPatchMapper()
    private let stridedRunner: any NetExecutor
    private let denseRunner: any NetExecutor
    /// Distinct convolution weight arrays the CPU runners packed (one per layer when
    /// they share them, as they should).
    package let packedWeightArrays: Int

    /// The runners for `plan` on `device`: weights packed once, shared by every task
    /// and by the four runners (`PackedWeights`: each convolution's weights packed once).
    package init(plan: ModelPlan, device: ComputeDevice = .cpu) throws {
        self.plan = plan
        self.device = device
        let packing = PackedWeights()
        classifierRunner = try NetRunner(net: plan.classifier, packing: packing)
        batchedClassifier = try BatchedClassifier(net: plan.classifier, patch: plan.tasks.patch, packing: packing)
        stridedRunner = try device.executor(plan.fcn, packing: packing)
        denseRunner = try device.executor(plan.dense, lrnDilation: plan.lrnDilation, packing: packing)
        packedWeightArrays = packing.count
    }

    /// - Parameters:
    ///   - classifier: the patch classifier as imported (InnerProduct layers allowed).
    ///   - patch: the patch size when the net does not say.
    ///   - allowPadding: accept a net that cannot be exact (padding, partial pooling windows).
    ///   - device: where `fast`, `shift` and `dense` run.
    package convenience init(
        classifier: Net, patch: Size2? = nil, allowPadding: Bool = false,
        device: ComputeDevice = .cpu
    ) throws {
        try self.init(plan: ModelPlan(classifier: classifier, patch: patch, allowPadding: allowPadding), device: device)
    }

    /// The engine for a model as `ModelLoader` loaded it (surgery already done).
    package convenience init(model: LoadedModel, allowPadding: Bool = false, device: ComputeDevice = .cpu) throws {
        try self.init(plan: ModelPlan(model: model, allowPadding: allowPadding), device: device)
    }

    package var fcn: Net { plan.fcn }
    package var geometry: NetGeometry { plan.geometry }
    package var tasks: TaskGeometry { plan.tasks }
    package var classes: Int { plan.classes }
    private var stridedLayout: PassLayout { plan.stridedLayout }
    private var denseLayout: PassLayout { plan.denseLayout }

    /// Multiply-accumulates of the convolutions (and InnerProducts) `task` runs:
    /// the work count benchmarks report GFLOP/s and speed-ups against.
    package func convolutionMACs(_ task: TileTask) throws -> Int {
        func macs(_ net: Net, input: Size2) throws -> Int {
            let (blobs, shapes) = try net.shapes(input: input)
            var total = 0
            for (i, layer) in net.layers.enumerated() {
                switch layer.op {
                case .convolution(let c):
                    total += shapes[i].count * c.inputsPerGroup * c.kernel.h * c.kernel.w
                case .innerProduct(let ip):
                    total += ip.outputs * ip.inputs
                default:
                    _ = blobs
                }
            }
            return total
        }
        let r = tasks.inputRect(task)
        switch task.mode {
        case .naive: return try macs(classifierRunner.net, input: tasks.patch) * task.rect.height * task.rect.width
        case .dense: return try macs(denseRunner.net, input: Size2(r.height, r.width))
        case .fast, .shift: return try macs(stridedRunner.net, input: Size2(r.height, r.width))
        }
    }

    /// Computes `task` from its preprocessed input (the tensor of `tasks.inputRect(task)`):
    /// a `classes × rows × cols` tensor (`tasks.outputSize(task)`).
    package func run(_ task: TileTask, input: Tensor, threads: Int) throws -> Tensor {
        let expected = tasks.inputRect(task)
        guard input.h == expected.height, input.w == expected.width else {
            throw EngineError(
                .invalidTask,
                "task \(task) needs a \(expected.height)×\(expected.width) input, got \(input.h)×\(input.w)")
        }
        let size = tasks.outputSize(task), offset = tasks.outputOffset(task)
        let origin = Size2(expected.y, expected.x)
        let (runner, layout) = task.mode == .dense ? (denseRunner, denseLayout) : (stridedRunner, stridedLayout)
        let out: Tensor
        switch task.mode {
        case .naive:
            out = try naive(task, input: input, threads: threads)
        case .dense, .fast, .shift:
            let masks = try paddingMasks(task, layout: layout, net: runner.net, inputOrigin: origin)
            out = try crop(
                runner.forward(input, threads: threads, origin: origin, masks: masks),
                at: offset, size: size, task: task)
        }
        try Self.requireFinite(out, task: task)
        return out
    }

    /// A tile with a NaN or an infinity is an error, never a map: a net whose arithmetic overflows, or a bug
    /// (numerics audit 33: NaN pixels in `dense` maps, written with exit status 0). In-process runs, workers
    /// and the GPU all pass here; the coordinator checks workers' results again.
    static func requireFinite(_ t: Tensor, task: TileTask) throws {
        let p = t.pointer
        var bad = 0
        for i in 0..<t.count where !p[i].isFinite { bad += 1 }
        guard bad > 0 else { return }
        let first = (0..<t.count).first { !p[$0].isFinite }!
        let (c, y, x) = (first / (t.h * t.w), first / t.w % t.h, first % t.w)
        throw EngineError(
            .netOutput,
            "task \(task): the net computed \(bad) value\(bad == 1 ? "" : "s") that \(bad == 1 ? "is" : "are") NaN or "
                + "infinite (the first, \(p[first]), at class \(c), row \(y), column \(x) of the tile's outputs): its "
                + "arithmetic overflowed, or this is a Tessera bug; no map is made of them")
    }

    /// For a net that pads: where each padded layer of `task`'s pass must see
    /// padding, so that it pads where the whole-image pass does and not at the
    /// tile's edges. Nil for nets that do not pad.
    private func paddingMasks(
        _ task: TileTask, layout: PassLayout, net: Net, inputOrigin: Size2
    ) throws
        -> [PixelRect?]?
    {
        guard tasks.pads else { return nil }
        guard task.image.h > 0, task.image.w > 0 else {
            throw EngineError(
                .invalidTask, "task \(task): the net pads, so the task must say the size of the whole image")
        }
        let valid = stridedLayout.validRegions(fcn, input: tasks.wholeImageInput(task.image))
        return layout.paddingMasks(net, valid: valid, inputOrigin: inputOrigin)
    }

    /// The `size` outputs at `offset` of the pass's output `t` (a pass computes
    /// a margin around them when the net pads, and a net may produce a few extra
    /// outputs past the ones asked for when its receptive field is smaller than the patch).
    private func crop(_ t: Tensor, at offset: Size2, size: Size2, task: TileTask) throws -> Tensor {
        guard offset.h >= 0, offset.w >= 0, t.h >= offset.h + size.h, t.w >= offset.w + size.w else {
            throw EngineError(
                .netOutput,
                "task \(task): the net produced \(t.h)×\(t.w) outputs, fewer than the \(size) "
                    + "asked for at \(offset)")
        }
        if t.h == size.h && t.w == size.w { return t }
        let out = Tensor(Shape(c: t.c, h: size.h, w: size.w))
        for c in 0..<t.c {
            for y in 0..<size.h {
                (out.plane(c) + y * size.w).update(from: t.plane(c) + (y + offset.h) * t.w + offset.w, count: size.w)
            }
        }
        return out
    }

    /// Every pixel's patch through the classifier: on a GPU device by its `PatchMapper`;
    /// on the CPU in batches (`BatchedClassifier`) claimed by the threads one after another,
    /// or one patch at a time for nets without a batched form.
    private func naive(_ task: TileTask, input: Tensor, threads: Int) throws -> Tensor {
        let (h, w) = (task.rect.height, task.rect.width)
        // Shapes are checked once here, so the per-patch forward cannot fail.
        _ = try classifierRunner.net.shapes(input: tasks.patch)
        if let gpu = try gpuClassifier.get({ try device.patchMapper(plan.classifier, patch: tasks.patch) }) {
            return try gpu.naiveMap(input, size: Size2(h, w))
        }
        let out = Tensor(Shape(c: classes, h: h, w: w))
        guard let batched = batchedClassifier else {
            naivePerPatch(input: input, into: out, threads: threads)
            return out
        }
        let b = batched.batch, batches = (h * w + b - 1) / b
        let next = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        next.initialize(to: 0)
        defer { next.deallocate() }
        parallelRanges(min(threads, batches), threads: threads) { _ in
            let workspace = batched.workspace()
            while true {
                let i = tessera_claim(next, 1)
                if i >= batches { break }
                batched.classify(
                    input, pixels: i * b..<min(h * w, (i + 1) * b), width: w, into: out, workspace: workspace)
            }
        }
        return out
    }

    /// The classifier on one patch at a time, in parallel over pixels: `naive` for
    /// nets without a batched form, and the reference the batched one is tested against.
    func naivePerPatch(input: Tensor, into out: Tensor, threads: Int) {
        let (h, w) = (out.h, out.w)
        let p = tasks.patch
        parallelRanges(h * w, threads: threads) { pixels in
            let patch = Tensor(Shape(c: input.c, h: p.h, w: p.w))
            for pixel in pixels {
                let (y, x) = (pixel / w, pixel % w)
                for c in 0..<input.c {
                    for r in 0..<p.h {
                        (patch.plane(c) + r * p.w).update(from: input.plane(c) + (y + r) * input.w + x, count: p.w)
                    }
                }
                guard let probs = try? classifierRunner.forward(patch, threads: 1) else {
                    preconditionFailure("forward failed after its shapes were checked")
                }
                for c in 0..<classes { out[c, y, x] = probs.storage[c] }
            }
        }
    }
}

/// A `PatchMapper` made on first use, once, by whichever thread asks first.
private final class LazyPatchMapper: @unchecked Sendable {
    private let lock = NSLock()
    private var made = false
    private var mapper: (any PatchMapper)?

    func get(_ make: () throws -> (any PatchMapper)?) throws -> (any PatchMapper)? {
        lock.lock()
        defer { lock.unlock() }
        if !made {
            mapper = try make()
            made = true
        }
        return mapper
    }
}
