import Foundation
import Testing

@testable import TesseraImage
@testable import TestSupport

/// The CUDA backend's own code on an emulated GPU (`Tests/EmulatedCUDA/emulated_cuda.c`:
/// libcuda, NVRTC, cuDNN and cuBLAS implemented on the CPU), so that what only a lent
/// GPU could run before (argument marshalling, batches, plans, fragments, transfer
/// lanes, the im2col path, pipelines per GPU) runs on every CI machine. What this
/// cannot show: speed, real cuDNN algorithms, and races between streams (the emulation
/// is synchronous); `scripts/device-check.sh` on a GPU does.
@Suite(
    "Emulated GPU: the CUDA backend against the CPU engine", .enabled(if: EmulatedGPU.supported), .serialized)
struct EmulatedGPUTests {
    /// Each backend path: the default, dilated convolutions through fragments, transfer
    /// lanes, im2col + cuBLAS, cuDNN's measured algorithms with naive in batches of 7
    /// (a task's last batch topped up) on a machine without cuBLAS (InnerProduct's kernel);
    /// transfer lanes also with a cuBLAS that loads but cannot start (the same kernel).
    static let variants: [[String: String]] = [
        [:], ["TESSERA_CUDA_DILATED": "fragments"],
        ["TESSERA_CUDA_OVERLAP": "1", "TESSERA_EMULATED_CUBLAS_CREATE": "fail"], ["TESSERA_CUDA_CONV": "gemm"],
        ["TESSERA_CUDNN_ALGO": "find", "TESSERA_CUDA_NAIVE_BATCH": "7", EmulatedGPU.cuBLASKey: "absent"],
    ]

    /// `gpu-check`: every fixture net's patches and naive/dense/shift/fast maps, a crop of
    /// the demo in naive/dense/shift, byte-identity twice and from two threads.
    @Test("gpu-check passes on the emulated GPU on every backend path", arguments: variants)
    func gpuCheck(_ variant: [String: String]) throws {
        let group = try ProcessGroup("emulated-gpu-check")
        defer { group.stop() }
        let p = try group.start(
            "tessera-coordinator",
            [
                "gpu-check", "--device", "cuda", "--fixtures", TestPaths.fixtures.path,
                "--demo", TestPaths.packageRoot.appendingPathComponent("models/demo").path,
                "--demo-image", TestPaths.packageRoot.appendingPathComponent("examples/ihc.png").path,
                "--demo-crop", "40",
            ], log: "gpu-check", environment: try EmulatedGPU.environment(variant))
        let status = group.wait(p, timeout: 300)
        let log = group.log("gpu-check")
        #expect(status == 0, "\(variant): \(log)")
        #expect(log.contains("device: cuda:0 Tessera emulated GPU 0"), "\(log)")
        let noCuBLAS = variant[EmulatedGPU.cuBLASKey] == "absent" || variant["TESSERA_EMULATED_CUBLAS_CREATE"] != nil
        #expect(log.contains("no cuBLAS") == noCuBLAS, "\(log)")
        if variant["TESSERA_EMULATED_CUBLAS_CREATE"] != nil {
            #expect(log.contains("cublasCreate"), "the reason names the call that failed: \(log)")
        }
        #expect(log.contains("gpu-check: all checks passed"), "\(log)")
        let passed = log.split(separator: "\n").filter { $0.hasPrefix("PASS ") }
        #expect(!log.contains("FAIL") && passed.count >= 40, "\(passed.count) checks passed: \(log)")
        for mode in ["naive", "dense", "shift", "fast"] {
            #expect(passed.contains { $0.contains("\(mode) map, GPU vs CPU") }, "\(mode) checked: \(log)")
        }
    }

    /// A worker with one pipeline per emulated GPU (`cuda:all`, two of them) maps an upload
    /// job: its tiles equal the in-process GPU run's byte for byte, and the CPU engine's to 1e-4.
    @Test("A worker on two emulated GPUs (cuda:all): the GPU map, byte for byte", arguments: ["dense", "naive"])
    func cluster(_ mode: String) throws {
        let group = try ProcessGroup("emulated-gpu-cluster")
        defer { group.stop() }
        let environment = try EmulatedGPU.environment(["TESSERA_EMULATED_GPUS": "2"])
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 60, width: 70)
        let run = try group.start(
            "tessera-coordinator",
            ["run", "--in-process", "--device", "cuda"] + ClusterFixture.modelFlags
                + [
                    "--mode", mode, "--tile", "\(ClusterFixture.tile)", "--outputs", "npy", "--out",
                    group.directory + "/in-process", image,
                ], log: "run", environment: environment)
        #expect(group.wait(run, timeout: 120) == 0, "\(group.log("run"))")

        let (workers, clients) = try group.startCoordinator()
        try group.start(
            "tessera-worker", ["--coordinator", workers, "--threads", "1", "--name", "box", "--device", "cuda:all"],
            log: "box", environment: environment)
        let client = try group.submitFixture(
            clients, image: image, out: group.directory + "/out", mode: .init(rawValue: mode)!, log: "client")
        #expect(group.wait(client, timeout: 120) == 0, "\(group.log("client"))\n\(group.log("box"))")
        let cluster = ClusterFixture.bytes(group.directory + "/out/tissue.npy")
        #expect(cluster != nil && cluster == ClusterFixture.bytes(group.directory + "/in-process/tissue.npy"))
        let log = group.log("coordinator")
        for pipeline in ["box-0", "box-1"] {
            #expect(log.contains("worker=\(pipeline) workers="), "\(pipeline) joined: \(log)")
        }
        #expect(group.log("box").contains("emulated GPU 1"), "a pipeline on GPU 1: \(group.log("box"))")

        let cpu = try NPY.read(
            path: group.directory + "/cpu.npy",
            orWrite: ClusterFixture.localNPY(
                image: image, mode: .init(rawValue: mode)!, scratch: group.directory))
        let gpu = try NPY.read(path: group.directory + "/out/tissue.npy")
        #expect(gpu.shape == cpu.shape)
        let diff = zip(gpu.data, cpu.data).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(diff <= 1e-4 && !diff.isNaN, "max |GPU − CPU| \(diff)")
    }
}

extension EmulatedGPUTests {
    /// A tile too large for the GPU's memory (48 MiB here) fails with what does not fit,
    /// where, and what to do; not a bare driver error.
    @Test("A tile too large for the GPU's memory: a clear error naming the input, the device and --tile")
    func outOfMemory() throws {
        let group = try ProcessGroup("emulated-gpu-oom")
        defer { group.stop() }
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 600, width: 600)
        let run = try group.start(
            "tessera-coordinator",
            ["run", "--in-process", "--device", "cuda"] + ClusterFixture.modelFlags
                + ["--mode", "dense", "--tile", "600", "--outputs", "npy", "--out", group.directory + "/out", image],
            log: "run", environment: try EmulatedGPU.environment(["TESSERA_EMULATED_GPU_MEMORY_MIB": "48"]))
        let status = group.wait(run, timeout: 120)
        let log = group.log("run")
        #expect(status != nil && status != 0, "\(log)")
        for needle in ["input does not fit on cuda:0", "MiB free of 48 MiB", "use a smaller --tile"] {
            #expect(log.contains(needle), "\(needle) in: \(log)")
        }
        #expect(!log.contains("Fatal error") && !log.contains("Backtrace"), "\(log)")
    }
}

extension NPY {
    /// `bytes` written to `path`, read back.
    fileprivate static func read(path: String, orWrite bytes: [UInt8]) throws -> FloatArray {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return try read(path: path)
    }
}
