import Foundation
import TesseraCore
import TesseraEngine
import TesseraModel

/// `naive` on a GPU: every pixel's patch through the classifier, thousands of patches
/// per call. The task's input crosses the bus once; for each batch a kernel cuts the
/// patches out of it on the device (`gather_patches`), the classifier runs on the whole
/// batch (`CUDANetRunner.layers`: cuDNN convolutions with N = the batch, each patch
/// padded by its own convolutions exactly as the classifier pads a single patch), and a
/// second kernel writes the probabilities into the map on the device (`scatter_classes`),
/// which crosses the bus once at the end.
///
/// A task of at least `batch` pixels runs every batch at that size (its last one topped
/// up with zero patches whose outputs are dropped): cuDNN chooses its algorithms by the
/// batch's shape, so such tasks (whole tiles) give a pixel the same bytes whatever the
/// tiling, with one set of plans. A smaller task (an edge tile, the check's single
/// pixels) runs one batch of the next power of two, not thousands of patches for one
/// pixel; its bytes may differ from a whole tile's in the last bits. A patch's
/// probabilities differ from the CPU engine's by float32 rounding only (≤ 1e-4,
/// checked by `gpu-check`).
package final class CUDAPatchMapper: PatchMapper, @unchecked Sendable {
    let runner: CUDANetRunner
    let patch: Size2
    /// Each layer's output for one patch.
    let shapes: [Shape]
    let classes: Int
    /// Patches per batch of a whole tile (`TESSERA_CUDA_NAIVE_BATCH`, else 2048; fewer
    /// where an eighth of the device's memory or cuDNN's 2³¹-element tensors say so).
    let batch: Int
    static let defaultBatch = 2048

    init(net: Net, patch: Size2, context: CUDAContext, precision: CUDAPrecision) throws {
        let (_, shapes) = try net.shapes(input: patch)
        guard let last = shapes.last, last.h == 1, last.w == 1 else {
            throw ModelError(
                "naive on the GPU: the classifier \(net.name) gives \(shapes.last.map { "\($0)" } ?? "nothing") "
                    + "for a \(patch.h)×\(patch.w) patch, not one value per class")
        }
        self.shapes = shapes
        self.patch = patch
        classes = last.c
        let patchValues = net.inputChannels * patch.h * patch.w
        let largest = max(patchValues, shapes.map(\.count).max() ?? 1)
        // A layer's input and output for each patch, and the batch's patches.
        let perPatch = 4 * (patchValues + 2 * largest)
        let budget = try context.memoryInfo().total / 8
        let asked = ProcessInfo.processInfo.environment["TESSERA_CUDA_NAIVE_BATCH"].flatMap { Int($0) }
        batch = max(1, min(asked ?? Self.defaultBatch, budget / perPatch, (Int(Int32.max) - 1) / largest))
        runner = try CUDANetRunner(net: net, context: context, precision: precision)
    }

    package func naiveMap(_ input: Tensor, size: Size2) throws -> Tensor {
        let channels = runner.net.inputChannels
        guard input.c == channels, input.h >= size.h + patch.h - 1, input.w >= size.w + patch.w - 1 else {
            throw EngineError(
                .invalidTask,
                "naive on the GPU: a \(size.h)×\(size.w) map of \(patch.h)×\(patch.w) patches needs a "
                    + "\(channels)×\(size.h + patch.h - 1)×\(size.w + patch.w - 1) input, got \(input.shape)")
        }
        let out = Tensor(uninitialized: Shape(c: classes, h: size.h, w: size.w))
        let total = size.h * size.w
        guard total > 0 else { return out }
        var batch = self.batch
        if total < batch { batch = min(batch, 1 << (Int.bitWidth - (total - 1).leadingZeroBitCount)) }
        let context = runner.context
        do {
            try map(input, into: out, size: size, batch: batch)
        } catch {
            throw context.explain(
                error, input: input.shape, what: "naive input (batches of \(batch) patches, TESSERA_CUDA_NAIVE_BATCH)")
        }
        return out
    }

    private func map(_ input: Tensor, into out: Tensor, size: Size2, batch: Int) throws {
        let (context, channels, total) = (runner.context, runner.net.inputChannels, size.h * size.w)
        try context.exclusive {
            let x = try DeviceTensor(input.shape, pool: context.pool)
            try context.upload(input.pointer, count: input.count, to: x.pointer)
            let map = try DeviceTensor(out.shape, pool: context.pool)
            for first in stride(from: 0, to: total, by: batch) {
                let count = min(batch, total - first)
                let patches = try DeviceTensor(Shape(c: batch * channels, h: patch.h, w: patch.w), pool: context.pool)
                try context.launch(
                    "gather_patches", count: patches.shape.count,
                    [
                        .pointer(x.pointer), .pointer(patches.pointer), .int(channels), .int(input.h), .int(input.w),
                        .int(patch.h), .int(patch.w), .long(first), .int(count), .int(batch), .int(size.w),
                    ])
                let probabilities = try runner.layers(
                    patches, batch: batch, shapes: shapes, label: "\(patch.h)×\(patch.w) patches")
                try context.launch(
                    "scatter_classes", count: count * classes,
                    [
                        .pointer(probabilities.pointer), .pointer(map.pointer), .int(classes), .long(total),
                        .long(first), .int(count),
                    ])
            }
            try context.download(map.pointer, count: out.count, into: out.pointer)
        }
    }
}
