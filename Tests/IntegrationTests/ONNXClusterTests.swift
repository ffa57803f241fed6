import Foundation
import SwiftProtobuf
import Testing

@testable import TesseraCluster
@testable import TesseraCore
@testable import TesseraEngine
@testable import TesseraImage
@testable import TesseraModel
@testable import TesseraPlan
@testable import TestSupport

/// ONNX models through the command line and the cluster: `inspect`, `run` with local
/// workers, an upload job; the seed-shaped fixture keeps its float16 weights in an
/// external-data file, which the workers never see.
@Suite("ONNX models through the CLI and the cluster", .serialized)
struct ONNXClusterTests {
    static let dir = TestPaths.fixtures.appendingPathComponent("onnx").path
    static let seed = dir + "/seed_net/model.onnx"
    static let torchvision = [
        "--channel-order", "rgb", "--raw-scale", "0.00392156862745098", "--mean", "0.485,0.456,0.406", "--std",
        "0.229,0.224,0.225",
    ]
    static let preprocessing = Preprocessing(
        mean: [0.485, 0.456, 0.406], rawScale: 0.00392156862745098, channelOrder: .rgb, std: [0.229, 0.224, 0.225])

    static func inProcessNPY(
        _ model: String, image: String, mode: MapMode, scratch: String, allowPadding: Bool = false
    ) throws -> [UInt8] {
        let engine = try MapEngine(
            plan: EngineSettings(allowPadding: allowPadding).plan(prototxtPath: model, weightsPath: nil).plan)
        let map = try LocalMapper(engine: engine, preprocessing: preprocessing, threads: 2)
            .map(try PNGReader.read(path: image), mode: mode, tile: 16)
        let out = "\(scratch)/local-\(mode.rawValue).npy"
        try NPY.write(map, to: out)
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    @Test("inspect shows the ONNX net, its geometry and the std formula; a padded net's reasons")
    func inspect() throws {
        let group = try ProcessGroup("onnx-inspect")
        defer { group.stop() }
        let p = try group.start(
            "tessera-coordinator", ["inspect", "--model", Self.seed] + Self.torchvision, log: "seed")
        #expect(group.wait(p) == 0, "\(group.log("seed"))")
        let text = group.log("seed")
        for needle in [
            "conv1", "fc6-conv", "the ONNX graph's input shape", "value = (raw × 0.003921569 − mean[c]) / std[c] × 1.0",
        ] {
            #expect(text.contains(needle), "inspect output lacks \(needle):\n\(text)")
        }
        let padded = Self.dir + "/padded_residual/model.onnx"
        let run = try group.start(
            "tessera-coordinator",
            ["run", "--model", padded, "--in-process", "--out", group.directory + "/o", group.directory + "/none.png"],
            log: "padded")
        #expect(group.wait(run) != 0)
        let refusal = group.log("padded")
        #expect(refusal.contains("conv_1") && refusal.contains("--allow-padding"), "\(refusal)")
    }

    @Test("run (embedded) reads external data next to the model as named, through links (Hugging Face cache)")
    func externalDataThroughLinks() throws {
        let group = try ProcessGroup("onnx-links")
        defer { group.stop() }
        let dir = group.directory, fm = FileManager.default
        let image = dir + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 40, width: 36)
        // The snapshot's files are links to blobs; the blob folder also holds a model.onnx.data of
        // other weights, which reading next to the link's target would take (user audit: a wrong map).
        try fm.createDirectory(atPath: dir + "/blobs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/snapshots/abc", withIntermediateDirectories: true)
        try fm.copyItem(atPath: Self.seed, toPath: dir + "/blobs/m1")
        try fm.copyItem(atPath: Self.seed + ".data", toPath: dir + "/blobs/d1")
        var other = try Data(contentsOf: URL(fileURLWithPath: Self.seed + ".data"))
        for i in stride(from: 0, to: other.count, by: 4) { other[i + 3] ^= 0x01 }  // every float changed
        try other.write(to: URL(fileURLWithPath: dir + "/blobs/model.onnx.data"))
        try fm.createSymbolicLink(atPath: dir + "/snapshots/abc/model.onnx", withDestinationPath: "../../blobs/m1")
        try fm.createSymbolicLink(atPath: dir + "/snapshots/abc/model.onnx.data", withDestinationPath: "../../blobs/d1")
        let linked = dir + "/snapshots/abc/model.onnx"
        let reference = try Self.inProcessNPY(Self.seed, image: image, mode: .dense, scratch: dir)
        for (name, extra) in [("embedded", ["--workers", "1"]), ("in-process", ["--in-process"])] {
            let out = dir + "/" + name
            let p = try group.start(
                "tessera-coordinator",
                ["run", "--model", linked] + Self.torchvision + extra
                    + ["--mode", "dense", "--tile", "16", "--outputs", "npy", "--out", out, image],
                log: name)
            #expect(group.wait(p, timeout: 120) == 0, "\(group.log(name))")
            let same = ClusterFixture.bytes(out + "/tissue.npy") == reference
            #expect(same, "\(name): the map differs from the model's own weights'")
        }
    }

