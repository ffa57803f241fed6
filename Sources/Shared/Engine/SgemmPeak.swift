import Dispatch

/// This machine's sgemm throughput, the yardstick engine speed is reported against.
package enum SgemmPeak {
    /// Best GFLOP/s of a few 2048×2048×2048 products with OpenBLAS on `threads` threads.
    package static func measure(threads: Int, size n: Int = 2048, repeats: Int = 3) throws -> Double {
        let blas = try BLAS.get()
        let saved = blas.threads
        blas.threads = threads
        defer { blas.threads = saved }
        var a = [Float](repeating: 0, count: n * n), b = a, c = a
        for i in 0..<(n * n) {
            a[i] = Float(i % 7) * 0.1
            b[i] = Float(i % 5) * 0.1
        }
        var best = Double.infinity
        for _ in 0..<(repeats + 1) {  // the first run warms up
            let start = DispatchTime.now()
            c.withUnsafeMutableBufferPointer { pc in
                blas.sgemm(m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, c: pc.baseAddress!, ldc: n)
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
        }
        return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
    }
}
