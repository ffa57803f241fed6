import TesseraCore
import TesseraEngine
import TesseraModel

/// The CUDA backend as the engine sees it: `ComputeDevice.cuda` runs on this once
/// an executable has called `CUDABackend.install()`.
package struct CUDABackend: GPUBackend {
    package init() {}

    /// Makes CUDA the engine's GPU backend (each executable calls this at start-up;
    /// nothing is loaded until a GPU is first used).
    package static func install() { GPUBackends.install(CUDABackend()) }

    package func executor(
        _ net: Net, lrnDilation: [Size2]?, device: Int, precision: CUDAPrecision
    ) throws
        -> any NetExecutor
    {
        try CUDANetRunner(
            net: net, lrnDilation: lrnDilation, context: CUDAContext.get(device: device),
            precision: precision)
    }

    package func freeMemory(device: Int) throws -> Int {
        try CUDAContext.get(device: device).memoryInfo().free
    }

    package func deviceCount() throws -> Int { try CUDAContext.deviceCount() }
}
