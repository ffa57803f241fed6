/// glibc serves allocations above 32 MiB with fresh mmap'ed pages and unmaps
/// them on free, so every layer output of every tile would page-fault its way
/// through zeroed memory (measured: ~8% of a dense pass). Raising the mmap and
/// trim thresholds lets freed activations be reused from the heap. The cost:
/// the process keeps its peak heap, which a worker reuses for the next tile.
///
/// One arena: a thread other than the main one allocates from its own arena,
/// whose heaps are at most 64 MiB, so large activations fell back to mmap
/// there (measured: a worker's compute thread ran tiles 1.6× slower than the
/// same engine on the main thread). Call this first thing in `main`, before
/// any thread has allocated.
package enum MemoryTuning {
    #if os(Linux)
    /// glibc's `mallopt` (declared in malloc.h, which the Glibc module does not export).
    @_silgen_name("mallopt") private static func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
    private static let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
    private static let trimThreshold: Int32 = -1  // M_TRIM_THRESHOLD
    private static let arenaMax: Int32 = -8  // M_ARENA_MAX
    #endif

    private static let once: Void = {
        #if os(Linux)
        _ = mallopt(mmapThreshold, 1 << 30)
        _ = mallopt(trimThreshold, 1 << 30)
        _ = mallopt(arenaMax, 1)
        #endif
    }()

    package static func keepLargeBuffers() { _ = once }

    #if os(Linux)
    @_silgen_name("malloc_trim") private static func malloc_trim(_ pad: Int) -> Int32
    #endif

    /// Returns the heap's free pages to the system (glibc's `malloc_trim(0)`, which also
    /// releases whole free pages in the middle of the heap): what the thresholds above keep.
    /// For a benchmark that measures one mode's peak after another's.
    package static func releaseFreeMemory() {
        #if os(Linux)
        _ = malloc_trim(0)
        #endif
    }
}
