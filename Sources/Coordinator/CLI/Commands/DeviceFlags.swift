import ArgumentParser
import TesseraEngine

/// `--device` and `--precision`: where the engine computes the maps.
struct DeviceFlags: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Where tiles are computed: cpu, cuda or cuda:N (GPU N). CUDA needs the NVIDIA driver, "
                + "NVRTC and cuDNN or cuBLAS at run time (found via TESSERA_CUDA_LIBRARY_PATH, "
                + "/usr/local/cuda/lib64 or the loader path). On a GPU, naive runs the classifier on thousands "
                + "of patches per call.",
            valueName: "device"))
    var device = "cpu"
    @Option(help: precisionHelp) var precision = "fp32"

    static let precisionHelp = ArgumentHelp(
        "GPU arithmetic: fp32 (IEEE single precision, the default) or tf32 (tensor cores, ~2× faster; "
            + "maps within 1e-2 of fp32: 1.6e-3 measured on the demo).", valueName: "precision")

    func validate() throws { try Self.validate(device: device, precision: precision) }

    func resolve() throws -> ComputeDevice { try Self.resolve(device: device, precision: precision) }

    static func validate(device: String, precision: String) throws {
        guard CUDAPrecision(rawValue: precision) != nil else {
            throw ValidationError("--precision must be fp32 or tf32")
        }
        do { _ = try ComputeDevice(parsing: device) } catch { throw ValidationError("\(error)") }
    }

    static func resolve(device: String, precision: String) throws -> ComputeDevice {
        try ComputeDevice(parsing: device, precision: CUDAPrecision(rawValue: precision) ?? .fp32)
    }
}
