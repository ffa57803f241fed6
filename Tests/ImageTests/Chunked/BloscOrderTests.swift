import Foundation
import Testing

@testable import TesseraImage

/// Blosc's threads place each compressed block where the output stands when it is done: the same chunk gave
/// other bytes run to run (found on a 2-core Xeon: three different zarr chunks in four runs of one image).
@Suite("Blosc frames: the same bytes for the same chunk")
struct BloscOrderTests {
    @Test(
        "A chunk of many blocks compressed 30 times with 8 threads gives one frame, in block order, that decodes to it")
    func deterministic() throws {
        // 4 MiB of values that compress unevenly (blocks finish at different times).
        var state: UInt64 = 7
        let values = (0..<(1 << 20)).map { i -> Float in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return i % 65_536 < 20_000 ? Float(state >> 40) : Float(i % 7)
        }
        let frames = try (0..<30).map { _ in
            try values.withUnsafeBytes { try BloscCodec.compress($0, typeSize: 4, threads: 8) }
        }
        #expect(Set(frames).count == 1, "\(Set(frames).count) different frames")
        let frame = frames[0]
        func int32(_ at: Int) -> Int { frame[at..<at + 4].reversed().reduce(0) { $0 << 8 | Int($1) } }
        let blocks = (int32(4) + int32(8) - 1) / int32(8)
        #expect(blocks > 4, "\(blocks) blocks: the test needs several")
        let starts = (0..<blocks).map { int32(16 + 4 * $0) }
        #expect(starts == starts.sorted() && starts[0] == 16 + 4 * blocks, "\(starts)")
        let decoded = try BloscCodec.decompress(frame, expected: values.count * 4, path: "test")
        #expect(decoded == values.withUnsafeBytes { Array($0) })
    }
}
