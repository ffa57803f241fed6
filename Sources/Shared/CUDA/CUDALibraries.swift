/// The few entry points of the CUDA driver, NVRTC, cuDNN and cuBLAS that the
/// backend calls, declared here from their documented C signatures and bound
/// with `dlsym`. Handles are opaque pointers; device addresses are `UInt64`
/// (`CUdeviceptr`), also where a C signature says `float*` (same register).
typealias CUHandle = OpaquePointer?
typealias DevicePointer = UInt64

/// `libcuda.so.1`: context, memory, streams, events, modules and launches.
struct CUDADriver: @unchecked Sendable {
    let library: DynamicLibrary
    let cuInit: @convention(c) (UInt32) -> Int32
    let cuDriverGetVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    let cuDeviceGetCount: @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    let cuDeviceGet: @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    let cuDeviceGetName: @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> Int32
    let cuDeviceGetAttribute: @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> Int32
    let cuDevicePrimaryCtxRetain: @convention(c) (UnsafeMutablePointer<CUHandle>, Int32) -> Int32
    let cuCtxSetCurrent: @convention(c) (CUHandle) -> Int32
    let cuMemGetInfo: @convention(c) (UnsafeMutablePointer<Int>, UnsafeMutablePointer<Int>) -> Int32
    let cuMemAlloc: @convention(c) (UnsafeMutablePointer<DevicePointer>, Int) -> Int32
    let cuMemFree: @convention(c) (DevicePointer) -> Int32
    let cuMemAllocHost: @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int) -> Int32
    let cuMemFreeHost: @convention(c) (UnsafeMutableRawPointer?) -> Int32
    let cuMemcpyHtoDAsync: @convention(c) (DevicePointer, UnsafeRawPointer?, Int, CUHandle) -> Int32
    let cuMemcpyDtoHAsync: @convention(c) (UnsafeMutableRawPointer?, DevicePointer, Int, CUHandle) -> Int32
    let cuMemcpyDtoDAsync: @convention(c) (DevicePointer, DevicePointer, Int, CUHandle) -> Int32
    let cuStreamCreate: @convention(c) (UnsafeMutablePointer<CUHandle>, UInt32) -> Int32
    let cuStreamSynchronize: @convention(c) (CUHandle) -> Int32
    let cuEventCreate: @convention(c) (UnsafeMutablePointer<CUHandle>, UInt32) -> Int32
    let cuEventRecord: @convention(c) (CUHandle, CUHandle) -> Int32
    let cuEventSynchronize: @convention(c) (CUHandle) -> Int32
    let cuStreamWaitEvent: @convention(c) (CUHandle, CUHandle, UInt32) -> Int32
    let cuModuleLoadData: @convention(c) (UnsafeMutablePointer<CUHandle>, UnsafeRawPointer) -> Int32
    let cuModuleGetFunction: @convention(c) (UnsafeMutablePointer<CUHandle>, CUHandle, UnsafePointer<CChar>) -> Int32
    let cuLaunchKernel:
        @convention(c) (
            CUHandle, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, CUHandle,
            UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
            UnsafeMutablePointer<UnsafeMutableRawPointer?>?
        ) -> Int32
    let cuGetErrorString: @convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Int32

    init() throws {
        try self.init(
            try DynamicLibrary.open(["libcuda.so.1", "libcuda.so"], what: "The NVIDIA driver library (libcuda)"))
    }

    /// The driver's entry points in `l` (tests pass the emulated GPU's library).
    init(_ l: DynamicLibrary) throws {
        library = l
        cuInit = try l.symbol("cuInit")
        cuDriverGetVersion = try l.symbol("cuDriverGetVersion")
        cuDeviceGetCount = try l.symbol("cuDeviceGetCount")
        cuDeviceGet = try l.symbol("cuDeviceGet")
        cuDeviceGetName = try l.symbol("cuDeviceGetName")
        cuDeviceGetAttribute = try l.symbol("cuDeviceGetAttribute")
        cuDevicePrimaryCtxRetain = try l.symbol("cuDevicePrimaryCtxRetain")
        cuCtxSetCurrent = try l.symbol("cuCtxSetCurrent")
        cuMemGetInfo = try l.symbol("cuMemGetInfo_v2")
        cuMemAlloc = try l.symbol("cuMemAlloc_v2")
        cuMemFree = try l.symbol("cuMemFree_v2")
        cuMemAllocHost = try l.symbol("cuMemAllocHost_v2")
        cuMemFreeHost = try l.symbol("cuMemFreeHost")
        cuMemcpyHtoDAsync = try l.symbol("cuMemcpyHtoDAsync_v2")
        cuMemcpyDtoHAsync = try l.symbol("cuMemcpyDtoHAsync_v2")
        cuMemcpyDtoDAsync = try l.symbol("cuMemcpyDtoDAsync_v2")
        cuStreamCreate = try l.symbol("cuStreamCreate")
        cuStreamSynchronize = try l.symbol("cuStreamSynchronize")
        cuEventCreate = try l.symbol("cuEventCreate")
        cuEventRecord = try l.symbol("cuEventRecord")
        cuEventSynchronize = try l.symbol("cuEventSynchronize")
        cuStreamWaitEvent = try l.symbol("cuStreamWaitEvent")
        cuModuleLoadData = try l.symbol("cuModuleLoadData")
        cuModuleGetFunction = try l.symbol("cuModuleGetFunction")
        cuLaunchKernel = try l.symbol("cuLaunchKernel")
        cuGetErrorString = try l.symbol("cuGetErrorString")
    }

    /// Throws unless `result` is CUDA_SUCCESS, naming the call.
    func check(_ result: Int32, _ call: @autoclosure () -> String) throws {
        guard result != 0 else { return }
        var text: UnsafePointer<CChar>?
        _ = cuGetErrorString(result, &text)
        throw CUDAError("\(call()) failed: \(text.map { String(cString: $0) } ?? "CUDA error") (code \(result))")
    }
}

