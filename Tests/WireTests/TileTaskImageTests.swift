import Testing

@testable import TesseraWire
@testable import TestSupport

/// `--image N` (added within protocol 3): a shared-storage task names its image in the high bits of its
/// level field, so image 1's tasks keep their bytes and a worker built before images refuses a
/// task for another image (naming it, so it reports the failure) instead of mapping image 1.
@Suite("Tile tasks name their image (added within protocol 3)")
struct TileTaskImageTests {
    static func spec(image: UInt32, level: UInt32 = 2) -> Wire.TileTaskSpec {
        Wire.TileTaskSpec(
            jobID: 9, taskID: 31, attempt: 2, modelDigest: WireSamples.digest, mode: .dense,
            tile: Wire.Rect(y0: 64, x0: 128, height: 64, width: 48), preprocessing: WireSamples.preprocessing,
            imagePath: "/shared/scenes.ome.tif", image: image, level: level, storePath: "/shared/out/.s.zarr",
            options: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    /// The header of a tile task as builds before `--image` wrote it, field by field from the
    /// protocol table (not through `WireMessage.encode`).
    static func headerBeforeImages(_ m: Wire.TileTaskSpec) -> [UInt8] {
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func str(_ s: String) -> [UInt8] { le(UInt16(s.utf8.count)) + Array(s.utf8) }
        let p = m.preprocessing
        var out: [UInt8] = [0x54, 0x53, 0x52, WireMessage.version, 0x15, 0]
        out += le(m.jobID) + le(m.taskID) + le(m.attempt) + m.modelDigest.bytes + [m.mode.rawValue]
        out += le(m.tile.y0) + le(m.tile.x0) + le(m.tile.height) + le(m.tile.width)
        out += [p.channelOrder.rawValue] + le(p.rawScale.bitPattern) + le(p.scale.bitPattern)
        out += le(UInt16(p.mean.count)) + p.mean.flatMap { le($0.bitPattern) }
        out += str(m.imagePath) + le(m.level) + str(m.storePath) + le(UInt32(m.options.count))
        return out
    }

    /// How a build before `--image` decoded a tile task (`decodeTileTask` as it was): the same
    /// checks, the level within 0…64, with the task's ids attached to any error once read.
    static func decodeBeforeImages(_ frames: [[UInt8]]) throws -> (level: UInt32, image: String) {
        var r = WireReader(frames[0], offset: WireMessage.prefixSize, limits: .default, what: "tileTask")
        guard frames[0][5] == 0 else { throw r.error(.badFlags, "tileTask: flags not defined") }
        let job = try r.u64("job id"), task = try r.u64("task id"), attempt = try r.u32("attempt")
        do {
            _ = try WireMessage.digest(&r)
            _ = try WireMessage.mode(&r)
            for field in ["y0", "x0", "height", "width"] { _ = try r.u32("output \(field)") }
            _ = try WireMessage.preprocessing(&r, limits: .default)
            let image = try r.string("image path")
            let level = try r.u32("level", in: 0...64)
            _ = try r.string("store path")
            _ = try r.u32("options size")
            try r.finish()
            return (level, image)
        } catch var error as WireError {
            error.task = (job, task, attempt)
            throw error
        }
    }

    @Test("Image 1's task has the bytes of builds before --image, which decode it as they always did")
    func imageOneUnchanged() throws {
        for level: UInt32 in [0, 2, 64] {
            let spec = Self.spec(image: 1, level: level)
            let frames = WireMessage.tileTask(spec).encode()
            #expect(frames[0] == Self.headerBeforeImages(spec), "level \(level): the header's bytes changed")
            #expect(frames[1] == spec.options)
            #expect(try Self.decodeBeforeImages(frames).level == level)
            #expect(try WireMessage.decode(frames) == .tileTask(spec))
        }
    }

    @Test("Another image round-trips, in the level field's high bits only", arguments: [2, 3, 65536] as [UInt32])
    func otherImages(image: UInt32) throws {
        let spec = Self.spec(image: image, level: 5)
        let frames = WireMessage.tileTask(spec).encode()
        #expect(try WireMessage.decode(frames) == .tileTask(spec))
        // Only the level field differs from image 1's task: bits 16–31 hold image − 1.
        let one = WireMessage.tileTask(Self.spec(image: 1, level: 5)).encode()[0]
        let differing = frames[0].indices.filter { frames[0][$0] != one[$0] }
        let levelAt = one.count - 4 - 2 - spec.storePath.utf8.count - 4
        #expect(frames[0].count == one.count && differing.allSatisfy { (levelAt + 2)...(levelAt + 3) ~= $0 })
        #expect(frames[0][levelAt..<(levelAt + 4)] == [5, 0, UInt8((image - 1) & 0xFF), UInt8((image - 1) >> 8)])
    }

    @Test("A build before --image refuses a task for image 2, naming the task, so its worker reports it failed")
    func olderWorkersRefuse() throws {
        let frames = WireMessage.tileTask(Self.spec(image: 2)).encode()
        let refusal = #expect(throws: WireError.self) { try Self.decodeBeforeImages(frames) }
        #expect(refusal?.kind == .limitExceeded && refusal?.reason.contains("level 65538 outside 0…64") == true)
        #expect(refusal?.task?.jobID == 9 && refusal?.task?.taskID == 31 && refusal?.task?.attempt == 2)
        // This build's decoder refuses a level over 64 whatever the image.
        var bad = frames
        let levelAt = frames[0].count - 4 - 2 - "/shared/out/.s.zarr".utf8.count - 4
        bad[0][levelAt] = 65
        let e = #expect(throws: WireError.self) { try WireMessage.decode(bad) }
        #expect(e?.task?.taskID == 31 && e?.reason.contains("level 65 outside 0…64") == true)
    }
}
