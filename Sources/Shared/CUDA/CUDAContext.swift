import Foundation
import TesseraEngine
import TesseraModel

/// One CUDA device as the engine uses it: the libraries, the device's primary
/// context, one stream, the compiled kernels, a cache of device buffers, pinned
/// host buffers for transfers, and the cuDNN / cuBLAS handles. One per device
/// per process (`CUDAContext.get(device:)`); every use goes through `exclusive`,
/// so runners on several threads share it safely.
package final class CUDAContext: @unchecked Sendable {
    let driver: CUDADriver
    let nvrtc: NVRTC
    /// nil when cuDNN is missing or `TESSERA_CUDA_CONV=gemm`: convolutions then use im2col + cuBLAS.
    let cudnn: CuDNN?
    let cublas: CuBLAS?
    /// Why there is no cuBLAS, when there is none.
    let cublasMissing: String?
    package let deviceIndex: Int
    package let deviceName: String
    package let computeCapability: (major: Int, minor: Int)
    let context: CUHandle
    let stream: CUHandle
    var cudnnHandle: CUHandle = nil
    var cublasHandle: CUHandle = nil
    private var functions: [String: CUHandle] = [:]
    let pool: DeviceMemoryPool
    private let lock = NSLock()
    /// Pinned host staging for uploads and downloads, grown on demand.
    private var pinned: UnsafeMutableRawPointer?
    private var pinnedBytes = 0

    var usesCuDNN: Bool { cudnn != nil }

    /// cuBLAS sgemm throughput on this device (n×n×n, fp32 without tensor cores,
    /// best of 5 after a warm-up), in GFLOP/s: the benchmark's GPU reference.
    package func sgemmPeak(n: Int = 8192) throws -> Double {
        guard let blas = cublas else { throw CUDAError(.library, "no cuBLAS: cannot measure the sgemm peak") }
        return try exclusive {
            let bytes = n * n * 4
            let a = try pool.allocate(bytes), b = try pool.allocate(bytes), c = try pool.allocate(bytes)
            defer { [a, b, c].forEach { pool.release($0, bytes: bytes) } }
            var one: Float = 1, zero: Float = 0
            var best = Double.infinity
            for r in 0..<6 {
                try synchronize()
                let start = DispatchTime.now()
                try blas.check(
                    blas.cublasSgemm(
                        cublasHandle, 0, 0, Int32(n), Int32(n), Int32(n), &one, a, Int32(n), b,
                        Int32(n), &zero, c, Int32(n)), "cublasSgemm")
                try synchronize()
                let t = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
                if r > 0 { best = min(best, t) }
            }
            return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
        }
    }

    /// What the log and `info` show: device, capability, libraries and convolution path.
    package var summary: String {
        let conv =
            usesCuDNN
            ? "cuDNN \(cudnn!.cudnnGetVersion()) (\(cudnn!.library.path))"
            : "im2col + cuBLAS (\(cublas?.library.path ?? "?"))"
        return "cuda:\(deviceIndex) \(deviceName), sm_\(computeCapability.major)\(computeCapability.minor), "
            + "convolutions: \(conv), NVRTC \(nvrtc.library.path)"
            + (cublasMissing.map { ", no cuBLAS (InnerProduct by a slower kernel): \($0.prefix(200))" } ?? "")
    }

    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var registry: [Int: CUDAContext] = [:]

    /// How many CUDA devices are visible (after `CUDA_VISIBLE_DEVICES`); no context is made.
    package static func deviceCount() throws -> Int {
        let driver = try CUDADriver()
        try driver.check(driver.cuInit(0), "cuInit")
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        return Int(count)
    }

    /// The process's context for device `index`, created on first use.
    package static func get(device index: Int) throws -> CUDAContext {
        registryLock.lock()
        defer { registryLock.unlock() }
        if let c = registry[index] { return c }
        let c = try CUDAContext(device: index)
        registry[index] = c
        return c
    }

    private init(device index: Int) throws {
        driver = try CUDADriver()
        try driver.check(driver.cuInit(0), "cuInit")
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard index >= 0 && index < Int(count) else {
            throw CUDAError(
                .device,
                count == 0
                    ? "no CUDA device is visible (check the driver and CUDA_VISIBLE_DEVICES)"
                    : "there is no CUDA device \(index): this machine has \(count) (0…\(count - 1))")
        }
        var device: Int32 = 0
        try driver.check(driver.cuDeviceGet(&device, Int32(index)), "cuDeviceGet(\(index))")
        var name = [CChar](repeating: 0, count: 256)
        try driver.check(driver.cuDeviceGetName(&name, 255, device), "cuDeviceGetName")
        deviceName = String(cString: name)
        var major: Int32 = 0, minor: Int32 = 0
        try driver.check(driver.cuDeviceGetAttribute(&major, 75, device), "cuDeviceGetAttribute(major)")
        try driver.check(driver.cuDeviceGetAttribute(&minor, 76, device), "cuDeviceGetAttribute(minor)")
        computeCapability = (Int(major), Int(minor))
        deviceIndex = index
        var ctx: CUHandle = nil
        try driver.check(driver.cuDevicePrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain")
        context = ctx
        try driver.check(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        var s: CUHandle = nil
        try driver.check(driver.cuStreamCreate(&s, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate")
        stream = s
        var driverVersion: Int32 = 0  // e.g. 12040 for CUDA 12.4
        let driverMajor = driver.cuDriverGetVersion(&driverVersion) == 0 ? Int(driverVersion) / 1000 : nil
        nvrtc = try NVRTC(driverMajor: driverMajor)
        pool = DeviceMemoryPool(driver: driver)
        let convPath = ProcessInfo.processInfo.environment["TESSERA_CUDA_CONV"] ?? "auto"
        guard ["auto", "cudnn", "gemm"].contains(convPath) else {
            throw CUDAError(.library, "TESSERA_CUDA_CONV must be auto, cudnn or gemm, not \(convPath)")
        }
        var cudnnError: Error?
        if convPath != "gemm" {
            do { cudnn = try CuDNN() } catch { cudnn = nil; cudnnError = error }
        } else {
            cudnn = nil
        }
        if convPath == "cudnn", let cudnnError { throw cudnnError }
        // cuBLAS: the convolutions' fallback, and the benchmark's sgemm peak.
        var cublasError: Error?
        var blas: CuBLAS?
        do { blas = try CuBLAS(driverMajor: driverMajor) } catch { cublasError = error }
        if let b = blas {
            var h: CUHandle = nil
            do {
                // A cuBLAS the driver cannot run fails here (e.g. a newer major than the driver's).
                try b.check(b.cublasCreate(&h), "cublasCreate (\(b.library.path))")
                try b.check(b.cublasSetStream(h, stream), "cublasSetStream")
                try b.check(b.cublasSetMathMode(h, CuBLAS.defaultMath), "cublasSetMathMode")
                cublasHandle = h
            } catch {
                blas = nil
                cublasError = error
            }
        }
        // With cuDNN, cuBLAS is optional (InnerProduct has a kernel): go on without it, and say why.
        cublas = blas
        cublasMissing = cublasError.map { "\($0)" }
        if cudnn == nil, let cublasError {
            throw CUDAError(
                .library, "convolutions need cuDNN or cuBLAS: \(cudnnError.map { "\($0); " } ?? "")\(cublasError)")
        }
        if let cudnn, convPath != "gemm" {
            var h: CUHandle = nil
            try cudnn.check(cudnn.cudnnCreate(&h), "cudnnCreate")
            try cudnn.check(cudnn.cudnnSetStream(h, stream), "cudnnSetStream")
            cudnnHandle = h
        }
        try compileKernels()
    }

    /// Makes this context current on the calling thread (outside `exclusive`: `TransferLane`).
    func makeCurrent() throws {
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    }

    /// Lanes not in use (`withLane`).
    private var idleLanes: [TransferLane] = []
    private let laneLock = NSLock()

    /// Runs `body` with a `TransferLane` of its own (made on first need, kept for the next caller).
    func withLane<T>(_ body: (TransferLane) throws -> T) throws -> T {
        let lane = try laneLock.withLock { idleLanes.popLast() } ?? TransferLane(self)
        defer { laneLock.withLock { idleLanes.append(lane) } }
        return try body(lane)
    }

    /// Runs `body` with this context current on the calling thread, one caller at a time.
    func exclusive<T>(_ body: () throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        return try body()
    }

    /// `error` as the engine reports a pass that does not fit: a device out of memory
    /// becomes `EngineError.outOfMemory` naming the input, the device and its memory, with
    /// what to do; any other error is returned as it is. Call outside `exclusive`.
    func explain(_ error: Error, input: Shape, what: String = "input") -> Error {
        guard let e = error as? CUDAError, e.kind == .outOfMemory else { return error }
        let memory = (try? memoryInfo()).map { " (\($0.free >> 20) MiB free of \($0.total >> 20) MiB)" } ?? ""
        return EngineError(
            .outOfMemory,
            "a \(input.c)×\(input.h)×\(input.w) \(what) does not fit on cuda:\(deviceIndex) \(deviceName)\(memory): "
                + "\(e.description); use a smaller --tile (or --memory-budget)")
    }

    /// Free and total device memory in bytes.
    package func memoryInfo() throws -> (free: Int, total: Int) {
        try exclusive {
            var free = 0, total = 0
            try driver.check(driver.cuMemGetInfo(&free, &total), "cuMemGetInfo")
            return (free + pool.cachedBytes, total)
        }
    }

    private func compileKernels() throws {
        var program: CUHandle = nil
        try nvrtc.check(
            nvrtc.nvrtcCreateProgram(&program, CUDAKernelSource.code, "tessera_kernels.cu", 0, nil, nil),
            "nvrtcCreateProgram")
        defer { _ = nvrtc.nvrtcDestroyProgram(&program) }
        let options = ["--gpu-architecture=sm_\(computeCapability.major)\(computeCapability.minor)", "--std=c++14"]
        let cOptions = options.map { strdup($0) }
        defer { cOptions.forEach { free($0) } }
        let result = cOptions.map { UnsafePointer<CChar>($0) }.withUnsafeBufferPointer {
            nvrtc.nvrtcCompileProgram(program, Int32(options.count), $0.baseAddress)
        }
        if result != 0 {
            var size = 0
            _ = nvrtc.nvrtcGetProgramLogSize(program, &size)
            var log = [CChar](repeating: 0, count: max(1, size))
            _ = nvrtc.nvrtcGetProgramLog(program, &log)
            try nvrtc.check(
                result,
                "compiling the kernels for sm_\(computeCapability.major)\(computeCapability.minor) "
                    + "(\(options.joined(separator: " "))): \(String(cString: log))")
        }
        var size = 0
        try nvrtc.check(nvrtc.nvrtcGetCUBINSize(program, &size), "nvrtcGetCUBINSize")
        var cubin = [CChar](repeating: 0, count: size)
        try nvrtc.check(nvrtc.nvrtcGetCUBIN(program, &cubin), "nvrtcGetCUBIN")
        var module: CUHandle = nil
        try cubin.withUnsafeBytes {
            try driver.check(driver.cuModuleLoadData(&module, $0.baseAddress!), "cuModuleLoadData")
        }
        for name in CUDAKernelSource.names {
            var f: CUHandle = nil
            try driver.check(driver.cuModuleGetFunction(&f, module, name), "cuModuleGetFunction(\(name))")
            functions[name] = f
        }
    }

    /// A kernel argument, stored the way the kernel's C parameter expects it.
    enum Argument {
        case pointer(DevicePointer)
        case int(Int)  // C int
        case long(Int)  // C long long
        case float(Float)
    }

    /// Launches kernel `name` over `count` elements (grid-stride loop, 256 threads a block).
    func launch(_ name: String, count: Int, _ arguments: [Argument]) throws {
        guard count > 0 else { return }
        guard let f = functions[name] else { throw CUDAError("no kernel named \(name)") }
        let slots = UnsafeMutableRawPointer.allocate(byteCount: 8 * arguments.count, alignment: 8)
        defer { slots.deallocate() }
        var params: [UnsafeMutableRawPointer?] = []
        for (i, a) in arguments.enumerated() {
            let slot = slots + 8 * i
            switch a {
            case .pointer(let p): slot.storeBytes(of: p, as: UInt64.self)
            case .int(let v): slot.storeBytes(of: Int32(truncatingIfNeeded: v), as: Int32.self)
            case .long(let v): slot.storeBytes(of: Int64(v), as: Int64.self)
            case .float(let v): slot.storeBytes(of: v, as: Float.self)
            }
            params.append(slot)
        }
        let threads = 256
        let blocks = UInt32(min((count + threads - 1) / threads, 1 << 20))
        let r = params.withUnsafeMutableBufferPointer {
            driver.cuLaunchKernel(f, blocks, 1, 1, UInt32(threads), 1, 1, 0, stream, $0.baseAddress, nil)
        }
        try driver.check(r, "launching kernel \(name) over \(count) elements")
    }

    /// A pinned host buffer of at least `bytes` (reused between calls; caller holds `exclusive`).
    func pinnedBuffer(_ bytes: Int) throws -> UnsafeMutableRawPointer {
        if let pinned, pinnedBytes >= bytes { return pinned }
        try synchronize()
        if let pinned { _ = driver.cuMemFreeHost(pinned) }
        pinned = nil
        pinnedBytes = 0
        var p: UnsafeMutableRawPointer?
        let size = max(bytes, 1 << 20)
        try driver.check(driver.cuMemAllocHost(&p, size), "allocating \(size >> 20) MiB of pinned host memory")
        pinned = p
        pinnedBytes = size
        return p!
    }

    /// Events for `StagedCopy`'s download pieces (made on first use; caller holds `exclusive`).
    private var copyEvents: [CUHandle] = []

    /// The stream's staged copies (caller holds `exclusive`).
    private func stagedCopy() throws -> StagedCopy {
        if copyEvents.isEmpty { copyEvents = try StagedCopy.makeEvents(driver) }
        return StagedCopy(driver: driver, stream: stream, events: copyEvents)
    }

    /// Copies `count` floats from host memory to the device through pinned memory
    /// (`StagedCopy`: the host copy, split over threads, overlaps the bus transfer).
    func upload(_ source: UnsafePointer<Float>, count: Int, to device: DevicePointer) throws {
        let bytes = count * 4
        try synchronize()  // an earlier transfer may still read the staging buffer
        let staging = try pinnedBuffer(bytes)
        try stagedCopy().upload(UnsafeRawPointer(source), bytes, to: device, staging: staging)
    }

    /// Copies `count` floats from the device into host memory (through pinned memory).
    func download(_ device: DevicePointer, count: Int, into destination: UnsafeMutablePointer<Float>) throws {
        let bytes = count * 4
        let staging = try pinnedBuffer(bytes)
        try stagedCopy().download(device, bytes, into: UnsafeMutableRawPointer(destination), staging: staging)
    }

    /// memcpy in up to 8 parts of at least 1 MiB on as many threads.
    static func parallelCopy(_ destination: UnsafeMutableRawPointer, _ source: UnsafeRawPointer, _ bytes: Int) {
        let pieces = max(1, min(8, bytes >> 20))
        DispatchQueue.concurrentPerform(iterations: pieces) { i in
            let lo = bytes * i / pieces, hi = bytes * (i + 1) / pieces
            memcpy(destination + lo, source + lo, hi - lo)
        }
    }

    func copy(_ source: DevicePointer, to destination: DevicePointer, bytes: Int) throws {
        try driver.check(driver.cuMemcpyDtoDAsync(destination, source, bytes, stream), "cuMemcpyDtoDAsync")
    }

    func synchronize() throws {
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize (a kernel failed?)")
    }
}

/// Device memory, cached: a freed buffer goes back to a list by size and the next
/// request of that size reuses it (tiles repeat shapes), so steady-state passes
/// do no cuMemAlloc/cuMemFree. Buffers are used in stream order, so handing one
/// back while kernels that read it are still queued is safe.
final class DeviceMemoryPool: @unchecked Sendable {
    private let driver: CUDADriver
    private var free: [Int: [DevicePointer]] = [:]
    private var cached = 0
    private let lock = NSLock()

    var cachedBytes: Int { lock.withLock { cached } }

    init(driver: CUDADriver) { self.driver = driver }

    /// Sizes are rounded up to 2 MiB so nearby sizes share buffers.
    static func rounded(_ bytes: Int) -> Int { (max(bytes, 1) + (2 << 20) - 1) / (2 << 20) * (2 << 20) }

    func allocate(_ bytes: Int) throws -> DevicePointer {
        let size = Self.rounded(bytes)
        lock.lock()
        defer { lock.unlock() }
        if var list = free[size], let p = list.popLast() {
            free[size] = list
            cached -= size
            return p
        }
        var p: DevicePointer = 0
        var r = driver.cuMemAlloc(&p, size)
        if r == 2 /* CUDA_ERROR_OUT_OF_MEMORY */ && cached > 0 {
            trimLocked()
            r = driver.cuMemAlloc(&p, size)
        }
        if r == 2 { throw CUDAError(.outOfMemory, "allocating \(size >> 20) MiB on the device: out of memory") }
        try driver.check(r, "allocating \(size >> 20) MiB on the device")
        return p
    }

    func release(_ p: DevicePointer, bytes: Int) {
        let size = Self.rounded(bytes)
        lock.withLock {
            free[size, default: []].append(p)
            cached += size
        }
    }

    /// Returns every cached buffer to the driver.
    func trim() { lock.withLock { trimLocked() } }

    private func trimLocked() {
        for (_, list) in free { for p in list { _ = driver.cuMemFree(p) } }
        free.removeAll()
        cached = 0
    }
}

/// A float32 CHW activation on the device, returned to the pool when released.
final class DeviceTensor {
    let shape: Shape
    let pointer: DevicePointer
    /// nil: memory the tensor does not own (a `TransferLane`'s input buffer).
    private let pool: DeviceMemoryPool?

    init(_ shape: Shape, pool: DeviceMemoryPool) throws {
        self.shape = shape
        self.pool = pool
        pointer = try pool.allocate(max(1, shape.count) * 4)
    }

    /// A view of `shape.count` floats at `pointer`, owned elsewhere.
    init(borrowing pointer: DevicePointer, shape: Shape) {
        self.shape = shape
        self.pointer = pointer
        pool = nil
    }

    deinit { pool?.release(pointer, bytes: max(1, shape.count) * 4) }
}
