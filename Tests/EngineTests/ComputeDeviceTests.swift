import Foundation
import Testing

@testable import TesseraCUDA
@testable import TesseraEngine
@testable import TesseraModel
@testable import TestSupport

/// `--device` parsing, and what a CUDA device does on a machine without one. The
/// GPU numerics themselves are checked on a GPU machine by `gpu-check`
/// (scripts/device-check.sh); this machine has no NVIDIA driver.
@Suite("Compute device")
struct ComputeDeviceTests {
    @Test("cpu, cuda and cuda:N parse; anything else is refused with the accepted forms")
    func parsing() throws {
        #expect(try ComputeDevice(parsing: "cpu") == .cpu)
        #expect(try ComputeDevice(parsing: "CUDA") == .cuda(index: 0, precision: .fp32))
        #expect(try ComputeDevice(parsing: "cuda:3", precision: .tf32) == .cuda(index: 3, precision: .tf32))
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", "", "cuda:1:2"] {
            let error = #expect(throws: EngineError.self) { try ComputeDevice(parsing: bad) }
            #expect(error?.kind == .invalidDevice)
            #expect(error?.description.contains("cpu, cuda or cuda:N") == true, "\(bad): \(String(describing: error))")
        }
    }

    @Test("Without an NVIDIA driver, a CUDA engine fails with the library it could not load")
    func missingDriver() throws {
        guard dlopen("libcuda.so.1", RTLD_NOW) == nil else { return }  // a GPU machine: gpu-check covers it
        CUDABackend.install()
        let error = #expect(throws: CUDAError.self) {
            _ = try MapEngine(classifier: TestNets.seedLike, device: .cuda(index: 0, precision: .fp32))
        }
        let text = error?.description ?? ""
        #expect(error?.kind == .library)
        #expect(text.contains("libcuda") && text.contains("TESSERA_CUDA_LIBRARY_PATH"), "\(text)")
    }

    @Test("The kernel source names every kernel the runner launches")
    func kernelNames() {
        for name in CUDAKernelSource.names {
            #expect(CUDAKernelSource.code.contains("__global__ void \(name)("), "\(name) missing from the source")
        }
    }

    @Test("CUDA libraries of a newer major than the driver's are tried last, not dropped")
    func libraryOrderFollowsTheDriver() {
        let names = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"]
        #expect(
            DynamicLibrary.preferring(names, driverMajor: 12)
                == ["libcublas.so.12", "libcublas.so.11", "libcublas.so", "libcublas.so.13"])
        #expect(DynamicLibrary.preferring(names, driverMajor: 13) == names)
        #expect(DynamicLibrary.preferring(names, driverMajor: nil) == names)
        #expect(
            DynamicLibrary.preferring(["libnvrtc.so.13", "libnvrtc.so.11.2"], driverMajor: 11)
                == ["libnvrtc.so.11.2", "libnvrtc.so.13"])
    }
}