    @Test("naive maps a net that pads without --allow-padding: the classifier itself, as with the flag")
    func naiveOfPaddedNet() throws {
        let group = try ProcessGroup("onnx-naive-padded")
        defer { group.stop() }
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 21, width: 17)
        let padded = Self.dir + "/padded_residual/model.onnx"
        func naive(_ extra: [String], _ name: String) throws -> [UInt8] {
            let out = group.directory + "/" + name
            let p = try group.start(
                "tessera-coordinator",
                ["run", "--model", padded] + Self.torchvision + extra
                    + ["--mode", "naive", "--outputs", "npy", "--out", out, image],
                log: name)
            #expect(group.wait(p, timeout: 120) == 0, "\(group.log(name))")
            #expect(!FileManager.default.fileExists(atPath: out + "/tissue.check.json"), "naive is not checked")
            return ClusterFixture.bytes(out + "/tissue.npy") ?? []
        }
        let plain = try naive(["--in-process"], "plain")
        #expect(plain.count > 21 * 17 * 4)
        #expect(plain == (try naive(["--in-process", "--allow-padding"], "flag")))
        #expect(plain == (try naive(["--workers", "1"], "embedded")), "\(group.log("embedded"))")
    }

    @Test("inspect on a model that needs --patch-size prints run's hint line (ONNX and Caffe)")
    func inspectPatchSizeHint() throws {
        let group = try ProcessGroup("onnx-inspect-hint")
        defer { group.stop() }
        var m = try ONNXFiles.read(Self.dir + "/conv_pool_gemm/model.onnx")
        m.graph.input[0].type.tensorType.shape.dim[2].dimParam = "height"
        m.graph.input[0].type.tensorType.shape.dim[3].dimParam = "width"
        let onnx = group.directory + "/dynamic.onnx"
        try Data(m.serializedBytes() as [UInt8]).write(to: URL(fileURLWithPath: onnx))
        // Four stride-65536 convolutions: neither the declared 1×1 input nor the receptive field is a patch size.
        let caffe = group.directory + "/strides.prototxt"
        let layers = (1...4).map {
            "layer { name: \"c\($0)\" type: \"Convolution\" bottom: \"\($0 == 1 ? "data" : "c\($0 - 1)")\" "
                + "top: \"c\($0)\" convolution_param { num_output: 1 kernel_size: 1 stride: 65536 } }\n"
        }
        try ("input: \"data\" input_shape { dim: 1 dim: 1 dim: 1 dim: 1 }\n" + layers.joined())
            .write(toFile: caffe, atomically: true, encoding: .utf8)
        let hint = "hint: give the classifier's patch size with --patch-size P"
        let run = try group.start(
            "tessera-coordinator", ["run", "--model", onnx, "--in-process", "--out", group.directory + "/o", onnx],
            log: "run")
        #expect(group.wait(run) != 0)
        #expect(group.log("run").contains(hint), "\(group.log("run"))")
        for (model, log) in [(onnx, "onnx"), (caffe, "caffe")] {
            let p = try group.start("tessera-coordinator", ["inspect", "--model", model], log: log)
            #expect(group.wait(p) != 0)
            let text = group.log(log)
            #expect(text.contains("patch size is unknown") && text.contains(hint), "\(text)")
        }
    }

    @Test("convert writes an ONNX model's fully convolutional net as Caffe files that map the same")
    func convert() throws {
        let group = try ProcessGroup("onnx-convert")
        defer { group.stop() }
        let (proto, weights) = (group.directory + "/fcn.prototxt", group.directory + "/fcn.caffemodel")
        let p = try group.start(
            "tessera-coordinator",
            ["convert", "--model", Self.seed, "--out-model", proto, "--out-weights", weights, "--input-size", "64"],
            log: "convert")
        #expect(group.wait(p) == 0, "\(group.log("convert"))")
        let onnx = try ModelLoader.load(ModelSource(model: Self.seed))
        let caffe = try ModelLoader.load(ModelSource(model: proto, weights: weights, patchSize: 32))
        let image = ArrayImage.random(height: 21, width: 17, seed: 5)
        let a = try LocalMapper(engine: MapEngine(model: onnx), preprocessing: Self.preprocessing, threads: 2)
            .map(image, mode: .dense)
        let b = try LocalMapper(engine: MapEngine(model: caffe), preprocessing: Self.preprocessing, threads: 2)
            .map(image, mode: .dense)
        let d = zip(a.data, b.data).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(a.data.count == b.data.count && d <= 1e-6, "the converted net's map differs by \(d)")
    }

    /// Runs `model` in onnxruntime on `input` (1×C×H×W); nil when the script fails (its log says why).
    static func onnxruntime(_ group: ProcessGroup, model: String, input: Tensor) throws -> [Float]? {
        let script = """
            import sys, numpy as np, onnxruntime as ort
            model, src, c, h, w, dst = sys.argv[1:7]
            x = np.fromfile(src, dtype="<f4").reshape(1, int(c), int(h), int(w))
            o = ort.SessionOptions()
            o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
            s.run(None, {s.get_inputs()[0].name: x})[0].astype("<f4").tofile(dst)
            """
        let (src, dst) = (group.directory + "/x.f32", group.directory + "/y.f32")
        try input.values.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: URL(fileURLWithPath: src))
        let p = try group.start(
            "/usr/bin/env",
            ["python3", "-c", script, model, src, "\(input.c)", "\(input.h)", "\(input.w)", dst], log: "ort")
        guard group.wait(p, timeout: 120) == 0, let data = FileManager.default.contents(atPath: dst) else {
            Issue.record("onnxruntime failed: \(group.log("ort"))")
            return nil
        }
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    @Test(
        "convert --format onnx: onnxruntime computes the fully convolutional net as Tessera's engine does",
        arguments: ["conv_pool_ip", "branch_eltwise_concat", "onnx/seed_net", "onnx/branches", "onnx/resnet_stem"])
    func convertToONNX(_ fixture: String) throws {
        let group = try ProcessGroup("onnx-write")
        defer { group.stop() }
        let dir = TestPaths.fixtures.appendingPathComponent(fixture).path
        let modelFlags =
            fixture.hasPrefix("onnx/")
            ? ["--model", dir + "/model.onnx"]
            : ["--model", dir + "/deploy.prototxt", "--weights", dir + "/weights.caffemodel"]
        let out = group.directory + "/fcn.onnx"
        let p = try group.start(
            "tessera-coordinator", ["convert", "--format", "onnx"] + modelFlags + ["--out-model", out], log: "convert")
        #expect(group.wait(p) == 0, "\(group.log("convert"))")
        let source =
            modelFlags.count == 2
            ? ModelSource(model: modelFlags[1]) : ModelSource(model: modelFlags[1], weights: modelFlags[3])
        let model = try ModelLoader.load(source)
        // An input larger than the patch: the net's output is a map, computed by both.
        let size = Size2(model.patchSize.h + 13, model.patchSize.w + 9)
        let input = Reference.random(Shape(c: model.net.inputChannels, h: size.h, w: size.w), seed: 3)
        let expected = try NetRunner(net: model.net).forward(input, threads: 2).values
        guard let got = try Self.onnxruntime(group, model: out, input: input) else { return }
        #expect(got.count == expected.count && expected.count > model.geometry.classes)
        let d = zip(got, expected).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(d <= 1e-4, "\(fixture): onnxruntime and the engine differ by \(d)")
        print("convert --format onnx \(fixture): \(expected.count) outputs, onnxruntime vs engine max |Δ| \(d)")
        // Tessera reads its own file back, patch size and all (user audit: an Eltwise, written as
        // Sum, was refused, and the dynamic input needed --patch-size).
        let again = try ModelLoader.load(ModelSource(model: out))
        #expect(again.patchSize == model.patchSize && again.patchSizeSource.contains("tessera.patch_size"))
        let back = try NetRunner(net: again.net).forward(input, threads: 2).values
        let d2 = zip(back, expected).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(back.count == expected.count && d2 <= 1e-5, "\(fixture): re-imported ONNX differs by \(d2)")
    }

    @Test(
        "An upload job and run's local workers map an ONNX model byte-identically to the in-process engine",
        arguments: ["seed_net", "padded_residual"])
    func distributedEqualsInProcess(_ name: String) throws {
        let group = try ProcessGroup("onnx-cluster")
        defer { group.stop() }
        let image = group.directory + "/tissue.png"
        try ClusterFixture.writeImage(to: image, height: 45, width: 38)
        // The seed-shaped net is exact; the residual one pads (every tile pads where the whole image does).
        let model = Self.dir + "/\(name)/model.onnx"
        let padded = name == "padded_residual"
        let flags = ["--model", model] + Self.torchvision + (padded ? ["--allow-padding"] : [])
        let local = try Self.inProcessNPY(
            model, image: image, mode: .dense, scratch: group.directory, allowPadding: padded)

        let (workers, clients) = try group.startCoordinator()
        for i in 1...2 { try group.startWorker(workers, name: "w\(i)") }
        let out = group.directory + "/upload"
        let submit = try group.start(
            "tessera-coordinator",
            ["submit", "--coordinator", clients] + flags
                + ["--mode", "dense", "--tile", "16", "--outputs", "npy", "--wait", "--out", out, image],
            log: "submit")
        #expect(group.wait(submit, timeout: 120) == 0, "\(group.log("submit"))\n\(group.log("coordinator"))")
        let uploadedSame = ClusterFixture.bytes(out + "/tissue.npy") == local
        #expect(uploadedSame, "the upload job's map differs from the in-process one")
        #expect(local.count > 38 * 45 * 2 * 4)

        let runOut = group.directory + "/run"
        let run = try group.start(
            "tessera-coordinator",
            ["run"] + flags
                + [
                    "--workers", "2", "--check", "0", "--mode", "dense", "--tile", "16", "--outputs", "npy", "--out",
                    runOut, image,
                ],
            log: "run")
        // (--check 0: a net that is not exact is otherwise mapped in-process, to be checked.)
        #expect(group.wait(run, timeout: 120) == 0, "\(group.log("run"))")
        #expect(group.log("run").contains("embedded coordinator"), "\(group.log("run"))")
        // Every multi-worker run ended with this warning (Caffe audit): a goodbye of a worker already let go.
        #expect(!group.log("run").contains("message from an unregistered worker"), "\(group.log("run"))")
        let ranSame = ClusterFixture.bytes(runOut + "/tissue.npy") == local
        #expect(ranSame, "run's map with local workers differs from the in-process one")
    }
}
