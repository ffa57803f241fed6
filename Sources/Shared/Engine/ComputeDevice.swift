import TesseraCore
import TesseraModel

/// Arithmetic a GPU backend may use for convolutions. `fp32` is exact IEEE
/// single precision (no tensor cores); `tf32` lets cuDNN/cuBLAS use TF32 tensor
/// cores (10-bit mantissa inputs: the demo map moved by 1.6e-3 on an H100).
package enum CUDAPrecision: String, Sendable, CaseIterable {
    case fp32, tf32
}

/// Where an engine computes: this machine's CPU cores (OpenBLAS) or a CUDA GPU.
package enum ComputeDevice: Hashable, Sendable, CustomStringConvertible {
    case cpu
    case cuda(index: Int, precision: CUDAPrecision)

    /// Parses `cpu`, `cuda` or `cuda:N` (the `--device` flag).
    package init(parsing text: String, precision: CUDAPrecision = .fp32) throws {
        let t = text.lowercased()
        if t == "cpu" {
            self = .cpu
        } else if t == "cuda" {
            self = .cuda(index: 0, precision: precision)
        } else if t.hasPrefix("cuda:"), let n = Int(t.dropFirst(5)), n >= 0 {
            self = .cuda(index: n, precision: precision)
        } else {
            throw EngineError(
                .invalidDevice, "unknown device \"\(text)\": use cpu, cuda or cuda:N (N = GPU index)")
        }
    }

    /// The most compute pipelines one worker process runs (`devices(parsing:)`).
    package static let maxPipelines = 64

    /// Parses a worker's `--device`: one device, or a comma-separated list of them, one
    /// compute pipeline each (a device named twice gets two pipelines); `cuda:all` is
    /// every GPU the process sees.
    /// `gpuCount` answers how many GPUs `cuda:all` means (the driver by default; a
    /// syntax check before the driver is loaded passes `{ 1 }`).
    package static func devices(
        parsing text: String, precision: CUDAPrecision = .fp32,
        gpuCount: () throws -> Int = { try GPUBackends.current().deviceCount() }
    ) throws -> [ComputeDevice] {
        var devices: [ComputeDevice] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let t = item.trimmingCharacters(in: .whitespaces)
            if t.lowercased() == "cuda:all" {
                let count = try gpuCount()
                guard count > 0 else {
                    throw EngineError(
                        .invalidDevice, "cuda:all: no CUDA device is visible (check CUDA_VISIBLE_DEVICES)")
                }
                devices += (0..<count).map { .cuda(index: $0, precision: precision) }
            } else if let device = try? ComputeDevice(parsing: t, precision: precision) {
                devices.append(device)
            } else {
                throw EngineError(
                    .invalidDevice,
                    "unknown device \"\(t)\" in --device \"\(text)\": use cpu, cuda or cuda:N (N = GPU index), "
                        + "cuda:all, or a comma-separated list of them")
            }
        }
        guard devices.count <= maxPipelines else {
            throw EngineError(
                .invalidDevice, "\(devices.count) compute pipelines asked for (\(text)): at most \(maxPipelines)")
        }
        return devices
    }

    package var description: String {
        switch self {
        case .cpu: return "cpu"
        case .cuda(let i, let p): return p == .fp32 ? "cuda:\(i)" : "cuda:\(i) (\(p.rawValue))"
        }
    }

    /// `naive` on this device when it is a GPU (`PatchMapper`); nil on the CPU, where
    /// `MapEngine` runs its own `BatchedClassifier`.
    func patchMapper(_ net: Net, patch: Size2) throws -> (any PatchMapper)? {
        guard case .cuda(let index, let precision) = self else { return nil }
        return try GPUBackends.current().patchMapper(net, patch: patch, device: index, precision: precision)
    }

    /// A runner for `net` on this device.
    /// `packing`: packed weights shared with the engine's other CPU runners.
    func executor(_ net: Net, lrnDilation: [Size2]? = nil, packing: PackedWeights? = nil) throws -> any NetExecutor {
        switch self {
        case .cpu: return try NetRunner(net: net, lrnDilation: lrnDilation, packing: packing)
        case .cuda(let i, let p):
            return try GPUBackends.current().executor(net, lrnDilation: lrnDilation, device: i, precision: p)
        }
    }

    /// Bytes of activations one tile may use: CPU from `cpuBudget`; a GPU's from its
    /// backend (`GPUBackend.tileMemoryBudget`: a share of its free memory).
    package func tileMemoryBudget(cpuBudget: Int) throws -> Int {
        switch self {
        case .cpu: return cpuBudget
        case .cuda(let i, _): return try GPUBackends.current().tileMemoryBudget(device: i)
        }
    }
}
