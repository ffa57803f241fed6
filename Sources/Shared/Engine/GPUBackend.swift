import Foundation
import TesseraCore
import TesseraModel

/// A GPU library the engine can run nets on. The engine names no GPU library
/// itself: the CUDA module provides a backend and each executable installs it at
/// start-up (`GPUBackends.install`), so the engine builds, links and tests without it.
package protocol GPUBackend: Sendable {
    /// A runner for `net` on GPU `device`, with the same contract as the CPU `NetRunner`.
    func executor(_ net: Net, lrnDilation: [Size2]?, device: Int, precision: CUDAPrecision) throws -> any NetExecutor
    /// `naive` on GPU `device`: the patch classifier `net` on batches of `patch`-sized patches.
    func patchMapper(_ net: Net, patch: Size2, device: Int, precision: CUDAPrecision) throws -> any PatchMapper
    /// Bytes one tile's activations (a layer's input and output, `ModelPlan.activationBytes`)
    /// may take on GPU `device`: a share of its free memory that leaves room for what the
    /// backend allocates beside them (workspaces, copies).
    func tileMemoryBudget(device: Int) throws -> Int
    /// How many GPUs this process can see (`cuda:all`).
    func deviceCount() throws -> Int
}

/// The `naive` map of a task computed on a GPU: the patch classifier on every pixel's
/// patch, many patches per call (the CPU's counterpart is `BatchedClassifier`).
package protocol PatchMapper: AnyObject, Sendable {
    /// The `classes × size.h × size.w` map whose pixel `(y, x)` is the classifier's output
    /// for the patch of `input` with its top-left corner at `(y, x)` (`input` is at least
    /// `size` plus the patch less one pixel, on each axis).
    func naiveMap(_ input: Tensor, size: Size2) throws -> Tensor
}

/// The installed GPU backend (at most one per process).
package enum GPUBackends {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var installed: (any GPUBackend)?

    /// Makes `backend` the one `ComputeDevice.cuda` runs on.
    package static func install(_ backend: any GPUBackend) {
        lock.withLock { installed = backend }
    }

    /// The installed backend, or an error saying that this program has none.
    package static func current() throws -> any GPUBackend {
        guard let backend = lock.withLock({ installed }) else {
            throw EngineError(
                .noGPUBackend, "this program was built without a GPU backend: --device cuda is not available")
        }
        return backend
    }
}
