import CKernels
import Foundation
import TesseraCore
import TesseraModel

/// The direct convolution kernels in `Sources/CKernels`, best first. Both compute
/// every output as the same FMA chain in the same order, so their maps are equal
/// bit for bit; the choice only changes speed.
package enum DirectConvolutionKernel: String, Sendable {
    /// `conv_direct_avx512.c`: 16-lane vectors, a register tile of up to 12 outputs × 16 pixels.
    case avx512
    /// `conv_direct.c`: 8-lane vectors, a register tile of 6 outputs × 16 pixels.
    case avx2

    /// Whether this CPU runs the kernel.
    package var isSupported: Bool {
        switch self {
        case .avx512: tessera_conv_direct_avx512_available() != 0
        case .avx2: tessera_conv_direct_available() != 0
        }
    }

    /// The kernel for `TESSERA_DIRECT_CONV`: unset, empty or `auto` picks the best this CPU
    /// runs (AVX-512F, else AVX2 + FMA); `avx512` or `avx2` asks for one (a CPU without
    /// it gets the best it has below it); `0` none: im2col + sgemm for every layer.
    /// The switches exist to compare the paths. This kernel is Tessera's only AVX-512 code
    /// (every convolution, `FusedHead` and `BatchedClassifier` run it), so `avx2` leaves none;
    /// OpenBLAS chooses its own (`OPENBLAS_CORETYPE`; `benchmarks/engine.sh --avx2` sets both).
    static func choose(_ setting: String?) -> DirectConvolutionKernel? {
        let order: [DirectConvolutionKernel]
        switch setting?.lowercased() {
        case "0", "off", "none", "im2col": return nil
        case "avx2": order = [.avx2]
        case nil, "", "auto", "avx512": order = [.avx512, .avx2]
        default:
            // A typo (`avx-2`) benchmarked the default kernel without a word (docs/CLI audit 36 F14).
            FileHandle.standardError.write(
                Data(
                    ("warning: TESSERA_DIRECT_CONV=\(setting ?? "") is not auto, avx512, avx2 or 0: the best kernel "
                        + "this CPU runs is used\n").utf8))
            order = [.avx512, .avx2]
        }
        return order.first { $0.isSupported }
    }

    /// The kernel this process uses (from `TESSERA_DIRECT_CONV` and the CPU), nil for none.
    package static let selected: DirectConvolutionKernel? = choose(
        ProcessInfo.processInfo.environment["TESSERA_DIRECT_CONV"])
}

/// Packed weights shared by the runners of one model: `MapEngine` builds four
/// (naive's classifier and its batched form, the strided and the dense net), whose
/// convolutions hold the same weight arrays (surgery and dilation copy a `Layer`, not
/// its weights). Packing each layer once per engine instead of once per runner keeps a
/// model's weights in memory twice (as imported, and packed) instead of five times:
/// a 119 MB ONNX model's `run --in-process` peaked at 597 MB before.
///
/// Keyed by the weight array's storage (the array is kept, so the address stays its own)
/// and how it is packed; the packed values depend on nothing else.
package final class PackedWeights: @unchecked Sendable {
    private struct Key: Hashable {
        let address: UInt
        let count: Int
        let outputs: Int
        let groups: Int
        let direct: DirectConvolutionKernel
    }
    private var entries: [Key: (source: [Float], packed: [Float])] = [:]
    private let lock = NSLock()

    package init() {}

    /// Values packed for `weights` by `pack`, computed once per storage and layout.
    func packed(
        _ weights: [Float], outputs: Int, groups: Int, direct: DirectConvolutionKernel, _ pack: () -> [Float]
    ) -> [Float] {
        let address = weights.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        guard address != 0 else { return pack() }
        let key = Key(address: address, count: weights.count, outputs: outputs, groups: groups, direct: direct)
        lock.lock()
        defer { lock.unlock() }
        if let hit = entries[key] { return hit.packed }
        let packed = pack()
        entries[key] = (weights, packed)
        return packed
    }

    /// Distinct weight arrays packed (tests).
    package var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return entries.count
    }
}

