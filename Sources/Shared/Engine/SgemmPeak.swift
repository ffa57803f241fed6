import Dispatch
import TesseraCore

/// This machine's sgemm throughput, the yardstick engine speed is reported against.
package enum SgemmPeak {
    /// Best GFLOP/s of a few 2048×2048×2048 products with OpenBLAS on `threads` threads.
    package static func measure(threads: Int, size n: Int = 2048, repeats: Int = 3) throws -> Double {
        try measureWithCPUTime(threads: threads, size: n, repeats: repeats).wall
    }

    /// The same products, reported two ways: GFLOP per wall-clock second (`wall`) and per
    /// CPU-second of the process (`perCPUSecond`, the best run each), the latter steadier
    /// on a machine other work shares.
    package static func measureWithCPUTime(
        threads: Int, size n: Int = 2048, repeats: Int = 3
    ) throws -> (wall: Double, perCPUSecond: Double) {
        let blas = try BLAS.get()
        let saved = blas.threads
        blas.threads = threads
        defer { blas.threads = saved }
        var a = [Float](repeating: 0, count: n * n), b = a, c = a
        for i in 0..<(n * n) {
            a[i] = Float(i % 7) * 0.1
            b[i] = Float(i % 5) * 0.1
        }
        var best = Double.infinity, bestCPU = Double.infinity
        for run in 0..<(repeats + 1) {  // the first run warms up
            let start = DispatchTime.now(), cpu = ResourceUsage.cpuSeconds()
            c.withUnsafeMutableBufferPointer { pc in
                blas.sgemm(m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, c: pc.baseAddress!, ldc: n)
            }
            if run == 0 { continue }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
            bestCPU = min(bestCPU, ResourceUsage.cpuSeconds() - cpu)
        }
        let flop = 2 * Double(n) * Double(n) * Double(n)
        return (flop / best / 1e9, flop / max(bestCPU, 1e-9) / 1e9)
    }
}
