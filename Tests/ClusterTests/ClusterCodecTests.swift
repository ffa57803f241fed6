import Foundation
import Testing

@testable import CoordinatorService
@testable import TesseraCluster
@testable import TesseraCore
@testable import TesseraImage
@testable import TesseraWire

@Suite("Cluster codecs: engine settings, job options, task pixels")
struct ClusterCodecTests {
    @Test(
        "Engine settings round-trip through a task's options frame",
        arguments: [
            EngineSettings(), EngineSettings(patchSize: 33, allowPadding: true, randomWeightsSeed: 42),
            EngineSettings(patchSize: nil, allowPadding: false, randomWeightsSeed: 0),
        ])
    func engineSettings(_ s: EngineSettings) {
        #expect(EngineSettings(encoded: s.encoded) == s)
        #expect(EngineSettings(encoded: Array(s.encoded.dropLast())) == nil)
        #expect(EngineSettings(encoded: [2] + s.encoded.dropFirst()) == nil)
    }

    @Test("A net whose pooling rounds down travels with a bit that workers built before it refuse")
    func poolingRoundingBit() throws {
        func bundle(_ rounding: String) -> ModelBundle {
            let text = """
                layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 9 } } }
                layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                        convolution_param { num_output: 4 kernel_size: 3 } }
                layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
                        pooling_param { pool: MAX kernel_size: 2 stride: 2 \(rounding) } }
                layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 2 } }
                """
            return ModelBundle(prototxt: Array(text.utf8), weights: [])
        }
        let settings = EngineSettings(allowPadding: true, randomWeightsSeed: 5)
        let floor = bundle("round_mode: FLOOR"), ceil = bundle("")
        let sent = settings.forWorkers(of: try settings.plan(floor).plan)
        #expect(sent.poolingRoundsDown && EngineSettings(encoded: sent.encoded) == sent)
        // What a worker built before the bit accepted: flags within bits 0 and 1.
        #expect(sent.encoded[5] & ~3 != 0)
        _ = try sent.plan(floor)
        // Every other net's tasks keep their bytes, a floor pool whose rounding changes nothing included
        // (at 8×8 the pool sees 6 rows: 3 windows either way).
        #expect(settings.forWorkers(of: try settings.plan(ceil).plan).encoded == settings.encoded)
        let eight = ModelBundle(
            prototxt: Array(
                String(decoding: floor.prototxt, as: UTF8.self).replacingOccurrences(
                    of: "dim: 9 dim: 9", with: "dim: 8 dim: 8"
                ).utf8), weights: [])
        let plan8 = try settings.plan(eight).plan
        #expect(plan8.classifier.hasPoolingRoundingDown)
        #expect(settings.forWorkers(of: plan8).encoded == settings.encoded)
        // A worker that reads the model without such a layer refuses rather than compute another net.
        let e = #expect(throws: ClusterError.self) { try sent.plan(ceil) }
        #expect("\(e.map { "\($0)" } ?? "")".contains("read the model differently"))
        // The coordinator names the cause of an older worker's refusal.
        #expect(CoordinatorLoop.explained(EngineSettings.notUnderstood).contains("upgrade"))
        #expect(CoordinatorLoop.explained("disk full") == "disk full")
    }

    @Test("Job options round-trip and reject unknown keys")
    func jobOptions() throws {
        var o = JobOptions()
        o.outputs = "npy,prob"
        o.bitDepth = 16
        o.classes = "0,2"
        o.overlayClass = 2
        o.engine = EngineSettings(patchSize: 18, allowPadding: true, randomWeightsSeed: 7)
        o.outputDirectory = "/tmp/out"
        #expect(try JobOptions(encoded: o.encoded) == o)
        #expect(throws: ClusterError.self) { try JobOptions(encoded: "outputs=all;colour=red") }
        #expect(throws: ClusterError.self) { try JobOptions(encoded: "bit-depth=99") }
        for bad in ["outputs=all;colour=red", "bit-depth=99", "nokey", "random-weights=x"] {
            let e = #expect(throws: ClusterError.self) { try JobOptions(encoded: bad) }
            #expect(e?.kind == .invalidOption, "\(bad): \(String(describing: e))")
        }
        let zarr = #expect(throws: ClusterError.self) {
            try JobOptions(encoded: "outputs=npy,zarr").outputOptions(directory: "/tmp", stem: "a")
        }
        #expect(zarr?.kind == .invalidOption && zarr?.description.contains("in-process") == true)
    }

    /// `--image N` travels in the job's options (and so in the coordinator's job record) only when
    /// it is not 1: a job of image 1 keeps the options text an older coordinator reads.
    @Test("The image of a multi-image file round-trips in job options, written only when not 1")
    func jobOptionsImage() throws {
        var o = JobOptions()
        o.storage = .shared
        o.level = 1
        let one = o.encoded
        #expect(!one.contains("image"), "\(one)")
        #expect(try JobOptions(encoded: one).image == 1)
        o.image = 2
        #expect(o.encoded.contains("image=2") && o.encoded.replacingOccurrences(of: "image=2;", with: "") == one)
        #expect(try JobOptions(encoded: o.encoded) == o)
        for bad in ["image=0", "image=65537", "image=x"] {
            #expect(throws: ClusterError.self) { try JobOptions(encoded: "storage=shared;\(bad)") }
        }
        // An older worker's refusal of a task for image 2 is explained, naming the image.
        let refusal = Wire.TaskFailure.unreadable + "limitExceeded: tileTask: level 65536 outside 0…64"
        #expect(CoordinatorLoop.explained(refusal, image: 2).contains("refused this task for image 2: upgrade it"))
        #expect(CoordinatorLoop.explained(refusal, image: 1) == refusal)
    }

    @Test("Cut pixels equal the engine's own region, 8 and 16 bits, across mirrored edges", arguments: [8, 16])
    func cut(_ depth: Int) {
        let (h, w) = (7, 5)
        let values = (0..<(h * w * 3)).map { ($0 * 2_654_435_761) % (depth == 8 ? 256 : 65536) }
        let image =
            depth == 8
            ? PixelImage(width: w, height: h, channels: 3, samples: .uint8(values.map { UInt8($0) }))
            : PixelImage(width: w, height: h, channels: 3, samples: .uint16(values.map { UInt16($0) }))
        for rect in [PixelRect(y: 0, x: 0, height: 12, width: 9), PixelRect(y: 3, x: 2, height: 20, width: 17)] {
            let expected = PixelRegion(image: image, paddedRect: rect, halfPatch: Size2(4, 4))
            let wire = TaskCodec.cut(image, paddedRect: rect, halfPatch: Size2(4, 4))
            #expect(Int(wire.bytesPerSample) == depth / 8)
            #expect(TaskCodec.region(wire) == expected)
        }
    }
}
