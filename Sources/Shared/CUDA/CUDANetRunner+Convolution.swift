import Foundation
import TesseraCore
import TesseraEngine
import TesseraModel

/// How `CUDANetRunner` runs a convolution: cuDNN with the algorithms its heuristics rank
/// first (planned per layer and input shape), a dilated one as the undilated convolution
/// of its fragments, im2col + cuBLAS, and inner products as one sgemm per batch.
extension CUDANetRunner {
    func tensorDescriptor(_ dnn: CuDNN, _ s: Shape, batch: Int = 1) throws -> CUHandle {
        var d: CUHandle = nil
        try dnn.check(dnn.cudnnCreateTensorDescriptor(&d), "cudnnCreateTensorDescriptor")
        try dnn.check(
            dnn.cudnnSetTensor4dDescriptor(
                d, CuDNN.formatNCHW, CuDNN.float32, Int32(batch), Int32(s.c), Int32(s.h),
                Int32(s.w)), "cudnnSetTensor4dDescriptor \(batch)×\(s)")
        return d
    }

    /// `descriptor`: the step's own or its fragment descriptor; `batch` images of `input` each.
    func plan(
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
    func fragmentConvolution(
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

    func cudnnConvolution(
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
    func innerProduct(
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
    func gemmConvolution(
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
