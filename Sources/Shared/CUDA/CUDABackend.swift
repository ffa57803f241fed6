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

    package func patchMapper(
        _ net: Net, patch: Size2, device: Int, precision: CUDAPrecision
    ) throws
        -> any PatchMapper
    {
        try CUDAPatchMapper(net: net, patch: patch, context: CUDAContext.get(device: device), precision: precision)
    }

    /// 40 % of the free memory (the rest for cuDNN's workspace), 20 % when dilated
    /// convolutions run through fragments (which hold such a layer's input and output a
    /// second time), and at most 8 GiB, so that no activation reaches cuDNN's 2³¹-element limit.
    package func tileMemoryBudget(device: Int) throws -> Int {
        let free = try CUDAContext.get(device: device).memoryInfo().free
        return min(FragmentGeometry.enabled ? free / 5 : free / 5 * 2, 8 << 30)
    }

    package func deviceCount() throws -> Int { try CUDAContext.deviceCount() }
}
