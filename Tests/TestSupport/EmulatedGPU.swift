import Foundation

/// The emulated GPU's libraries, compiled once per test process.
enum EmulatedGPU {
    /// x86-64 only (the emulation calls kernels by the System V calling convention).
    static var supported: Bool {
        #if arch(x86_64) && os(Linux)
        return true
        #else
        return false
        #endif
    }

    /// A folder holding the library under the four names the backend opens.
    static let folder: Result<String, EmulationError> = {
        let source = TestPaths.packageRoot.appendingPathComponent("Tests/EmulatedCUDA/emulated_cuda.c").path
        do {
            let dir = try ProcessScratch.folder("tessera-emulated-gpu-")
            var failures: [String] = []
            for compiler in ["cc", "gcc", "clang"] {
                let (status, output) = try runCommand([
                    compiler, "-O3", "-shared", "-fPIC", "-o", dir + "/libemulatedcuda.so", source, "-ldl",
                ])
                if status == 0 {
                    for name in ["libcuda.so.1", "libnvrtc.so", "libcudnn.so.9", "libcublas.so"] {
                        try FileManager.default.createSymbolicLink(
                            atPath: dir + "/" + name, withDestinationPath: "libemulatedcuda.so")
                    }
                    return .success(dir)
                }
                failures.append("\(compiler): exit \(status): \(output.prefix(2000))")
            }
            return .failure(EmulationError(text: failures.joined(separator: "\n")))
        } catch {
            return .failure(EmulationError(text: "\(error)"))
        }
    }()

    struct EmulationError: Error, CustomStringConvertible { let text: String; var description: String { text } }

    /// The same libraries without cuBLAS (a machine with cuDNN only).
    static let folderWithoutCuBLAS: Result<String, EmulationError> = {
        do {
            let full = try folder.get()
            let dir = full + "/without-cublas"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for name in ["libcuda.so.1", "libnvrtc.so", "libcudnn.so.9"] {
                try FileManager.default.createSymbolicLink(
                    atPath: dir + "/" + name, withDestinationPath: full + "/libemulatedcuda.so")
            }
            return .success(dir)
        } catch let error as EmulationError {
            return .failure(error)
        } catch {
            return .failure(EmulationError(text: "\(error)"))
        }
    }()

    /// Not an environment variable: in `environment(_:)`'s `extra`, "absent" hides cuBLAS.
    static let cuBLASKey = "EMULATED_CUBLAS"

    /// The environment that makes a child process's `--device cuda` the emulated GPU.
    static func environment(_ extra: [String: String] = [:]) throws -> [String: String] {
        var extra = extra
        let libraries = extra.removeValue(forKey: cuBLASKey) == "absent" ? folderWithoutCuBLAS : folder
        return ["TESSERA_CUDA_LIBRARY_PATH": try libraries.get()].merging(extra) { $1 }
    }
}
