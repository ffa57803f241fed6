import TesseraCUDA
import TesseraEngine
import TesseraImage
import TesseraWire

/// Versions of the C libraries, the BLAS kernel and the GPU, for `info` and start-up logs.
package enum SystemInfo {
    /// One line per component; throws when OpenBLAS cannot be loaded.
    package static func lines() throws -> [String] {
        let blas = try BLAS.get()
        return [
            "Tessera     \(TesseraVersion.description)",
            "libzmq      \(ZMQContext.libraryVersion)",
            "libpng      \(PNGReader.libraryVersion)",
            "OpenBLAS    \(blas.libraryPath), kernel \(blas.coreName) (\(blas.coreChoice)), \(blas.threads) threads",
            "CPU         \(CPUFeatures.current.modelName)",
            "Direct conv \(DirectConvolutionKernel.selected?.rawValue ?? "none (im2col + sgemm)") (TESSERA_DIRECT_CONV=avx2|avx512|0)",
            "CUDA        \(cudaLine)",
        ]
    }

    /// GPU 0 as `--device cuda` would use it, or why it cannot.
    static var cudaLine: String {
        do { return try CUDAContext.get(device: 0).summary } catch { return "not available: \(error)" }
    }
}
