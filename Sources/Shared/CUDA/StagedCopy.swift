import Foundation

/// Host ↔ device copies through pinned staging, in pieces, so that the host's copy into
/// (or out of) the staging buffer overlaps the bus transfer of the piece before (after)
/// it: an upload copies piece k + 1 while piece k crosses; a download copies piece k out
/// while piece k + 1 crosses, each piece's arrival known by an event. One stream, in
/// order: nothing else touches the staging buffer while a copy runs (`CUDAContext`
/// holds `exclusive`, a `TransferLane` is its caller's alone).
struct StagedCopy {
    let driver: CUDADriver
    let stream: CUHandle
    /// One event per piece of a download (made once, reused).
    let events: [CUHandle]

    /// Pieces of at least 4 MiB, at most `events.count` of them.
    static let smallestPiece = 4 << 20
    static let mostPieces = 8

    /// Events for `mostPieces` pieces (the caller's context current).
    static func makeEvents(_ driver: CUDADriver) throws -> [CUHandle] {
        try (0..<mostPieces).map { _ in
            var e: CUHandle = nil
            // Blocking sync: a host thread waiting for a piece sleeps instead of spinning a core
            // that the writer's compression and the next region's read need.
            try driver.check(
                driver.cuEventCreate(&e, 1 | 2 /* CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING */),
                "cuEventCreate")
            return e
        }
    }

    /// The byte ranges `bytes` is copied in: each starts on a MiB boundary.
    static func pieces(_ bytes: Int) -> [Range<Int>] {
        let size = ((max(smallestPiece, (bytes + mostPieces - 1) / mostPieces) + (1 << 20) - 1) >> 20) << 20
        return stride(from: 0, to: bytes, by: size).map { $0..<min(bytes, $0 + size) }
    }

    /// `bytes` from `source` to `device`, through `staging` (at least `bytes`, not in use).
    func upload(
        _ source: UnsafeRawPointer, _ bytes: Int, to device: DevicePointer, staging: UnsafeMutableRawPointer
    )
        throws
    {
        for r in Self.pieces(bytes) {
            CUDAContext.parallelCopy(staging + r.lowerBound, source + r.lowerBound, r.count)
            try driver.check(
                driver.cuMemcpyHtoDAsync(device + UInt64(r.lowerBound), staging + r.lowerBound, r.count, stream),
                "cuMemcpyHtoDAsync")
        }
    }

    /// `bytes` from `device` into `destination`, through `staging`; returns when all are there.
    func download(
        _ device: DevicePointer, _ bytes: Int, into destination: UnsafeMutableRawPointer,
        staging: UnsafeMutableRawPointer
    ) throws {
        let pieces = Self.pieces(bytes)
        for (k, r) in pieces.enumerated() {
            try driver.check(
                driver.cuMemcpyDtoHAsync(staging + r.lowerBound, device + UInt64(r.lowerBound), r.count, stream),
                "cuMemcpyDtoHAsync")
            try driver.check(driver.cuEventRecord(events[k], stream), "cuEventRecord")
        }
        for (k, r) in pieces.enumerated() {
            try driver.check(driver.cuEventSynchronize(events[k]), "cuEventSynchronize (a kernel failed?)")
            CUDAContext.parallelCopy(destination + r.lowerBound, staging + r.lowerBound, r.count)
        }
    }
}
