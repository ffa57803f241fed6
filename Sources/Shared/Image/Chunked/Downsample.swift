import TesseraCore

/// The next pyramid level of one tile: each output pixel is the mean of the
/// 2×2 block below it, over the pixels that exist (an odd last row or column
/// averages 2 pixels, the corner 1). Done in Float on the unquantised values,
/// level by level from the previous one, with a fixed summation order
/// ((a + b) + (c + d)) × 0.25 so that NumPy's float32 arithmetic reproduces it
/// bit for bit. Quantisation to the store's dtype happens after, once per level,
/// so integer levels do not accumulate rounding from the levels above.
///
/// Because tiles start at multiples of 2^(levels−1), blocks never straddle
/// tiles: per-tile downsampling equals downsampling the whole image.
func downsample(_ s: UnsafeBufferPointer<Float>, classes: Int, height h: Int, width w: Int) -> [Float] {
    let h2 = (h + 1) / 2, w2 = (w + 1) / 2
    let fullRows = h / 2, fullColumns = w / 2
    var out = [Float](repeating: 0, count: classes * h2 * w2)
    out.withUnsafeMutableBufferPointer { o in
        for c in 0..<classes {
            let plane = c * h * w, outPlane = c * h2 * w2
            for oy in 0..<h2 {
                let r0 = plane + 2 * oy * w
                let dst = outPlane + oy * w2
                if oy < fullRows {
                    let r1 = r0 + w
                    for ox in 0..<fullColumns {
                        let x = 2 * ox
                        o[dst + ox] = ((s[r0 + x] + s[r0 + x + 1]) + (s[r1 + x] + s[r1 + x + 1])) * 0.25
                    }
                    if w % 2 == 1 { o[dst + fullColumns] = (s[r0 + w - 1] + s[r1 + w - 1]) * 0.5 }
                } else {
                    for ox in 0..<fullColumns {
                        let x = 2 * ox
                        o[dst + ox] = (s[r0 + x] + s[r0 + x + 1]) * 0.5
                    }
                    if w % 2 == 1 { o[dst + fullColumns] = s[r0 + w - 1] }
                }
            }
        }
    }
    return out
}
