/// glibc serves allocations above 32 MiB with fresh mmap'ed pages and unmaps
/// them on free, so every layer output of every tile would page-fault its way
/// through zeroed memory (measured: ~8% of a dense pass). Raising the mmap and
/// trim thresholds lets freed activations be reused from the heap. The cost:
/// the process keeps its peak heap, which a worker reuses for the next tile.
enum MemoryTuning {
    #if os(Linux)
    /// glibc's `mallopt` (declared in malloc.h, which the Glibc module does not export).
    @_silgen_name("mallopt") private static func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
    private static let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
    private static let trimThreshold: Int32 = -1  // M_TRIM_THRESHOLD
    #endif

    private static let once: Void = {
        #if os(Linux)
        _ = mallopt(mmapThreshold, 1 << 30)
        _ = mallopt(trimThreshold, 1 << 30)
        #endif
    }()

    static func keepLargeBuffers() { _ = once }
}
