import Foundation
import TesseraCore
import TesseraEngine

/// One caller's own way across the bus (`TESSERA_CUDA_OVERLAP=1`): a copy stream, pinned
/// host staging and a device buffer for the input, so that a pipeline's upload and
/// download overlap another pipeline's compute on the context's stream (two pipelines
/// on one GPU: `--device cuda:0,cuda:0`).
///
/// A pass then goes: the input into the lane's buffer on the copy stream (event
/// `uploaded`); under `CUDAContext.exclusive`, the compute stream waits for that event
/// and the layers are queued (event `computed` after them); the copy stream waits for
/// `computed` and brings the output back. Nothing else uses the lane's memory, and the
/// output (from the context's pool) is handed back only once its download has finished,
/// so the pool's rule (buffers are reused in compute-stream order) still holds.
final class TransferLane {
    private unowned let context: CUDAContext
    private let stream: CUHandle
    private let uploaded: CUHandle
    private let computed: CUHandle
    private var pinned: UnsafeMutableRawPointer?
    private var pinnedBytes = 0
    private var input: DevicePointer = 0
    private var inputBytes = 0
    private let copies: StagedCopy

    /// Whether passes use lanes: `TESSERA_CUDA_OVERLAP=1` (off until timed on a GPU).
    static let enabled = ProcessInfo.processInfo.environment["TESSERA_CUDA_OVERLAP"] == "1"

    init(_ context: CUDAContext) throws {
        self.context = context
        let driver = context.driver
        try context.makeCurrent()
        var s: CUHandle = nil, a: CUHandle = nil, b: CUHandle = nil
        try driver.check(driver.cuStreamCreate(&s, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate (transfer lane)")
        try driver.check(driver.cuEventCreate(&a, 2 /* CU_EVENT_DISABLE_TIMING */), "cuEventCreate")
        try driver.check(driver.cuEventCreate(&b, 2), "cuEventCreate")
        (stream, uploaded, computed) = (s, a, b)
        copies = StagedCopy(driver: driver, stream: s, events: try StagedCopy.makeEvents(driver))
    }

    private func staging(_ bytes: Int) throws -> UnsafeMutableRawPointer {
        if let pinned, pinnedBytes >= bytes { return pinned }
        let driver = context.driver
        // Nothing in flight may still read the buffer being replaced.
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize (transfer lane)")
        if let pinned { _ = driver.cuMemFreeHost(pinned) }
        (pinned, pinnedBytes) = (nil, 0)
        var p: UnsafeMutableRawPointer?
        let size = max(bytes, 1 << 20)
        try driver.check(driver.cuMemAllocHost(&p, size), "allocating \(size >> 20) MiB of pinned host memory")
        (pinned, pinnedBytes) = (p, size)
        return p!
    }

    /// `tensor` on the device, in the lane's buffer (valid until the lane's next upload),
    /// once the compute stream has waited for it (`computeWaits`).
    func upload(_ tensor: Tensor) throws -> DeviceTensor {
        let driver = context.driver
        try context.makeCurrent()
        // The lane's previous pass (or a failed one) has nothing left in flight.
        try driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize (transfer lane)")
        let bytes = max(1, tensor.count) * 4
        if inputBytes < bytes {
            if input != 0 { _ = driver.cuMemFree(input) }
            (input, inputBytes) = (0, 0)
            var p: DevicePointer = 0
            var r = driver.cuMemAlloc(&p, bytes)
            if r == 2 /* out of memory */ && context.pool.cachedBytes > 0 {
                // The pool's idle buffers first, as the pool itself does (cuMemFree waits for the device).
                context.pool.trim()
                r = driver.cuMemAlloc(&p, bytes)
            }
            if r == 2 { throw CUDAError(.outOfMemory, "allocating \(bytes >> 20) MiB on the device: out of memory") }
            try driver.check(r, "allocating \(bytes >> 20) MiB on the device")
            (input, inputBytes) = (p, bytes)
        }
        let host = try staging(bytes)
        try copies.upload(UnsafeRawPointer(tensor.pointer), tensor.count * 4, to: input, staging: host)
        try driver.check(driver.cuEventRecord(uploaded, stream), "cuEventRecord")
        return DeviceTensor(borrowing: input, shape: tensor.shape)
    }

    /// Makes the compute stream wait for the upload (caller holds `exclusive`).
    func computeWaits() throws {
        try context.driver.check(
            context.driver.cuStreamWaitEvent(context.stream, uploaded, 0), "cuStreamWaitEvent")
    }

    /// Marks the end of the queued layers on the compute stream (caller holds `exclusive`).
    func computeQueued() throws {
        try context.driver.check(context.driver.cuEventRecord(computed, context.stream), "cuEventRecord")
    }

    /// `output` back on the host once the compute stream has passed `computeQueued`.
    func download(_ output: DeviceTensor) throws -> Tensor {
        let driver = context.driver
        try context.makeCurrent()
        let bytes = output.shape.count * 4
        let host = try staging(bytes)
        try driver.check(driver.cuStreamWaitEvent(stream, computed, 0), "cuStreamWaitEvent")
        let result = Tensor(uninitialized: output.shape)
        try copies.download(output.pointer, bytes, into: UnsafeMutableRawPointer(result.pointer), staging: host)
        return result
    }
}
