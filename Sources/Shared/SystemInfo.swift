import CLibPNG
import CZeroMQ

/// Versions of the C libraries and the BLAS kernel, for `info` and start-up logs.
public enum SystemInfo {
    public static var zmqVersion: String {
        var major: CInt = 0, minor: CInt = 0, patch: CInt = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    public static var pngVersion: String {
        guard let v = png_get_libpng_ver(nil) else { return "unknown" }
        return String(cString: v)
    }

    /// One line per component; throws when OpenBLAS cannot be loaded.
    public static func lines() throws -> [String] {
        let blas = try BLAS.get()
        return [
            "libzmq      \(zmqVersion)",
            "libpng      \(pngVersion)",
            "OpenBLAS    \(blas.libraryPath), kernel \(blas.coreName) (\(blas.coreChoice)), \(blas.threads) threads",
            "CPU         \(CPUFeatures.current.modelName)",
            "CUDA        \(cudaLine)",
        ]
    }

    /// GPU 0 as `--device cuda` would use it, or why it cannot.
    static var cudaLine: String {
        do { return try CUDAContext.get(device: 0).summary } catch { return "not available: \(error)" }
    }
}