/// Convolution. Every layer (stride 1 or not, padded or not) runs a direct kernel (`DirectConvolutionKernel`: AVX-512F or AVX2/FMA, in
/// `Sources/CKernels`) that reads its operands straight from the input planes:
/// no column matrix to write and no sgemm packing, which cost a third of the
/// dense net's time. Its results do not depend on a pixel's position, so tiles
/// stay bit-identical, and both kernels give the same bits.
///
/// A stride along the rows only moves the kernel's input row; along the columns
/// the kernel first gathers each tap's pixels of a panel into a contiguous run
/// (an im2col of one panel, in L1/L2), so the arithmetic is the same FMA chain.
///
/// A padded layer runs on a copy of its input framed by the padding's zeros (see
/// `framed`), as `naive`'s strips do.
///
/// Without a direct kernel (CPUs without AVX2/FMA, or `TESSERA_DIRECT_CONV=0`)
/// every layer uses im2col + sgemm (Caffe's method), computed in blocks of
/// output pixels so the column buffer stays within a fixed budget however
/// large the input is; blocks run in parallel, each with a single-threaded sgemm.
///
/// Bit-identical tiles: OpenBLAS's sgemm rounds a column differently depending
/// on where it sits in the call (measured: columns 0–7 and from 320 on take
/// other paths). So blocks are `blockRows × blockCols` rectangles aligned to a
/// grid in *global* output coordinates, every call has the same shape, and a
/// pixel always sits in the same column whatever tile it is computed in. Partial
/// blocks at tile edges are padded with zeros.
struct ConvolutionKernel {
    let conv: Convolution
    /// A ReLU that follows in place, applied while the output is written
    /// (saves a pass over the activation); nil when none.
    let fusedReLUSlope: Float?
    /// Weights reordered for the direct kernel, group after group; nil when the layer uses im2col.
    private let packed: [Float]?
    /// The direct kernel this layer runs; nil when it uses im2col.
    let direct: DirectConvolutionKernel?

    /// Whether this process may use a direct kernel (see `DirectConvolutionKernel.selected`).
    static var directAvailable: Bool { DirectConvolutionKernel.selected != nil }

    /// - Parameter direct: the direct kernel; nil forces im2col
    ///   + sgemm (tests compare the paths). It must be supported by this CPU.
    /// - Parameter packing: where runners built for one model share their packed weights
    ///   (`PackedWeights`); nil packs this layer's own copy.
    init(
        conv: Convolution, fusedReLUSlope: Float?,
        direct: DirectConvolutionKernel? = DirectConvolutionKernel.selected, packing: PackedWeights? = nil
    ) {
        self.conv = conv
        self.fusedReLUSlope = fusedReLUSlope
        let g = max(1, conv.group), mg = conv.outputs / g
        let k = conv.weights.count / max(1, conv.outputs)
        if let direct, conv.pad.h >= 0, conv.pad.w >= 0, conv.stride.h >= 1, conv.stride.w >= 1, mg > 0, k > 0,
            conv.weights.count == conv.outputs * k
        {
            precondition(direct.isSupported, "this CPU does not run the \(direct.rawValue) kernel")
            let pack = {
                var packed = [Float](repeating: 0, count: conv.weights.count)
                conv.weights.withUnsafeBufferPointer { w in
                    packed.withUnsafeMutableBufferPointer { p in
                        for grp in 0..<g {
                            let (src, dst) = (w.baseAddress! + grp * mg * k, p.baseAddress! + grp * mg * k)
                            switch direct {
                            case .avx512: tessera_conv_pack_weights_avx512(src, Int32(mg), Int32(k), dst)
                            case .avx2: tessera_conv_pack_weights(src, Int32(mg), Int32(k), dst)
                            }
                        }
                    }
                }
                return packed
            }
            self.packed =
                packing?.packed(conv.weights, outputs: conv.outputs, groups: g, direct: direct, pack) ?? pack()
            self.direct = direct
        } else {
            packed = nil
            self.direct = nil
        }
    }
    /// Column-buffer budget per thread, in floats (2 MiB: stays in L2/L3 while sgemm packs it).
    static let columnBudget = 1 << 19
    /// Block width: 64 columns keeps im2col's row copies long enough to be cheap
    /// (32 made im2col 14% of a dense pass, mostly call overhead) without
    /// wasting much work on partial blocks at tile edges (128 measured slower).
    static let blockCols = 64

