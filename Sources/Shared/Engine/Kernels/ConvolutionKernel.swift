/// Convolution as im2col + sgemm (Caffe's method), computed in bands of output
/// rows so the column buffer stays within a fixed budget however large the
/// input is; bands run in parallel, each with a single-threaded sgemm.
/// 1×1 stride-1 unpadded convolutions skip im2col and multiply the input directly.
struct ConvolutionKernel {
    let conv: Convolution
    /// Column-buffer budget per thread, in floats.
    static let bandBudget = 1 << 21

    func forward(_ input: Tensor, into output: Tensor, threads: Int, blas: BLAS) {
        let g = conv.group
        let cg = input.c / g, mg = conv.outputs / g
        let (kh, kw) = (conv.kernel.h, conv.kernel.w)
        let k = cg * kh * kw
        let outPlane = output.planeSize
        conv.weights.withUnsafeBufferPointer { wts in
            let pointwise = kh == 1 && kw == 1 && conv.stride == .one && conv.pad == .zero
            if pointwise {
                // B is the input itself: K = input channels, N = pixels.
                let bandPixels = max(256, Self.bandBudget / max(1, k))
                let bands = (outPlane + bandPixels - 1) / bandPixels
                parallelRanges(bands * g, threads: threads) { items in
                    for item in items {
                        let grp = item % g, band = item / g
                        let p0 = band * bandPixels, n = min(bandPixels, outPlane - p0)
                        blas.sgemm(m: mg, n: n, k: k, a: wts.baseAddress! + grp * mg * k, lda: k,
                                   b: input.plane(grp * cg) + p0, ldb: input.planeSize,
                                   c: output.plane(grp * mg) + p0, ldc: outPlane)
                        addBias(output, channels: grp * mg..<(grp + 1) * mg, pixels: p0..<p0 + n)
                    }
                }
                return
            }
            let rowsPerBand = max(1, min(output.h, Self.bandBudget / max(1, k * output.w)))
            let bands = (output.h + rowsPerBand - 1) / rowsPerBand
            parallelRanges(bands, threads: threads) { bandRange in
                let col = UnsafeMutablePointer<Float>.allocate(capacity: k * rowsPerBand * output.w)
                defer { col.deallocate() }
                for band in bandRange {
                    let y0 = band * rowsPerBand, y1 = min(output.h, y0 + rowsPerBand)
                    let n = (y1 - y0) * output.w
                    for grp in 0..<g {
                        im2col(input, channels: grp * cg..<(grp + 1) * cg, rows: y0..<y1,
                               outWidth: output.w, into: col)
                        blas.sgemm(m: mg, n: n, k: k, a: wts.baseAddress! + grp * mg * k, lda: k,
                                   b: col, ldb: n, c: output.plane(grp * mg) + y0 * output.w, ldc: outPlane)
                        addBias(output, channels: grp * mg..<(grp + 1) * mg,
                                pixels: y0 * output.w..<y1 * output.w)
                    }
                }
            }
        }
    }

    private func addBias(_ output: Tensor, channels: Range<Int>, pixels: Range<Int>) {
        guard let bias = conv.bias else { return }
        for ch in channels {
            let b = bias[ch]
            let p = output.plane(ch)
            for i in pixels { p[i] += b }
        }
    }

    /// Column matrix for output rows `rows`: row `(ci·kh + ky)·kw + kx`, column
    /// `(y - rows.lowerBound)·outWidth + x` holds input `(ci, y·sh + ky·dh - ph, x·sw + kx·dw - pw)`,
    /// zero outside the input.
    private func im2col(_ input: Tensor, channels: Range<Int>, rows: Range<Int>, outWidth: Int,
                        into col: UnsafeMutablePointer<Float>) {
        let (kh, kw) = (conv.kernel.h, conv.kernel.w)
        let (sh, sw) = (conv.stride.h, conv.stride.w)
        let (dh, dw) = (conv.dilation.h, conv.dilation.w)
        let (ph, pw) = (conv.pad.h, conv.pad.w)
        let (inH, inW) = (input.h, input.w)
        let n = rows.count * outWidth
        var r = 0
        for ci in channels {
            let src = input.plane(ci)
            for ky in 0..<kh {
                for kx in 0..<kw {
                    var dst = col + r * n
                    let x0 = kx * dw - pw
                    // Output columns whose input column lies inside the image.
                    let xLo = x0 >= 0 ? 0 : min(outWidth, (-x0 + sw - 1) / sw)
                    let xHi = max(xLo, min(outWidth, x0 >= inW ? 0 : (inW - 1 - x0) / sw + 1))
                    for y in rows {
                        let iy = y * sh + ky * dh - ph
                        if iy < 0 || iy >= inH {
                            dst.update(repeating: 0, count: outWidth)
                        } else {
                            let srcRow = src + iy * inW
                            if xLo > 0 { dst.update(repeating: 0, count: xLo) }
                            if sw == 1 {
                                (dst + xLo).update(from: srcRow + x0 + xLo, count: xHi - xLo)
                            } else {
                                var ix = x0 + xLo * sw
                                for x in xLo..<xHi {
                                    dst[x] = srcRow[ix]
                                    ix += sw
                                }
                            }
                            if xHi < outWidth { (dst + xHi).update(repeating: 0, count: outWidth - xHi) }
                        }
                        dst += outWidth
                    }
                    r += 1
                }
            }
        }
    }
}