/// `libnvrtc.so`: compiles the backend's kernels for the device at start-up.
struct NVRTC: @unchecked Sendable {
    let library: DynamicLibrary
    let nvrtcVersion: @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    let nvrtcCreateProgram:
        @convention(c) (
            UnsafeMutablePointer<CUHandle>, UnsafePointer<CChar>, UnsafePointer<CChar>?,
            Int32, UnsafePointer<UnsafePointer<CChar>?>?,
            UnsafePointer<UnsafePointer<CChar>?>?
        ) -> Int32
    let nvrtcCompileProgram: @convention(c) (CUHandle, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    let nvrtcGetProgramLogSize: @convention(c) (CUHandle, UnsafeMutablePointer<Int>) -> Int32
    let nvrtcGetProgramLog: @convention(c) (CUHandle, UnsafeMutablePointer<CChar>) -> Int32
    let nvrtcGetCUBINSize: @convention(c) (CUHandle, UnsafeMutablePointer<Int>) -> Int32
    let nvrtcGetCUBIN: @convention(c) (CUHandle, UnsafeMutablePointer<CChar>) -> Int32
    let nvrtcDestroyProgram: @convention(c) (UnsafeMutablePointer<CUHandle>) -> Int32
    let nvrtcGetErrorString: @convention(c) (Int32) -> UnsafePointer<CChar>?

    init(driverMajor: Int? = nil) throws {
        let names = DynamicLibrary.preferring(
            ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"], driverMajor: driverMajor)
        let l = try DynamicLibrary.open(names, what: "NVRTC (the CUDA runtime compiler, libnvrtc)")
        library = l
        nvrtcVersion = try l.symbol("nvrtcVersion")
        nvrtcCreateProgram = try l.symbol("nvrtcCreateProgram")
        nvrtcCompileProgram = try l.symbol("nvrtcCompileProgram")
        nvrtcGetProgramLogSize = try l.symbol("nvrtcGetProgramLogSize")
        nvrtcGetProgramLog = try l.symbol("nvrtcGetProgramLog")
        nvrtcGetCUBINSize = try l.symbol("nvrtcGetCUBINSize")
        nvrtcGetCUBIN = try l.symbol("nvrtcGetCUBIN")
        nvrtcDestroyProgram = try l.symbol("nvrtcDestroyProgram")
        nvrtcGetErrorString = try l.symbol("nvrtcGetErrorString")
    }

    func check(_ result: Int32, _ call: @autoclosure () -> String) throws {
        guard result != 0 else { return }
        let text = nvrtcGetErrorString(result).map { String(cString: $0) } ?? "NVRTC error"
        throw CUDAError("\(call()) failed: \(text) (code \(result))")
    }
}

/// `libcudnn.so.9` (legacy convolution API): the convolutions, as PyTorch runs them.
struct CuDNN: @unchecked Sendable {
    let library: DynamicLibrary
    let cudnnGetVersion: @convention(c) () -> Int
    let cudnnCreate: @convention(c) (UnsafeMutablePointer<CUHandle>) -> Int32
    let cudnnSetStream: @convention(c) (CUHandle, CUHandle) -> Int32
    let cudnnGetErrorString: @convention(c) (Int32) -> UnsafePointer<CChar>?
    let cudnnCreateTensorDescriptor: @convention(c) (UnsafeMutablePointer<CUHandle>) -> Int32
    /// (desc, format, dataType, n, c, h, w)
    let cudnnSetTensor4dDescriptor: @convention(c) (CUHandle, Int32, Int32, Int32, Int32, Int32, Int32) -> Int32
    let cudnnCreateFilterDescriptor: @convention(c) (UnsafeMutablePointer<CUHandle>) -> Int32
    /// (desc, dataType, format, k, c, h, w): note the order differs from tensors.
    let cudnnSetFilter4dDescriptor: @convention(c) (CUHandle, Int32, Int32, Int32, Int32, Int32, Int32) -> Int32
    let cudnnCreateConvolutionDescriptor: @convention(c) (UnsafeMutablePointer<CUHandle>) -> Int32
    let cudnnDestroyTensorDescriptor: @convention(c) (CUHandle) -> Int32
    let cudnnDestroyFilterDescriptor: @convention(c) (CUHandle) -> Int32
    let cudnnDestroyConvolutionDescriptor: @convention(c) (CUHandle) -> Int32
    /// (desc, padH, padW, strideH, strideW, dilationH, dilationW, mode, computeType)
    let cudnnSetConvolution2dDescriptor:
        @convention(c) (
            CUHandle, Int32, Int32, Int32, Int32, Int32, Int32,
            Int32, Int32
        ) -> Int32
    let cudnnSetConvolutionGroupCount: @convention(c) (CUHandle, Int32) -> Int32
    let cudnnSetConvolutionMathType: @convention(c) (CUHandle, Int32) -> Int32
    let cudnnGetConvolution2dForwardOutputDim:
        @convention(c) (
            CUHandle, CUHandle, CUHandle,
            UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>,
            UnsafeMutablePointer<Int32>
        ) -> Int32
    /// (handle, x, w, conv, y, requested, returned, perfResults): perf structs are 48 bytes.
    let cudnnGetConvolutionForwardAlgorithm_v7:
        @convention(c) (
            CUHandle, CUHandle, CUHandle, CUHandle, CUHandle,
            Int32, UnsafeMutablePointer<Int32>, UnsafeMutableRawPointer
        ) -> Int32
    let cudnnFindConvolutionForwardAlgorithm:
        @convention(c) (
            CUHandle, CUHandle, CUHandle, CUHandle, CUHandle,
            Int32, UnsafeMutablePointer<Int32>, UnsafeMutableRawPointer
        ) -> Int32
    let cudnnGetConvolutionForwardWorkspaceSize:
        @convention(c) (
            CUHandle, CUHandle, CUHandle, CUHandle, CUHandle,
            Int32, UnsafeMutablePointer<Int>
        ) -> Int32
    /// (handle, alpha, xDesc, x, wDesc, w, convDesc, algo, workspace, workspaceBytes, beta, yDesc, y)
    let cudnnConvolutionForward:
        @convention(c) (
            CUHandle, UnsafeRawPointer, CUHandle, DevicePointer, CUHandle,
            DevicePointer, CUHandle, Int32, DevicePointer, Int, UnsafeRawPointer, CUHandle, DevicePointer
        ) -> Int32

    init() throws {
        let l = try DynamicLibrary.open(["libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"], what: "cuDNN (libcudnn)")
        library = l
        cudnnGetVersion = try l.symbol("cudnnGetVersion")
        cudnnCreate = try l.symbol("cudnnCreate")
        cudnnSetStream = try l.symbol("cudnnSetStream")
        cudnnGetErrorString = try l.symbol("cudnnGetErrorString")
        cudnnCreateTensorDescriptor = try l.symbol("cudnnCreateTensorDescriptor")
        cudnnSetTensor4dDescriptor = try l.symbol("cudnnSetTensor4dDescriptor")
        cudnnCreateFilterDescriptor = try l.symbol("cudnnCreateFilterDescriptor")
        cudnnSetFilter4dDescriptor = try l.symbol("cudnnSetFilter4dDescriptor")
        cudnnCreateConvolutionDescriptor = try l.symbol("cudnnCreateConvolutionDescriptor")
        cudnnDestroyTensorDescriptor = try l.symbol("cudnnDestroyTensorDescriptor")
        cudnnDestroyFilterDescriptor = try l.symbol("cudnnDestroyFilterDescriptor")
        cudnnDestroyConvolutionDescriptor = try l.symbol("cudnnDestroyConvolutionDescriptor")
        cudnnSetConvolution2dDescriptor = try l.symbol("cudnnSetConvolution2dDescriptor")
        cudnnSetConvolutionGroupCount = try l.symbol("cudnnSetConvolutionGroupCount")
        cudnnSetConvolutionMathType = try l.symbol("cudnnSetConvolutionMathType")
        cudnnGetConvolution2dForwardOutputDim = try l.symbol("cudnnGetConvolution2dForwardOutputDim")
        cudnnGetConvolutionForwardAlgorithm_v7 = try l.symbol("cudnnGetConvolutionForwardAlgorithm_v7")
        cudnnFindConvolutionForwardAlgorithm = try l.symbol("cudnnFindConvolutionForwardAlgorithm")
        cudnnGetConvolutionForwardWorkspaceSize = try l.symbol("cudnnGetConvolutionForwardWorkspaceSize")
        cudnnConvolutionForward = try l.symbol("cudnnConvolutionForward")
    }

    func check(_ result: Int32, _ call: @autoclosure () -> String) throws {
        guard result != 0 else { return }
        let text = cudnnGetErrorString(result).map { String(cString: $0) } ?? "cuDNN error"
        throw CUDAError("\(call()) failed: \(text) (code \(result))")
    }

    // Enum values from cudnn_graph.h / cudnn_cnn.h.
    static let formatNCHW: Int32 = 0
    static let float32: Int32 = 0
    static let crossCorrelation: Int32 = 1
    static let defaultMath: Int32 = 0
    static let fmaMath: Int32 = 3
    static let perfStructBytes = 48
}

/// `libcublas.so`: sgemm for the im2col convolution path (used when cuDNN is absent
/// or `TESSERA_CUDA_CONV=gemm`).
struct CuBLAS: @unchecked Sendable {
    let library: DynamicLibrary
    let cublasCreate: @convention(c) (UnsafeMutablePointer<CUHandle>) -> Int32
    let cublasSetStream: @convention(c) (CUHandle, CUHandle) -> Int32
    let cublasSetMathMode: @convention(c) (CUHandle, Int32) -> Int32
    /// (handle, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc), column-major.
    let cublasSgemm:
        @convention(c) (
            CUHandle, Int32, Int32, Int32, Int32, Int32, UnsafePointer<Float>,
            DevicePointer, Int32, DevicePointer, Int32, UnsafePointer<Float>, DevicePointer, Int32
        ) -> Int32

    init(driverMajor: Int? = nil) throws {
        let l = try DynamicLibrary.open(
            DynamicLibrary.preferring(
                ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"], driverMajor: driverMajor),
            what: "cuBLAS (libcublas)")
        library = l
        cublasCreate = try l.symbol("cublasCreate_v2")
        cublasSetStream = try l.symbol("cublasSetStream_v2")
        cublasSetMathMode = try l.symbol("cublasSetMathMode")
        cublasSgemm = try l.symbol("cublasSgemm_v2")
    }

    func check(_ result: Int32, _ call: @autoclosure () -> String) throws {
        guard result != 0 else { return }
        throw CUDAError("\(call()) failed: cuBLAS status \(result)")
    }

    static let defaultMath: Int32 = 0
    static let tf32Math: Int32 = 3
}