    /// Rows of a block for a reduction size `k`: a function of the layer only.
    static func blockRows(k: Int) -> Int {
        max(2, min(128, columnBudget / max(1, k) / blockCols))
    }

    /// Whether this layer runs the direct kernel.
    var isDirect: Bool { packed != nil }

    /// - Parameter origin: global output coordinates of `output`'s pixel (0, 0).
    func forward(_ input: Tensor, into output: Tensor, origin: Size2, threads: Int, blas: BLAS) {
        // The direct kernel's offsets are 32-bit: planes beyond 2^31 floats take the im2col path.
        let framedCount = input.c * (input.h + 2 * conv.pad.h) * (input.w + 2 * conv.pad.w)
        if let packed, let direct, framedCount < Int(Int32.max) {
            forwardDirect(framed(input), into: output, packed: packed, kernel: direct, threads: threads)
            return
        }
        let g = conv.group
        let cg = input.c / g, mg = conv.outputs / g
        let k = cg * conv.kernel.h * conv.kernel.w
        let bh = Self.blockRows(k: k), bw = Self.blockCols, nb = bh * bw
        // Global block grid covering this output.
        let by0 = origin.h.floorDiv(bh), by1 = (origin.h + output.h - 1).floorDiv(bh) + 1
        let bx0 = origin.w.floorDiv(bw), bx1 = (origin.w + output.w - 1).floorDiv(bw) + 1
        let cols = bx1 - bx0
        let blocks = (by1 - by0) * cols
        conv.weights.withUnsafeBufferPointer { wts in
            parallelRanges(blocks, threads: threads) { blockRange in
                let col = UnsafeMutablePointer<Float>.allocate(capacity: k * nb)
                let result = UnsafeMutablePointer<Float>.allocate(capacity: mg * nb)
                defer { col.deallocate(); result.deallocate() }
                for block in blockRange {
                    // Block rectangle in this output's coordinates (may start before 0).
                    let top = (by0 + block / cols) * bh - origin.h
                    let left = (bx0 + block % cols) * bw - origin.w
                    let rows = max(0, top)..<min(output.h, top + bh)
                    let xs = max(0, left)..<min(output.w, left + bw)
                    for grp in 0..<g {
                        im2col(
                            input, channels: grp * cg..<(grp + 1) * cg, top: top, left: left,
                            rows: rows, xs: xs, blockRows: bh, into: col)
                        blas.sgemm(
                            m: mg, n: nb, k: k, a: wts.baseAddress! + grp * mg * k, lda: k,
                            b: col, ldb: nb, c: result, ldc: nb)
                        for m in 0..<mg {
                            let bias = conv.bias?[grp * mg + m] ?? 0
                            let dst = output.plane(grp * mg + m)
                            for y in rows {
                                let src = result + m * nb + (y - top) * bw - left
                                let row = dst + y * output.w
                                switch fusedReLUSlope {
                                case nil: for x in xs { row[x] = src[x] + bias }
                                case 0: for x in xs { row[x] = max(src[x] + bias, 0) }
                                case let slope?:
                                    for x in xs {
                                        let v = src[x] + bias
                                        row[x] = v > 0 ? v : v * slope
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `input` inside a frame of `conv.pad` zeros (itself when the layer does not pad): the
    /// unpadded convolution of the framed input is the padded one of `input`, a padded tap
    /// adding `w · 0` (exactly nothing) to its output's FMA chain. Costs one copy of the input.
    private func framed(_ input: Tensor) -> Tensor {
        let (ph, pw) = (conv.pad.h, conv.pad.w)
        guard ph > 0 || pw > 0 else { return input }
        let f = Tensor(Shape(c: input.c, h: input.h + 2 * ph, w: input.w + 2 * pw))
        for c in 0..<input.c {
            let (src, dst) = (input.plane(c), f.plane(c) + ph * f.w + pw)
            for y in 0..<input.h { (dst + y * f.w).update(from: src + y * input.w, count: input.w) }
        }
        return f
    }

    private func forwardDirect(
        _ input: Tensor, into output: Tensor, packed: [Float], kernel: DirectConvolutionKernel,
        threads: Int
    ) {
        let g = conv.group
        let cg = input.c / g, mg = conv.outputs / g
        let k = cg * conv.kernel.h * conv.kernel.w
        precondition(
            output.h == (input.h - (conv.kernel.h - 1) * conv.dilation.h - 1) / conv.stride.h + 1
                && output.w == (input.w - (conv.kernel.w - 1) * conv.dilation.w - 1) / conv.stride.w + 1
                && output.c == conv.outputs,
            "convolution output shape")
        let activation: Int32 =
            switch fusedReLUSlope {
            case nil: 0;
            case 0: 1;
            default: 2
            }
        packed.withUnsafeBufferPointer { pk in
            (conv.bias ?? []).withUnsafeBufferPointer { bias in
                // Bands of a few output rows, claimed one after another by the threads: on a
                // shared machine a halved layer waits for its slower half, bands keep both busy.
                let band = max(1, min(8, output.h / max(1, 8 * threads)))
                let bands = (output.h + band - 1) / band
                let next = UnsafeMutablePointer<Int>.allocate(capacity: 1)
                next.initialize(to: 0)
                defer { next.deallocate() }
                parallelRanges(min(threads, bands), threads: threads) { _ in
                    while true {
                        let b = tessera_claim(next, 1)
                        if b >= bands { break }
                        let rows = b * band..<min(output.h, (b + 1) * band)
                        for grp in 0..<g {
                            var args = tessera_conv_args(
                                input: UnsafePointer(input.plane(grp * cg)), in_h: input.h, in_w: input.w,
                                channels: Int32(cg), packed: pk.baseAddress! + grp * mg * k, outputs: Int32(mg),
                                bias: conv.bias == nil ? nil : bias.baseAddress! + grp * mg,
                                activation: activation, slope: fusedReLUSlope ?? 0,
                                output: output.plane(grp * mg), out_h: output.h, out_w: output.w,
                                kh: Int32(conv.kernel.h), kw: Int32(conv.kernel.w),
                                dh: Int32(conv.dilation.h), dw: Int32(conv.dilation.w),
                                sh: Int32(conv.stride.h), sw: Int32(conv.stride.w))
                            switch kernel {
                            case .avx512: tessera_conv_direct_rows_avx512(&args, rows.lowerBound, rows.upperBound)
                            case .avx2: tessera_conv_direct_rows(&args, rows.lowerBound, rows.upperBound)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether `forward1x1Rows` runs this layer: a direct, ungrouped, unpadded 1×1 convolution, stride 1
    /// (any dilation).
    var isDirect1x1: Bool {
        // Dilation does not move a 1×1 tap (the dense net dilates fc7 and fc8 by the stride).
        isDirect && conv.kernel == .one && conv.group == 1 && conv.stride == .one && conv.pad == .zero
    }

    /// `rows` rows of `width` pixels of a direct 1×1 layer (`isDirect1x1`), on this thread:
    /// input channel planes `inPlane` floats apart from `input`, output planes `outPlane`
    /// apart from `output`. Each value is the same FMA chain as `forward` computes (the chain
    /// depends on the layer only), so a band computed here equals the whole-tensor pass's rows.
    func forward1x1Rows(
        _ input: UnsafePointer<Float>, inPlane: Int, into output: UnsafeMutablePointer<Float>, outPlane: Int,
        width: Int, rows: Int
    ) {
        guard let packed, let direct, rows > 0 else { preconditionFailure("not a direct 1×1 layer") }
        precondition(isDirect1x1 && inPlane % width == 0 && outPlane % width == 0)
        let activation: Int32 =
            switch fusedReLUSlope {
            case nil: 0
            case 0: 1
            default: 2
            }
        packed.withUnsafeBufferPointer { pk in
            (conv.bias ?? []).withUnsafeBufferPointer { bias in
                // in_h / out_h only set the plane strides: rows [0, rows) are computed.
                var args = tessera_conv_args(
                    input: input, in_h: inPlane / width, in_w: width,
                    channels: Int32(conv.weights.count / conv.outputs), packed: pk.baseAddress!,
                    outputs: Int32(conv.outputs), bias: conv.bias == nil ? nil : bias.baseAddress!,
                    activation: activation, slope: fusedReLUSlope ?? 0, output: output, out_h: outPlane / width,
                    out_w: width, kh: 1, kw: 1, dh: 1, dw: 1, sh: 1, sw: 1)
                switch direct {
                case .avx512: tessera_conv_direct_rows_avx512(&args, 0, rows)
                case .avx2: tessera_conv_direct_rows(&args, 0, rows)
                }
            }
        }
    }

    /// Column matrix of one block: row `(ci·kh + ky)·kw + kx`, column
    /// `(y - top)·blockCols + (x - left)` holds input `(ci, y·sh + ky·dh - ph, x·sw + kx·dw - pw)`
    /// for output pixels `y ∈ rows`, `x ∈ xs`; zero elsewhere (outside the input or the output).
    private func im2col(
        _ input: Tensor, channels: Range<Int>, top: Int, left: Int, rows: Range<Int>,
        xs: Range<Int>, blockRows: Int, into col: UnsafeMutablePointer<Float>
    ) {
        let (kh, kw) = (conv.kernel.h, conv.kernel.w)
        let (sh, sw) = (conv.stride.h, conv.stride.w)
        let (dh, dw) = (conv.dilation.h, conv.dilation.w)
        let (ph, pw) = (conv.pad.h, conv.pad.w)
        let (inH, inW) = (input.h, input.w)
        let bw = Self.blockCols, nb = blockRows * bw
        let full = rows.count == blockRows && xs.count == bw
        if !full { col.update(repeating: 0, count: nb * channels.count * kh * kw) }
        var r = 0
        for ci in channels {
            let src = input.plane(ci)
            for ky in 0..<kh {
                for kx in 0..<kw {
                    let x0 = kx * dw - pw
                    // Output columns of this block whose input column lies inside the image.
                    let xLo = max(xs.lowerBound, x0 >= 0 ? 0 : (-x0 + sw - 1) / sw)
                    let xHi = min(xs.upperBound, x0 >= inW ? 0 : (inW - 1 - x0) / sw + 1)
                    for y in rows {
                        let dst = col + r * nb + (y - top) * bw - left
                        let iy = y * sh + ky * dh - ph
                        guard iy >= 0, iy < inH, xHi > xLo else {
                            if full { (dst + xs.lowerBound).update(repeating: 0, count: xs.count) }
                            continue
                        }
                        let srcRow = src + iy * inW
                        if full && xLo > xs.lowerBound {
                            (dst + xs.lowerBound).update(repeating: 0, count: xLo - xs.lowerBound)
                        }
                        if sw == 1 {
                            (dst + xLo).update(from: srcRow + x0 + xLo, count: xHi - xLo)
                        } else {
                            var ix = x0 + xLo * sw
                            for x in xLo..<xHi {
                                dst[x] = srcRow[ix]
                                ix += sw
                            }
                        }
                        if full && xHi < xs.upperBound {
                            (dst + xHi).update(repeating: 0, count: xs.upperBound - xHi)
                        }
                    }
                    r += 1
                }
            }
        }
    }
}
