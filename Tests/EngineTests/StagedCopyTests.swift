import Foundation
import Testing

@testable import TesseraCUDA
@testable import TestSupport

/// `StagedCopy` (host ↔ device through pinned staging, in pieces that overlap the host
/// copy with the bus) on the emulated GPU's driver: every byte lands in place, whatever
/// the size and the piece boundaries.
@Suite("Staged host-device copies", .enabled(if: EmulatedGPU.supported))
struct StagedCopyTests {
    @Test(
        "Uploads and downloads in pieces put every byte in place",
        arguments: [0, 4, 3 << 20, (37 << 20) + 12, 80 << 20])
    func roundTrip(_ bytes: Int) throws {
        let folder = try EmulatedGPU.folder.get()
        let driver = try CUDADriver(try DynamicLibrary.open([folder + "/libcuda.so.1"], what: "the emulated libcuda"))
        try driver.check(driver.cuInit(0), "cuInit")
        let copy = StagedCopy(driver: driver, stream: nil, events: try StagedCopy.makeEvents(driver))

        let pieces = StagedCopy.pieces(bytes)
        #expect(pieces.count <= StagedCopy.mostPieces)
        #expect(pieces.first?.lowerBound ?? 0 == 0 && (pieces.last?.upperBound ?? 0) == bytes)
        #expect(zip(pieces, pieces.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
        #expect(pieces.allSatisfy { $0.lowerBound % (1 << 20) == 0 }, "pieces start on MiB boundaries: \(pieces)")

        let n = bytes / 4
        let source = (0..<n).map { Float($0 % 65_521) + 0.5 }
        var device: DevicePointer = 0
        try driver.check(driver.cuMemAlloc(&device, max(bytes, 1)), "cuMemAlloc")
        defer { _ = driver.cuMemFree(device) }
        let staging = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        defer { staging.deallocate() }
        try source.withUnsafeBytes { try copy.upload($0.baseAddress!, bytes, to: device, staging: staging) }
        memset(staging, 0, bytes)  // what comes back must come from the device, not the staging left over
        var back = [Float](repeating: -1, count: n)
        try back.withUnsafeMutableBytes { try copy.download(device, bytes, into: $0.baseAddress!, staging: staging) }
        let wrong = (0..<n).first { back[$0] != source[$0] }
        #expect(wrong == nil, "first wrong float at byte \(wrong.map { $0 * 4 } ?? 0) of \(bytes)")
    }
}
