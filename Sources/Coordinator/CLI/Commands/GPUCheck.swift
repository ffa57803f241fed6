import ArgumentParser
import CLISupport
import Foundation
import TesseraCUDA
import TesseraCore
import TesseraEngine
import TesseraImage
import TesseraModel
import TesseraPlan

/// `tessera-coordinator gpu-check`: the engine's GPU backend against the CPU engine
/// and the independent fixtures, on a machine with a GPU but no Swift toolchain
/// (what `scripts/device-check.sh` runs). Exits 1 when any check fails.
struct GPUCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gpu-check",
        abstract: "Check the CUDA engine against the CPU engine and the fixtures, and time it.",
        discussion: """
            Checks, each printed as PASS or FAIL with its measured difference: every fixture net's \
            patch probabilities (GPU vs the OpenCV/NumPy reference), its naive/dense/shift/fast maps (GPU \
            vs CPU engine, and vs the reference naive map where the net is exact or the mode is naive), \
            the demo model's naive, dense and shift maps of the demo image, and that the same tile gives \
            the same bytes twice. With --seed-model it also times fast, shift and dense on a synthetic \
            image (engine time including host↔device transfers, preprocessing excluded) and compares the \
            GPU map with the CPU map. With --naive-model (a net that pads, such as the seed's nuclei \
            caffemodel) it times naive on a --size square and compares a --naive-check-crop corner with \
            the CPU engine's naive map.
            """
    )

    // Its own --device, defaulting to the first GPU: the shared flags' default, cpu, is refused here
    // (docs/CLI audit 36 F17: --help showed a default that failed).
    @Option(help: ArgumentHelp("The GPU to check: cuda (GPU 0) or cuda:N.", valueName: "device"))
    var device = "cuda"
    @Option(help: DeviceFlags.precisionHelp) var precision = "fp32"
    @Option(help: "Fixture folder.") var fixtures = "Tests/Fixtures"
    @Option(help: "Demo model folder (deploy.prototxt + nuclei32.caffemodel).") var demo = "models/demo"
    @Option(help: "Demo image.") var demoImage = "examples/ihc.png"
    @Option(help: "Check only the top-left N×N pixels of the demo image (default: all of it).") var demoCrop: Int?
    @Option(help: "A deploy.prototxt to time with fixed random weights (e.g. the seed net).") var seedModel: String?
    @Option(help: "Side of the synthetic timing image.") var size = 2000
    @Option(help: "Timed repetitions (best and median reported).") var repeats = 5
    @Option(help: "Largest accepted |GPU − CPU| and |GPU − reference| on probabilities.") var tolerance: Float = 1e-4
    @Option(help: "Write the dense form of --seed-model as JSON (for benchmarks/torch_peer.py).") var exportDense:
        String?
    @Flag(help: "Skip the CPU timings of --seed-model (they take seconds).") var noCpuTiming = false
    @Option(help: "A classifier (.caffemodel with its training net, or a deploy.prototxt) to time naive on.")
    var naiveModel: String?
    @Option(help: "Side of the corner of the --naive-model map compared with the CPU engine's naive map.")
    var naiveCheckCrop = 128

    func validate() throws { try DeviceFlags.validate(device: device, precision: precision) }

    func run() throws {
        let device = try DeviceFlags.resolve(device: self.device, precision: precision)
        guard case .cuda(let index, _) = device else { throw ValidationError("gpu-check needs --device cuda[:N]") }
        print("device: \(try CUDAContext.get(device: index).summary)")
        var failures = 0
        func report(_ name: String, _ diff: Float, limit: Float? = nil) {
            let ok = diff <= (limit ?? tolerance) && !diff.isNaN
            if !ok { failures += 1 }
            print(String(format: "%@ %-58@ max|Δ| %.3g", ok ? "PASS" : "FAIL", name, Double(diff)))
        }
        try checkFixtures(device, report)
        try checkDemo(device, report)
        if let seedModel { try timeSeed(seedModel, device, report) }
        if let naiveModel { try timeNaive(naiveModel, device, report) }
        print(failures == 0 ? "gpu-check: all checks passed" : "gpu-check: \(failures) check(s) FAILED")
        if failures > 0 { throw ExitCode(1) }
    }

    static func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    private func checkFixtures(_ device: ComputeDevice, _ report: (String, Float, Float?) -> Void) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: fixtures).sorted()
            .filter { FileManager.default.fileExists(atPath: "\(fixtures)/\($0)/manifest.json") }
        guard !names.isEmpty else { throw CommandError("no fixtures under \(fixtures)") }
        for name in names {
            let f = try FixtureFiles(folder: "\(fixtures)/\(name)")
            let model = try ModelLoader.load(
                ModelSource(
                    model: "\(f.folder)/deploy.prototxt",
                    weights: "\(f.folder)/weights.caffemodel"))
            // Patches through the classifier as imported (InnerProduct layers and all).
            guard case .cuda(let index, let precision) = device else { return }
            let gpu = try CUDANetRunner(
                net: model.classifier, context: CUDAContext.get(device: index), precision: precision)
            let inputs = try f.floats("patches", "input"), expected = try f.floats("patches", "probabilities")
            let shape = try f.shape("patches", "input")
            let (n, c, p) = (shape[0], shape[1], shape[2])
            var got: [Float] = []
            for i in 0..<n {
                let patch = Tensor(
                    Shape(c: c, h: p, w: p), values: Array(inputs[(i * c * p * p)..<((i + 1) * c * p * p)]))
                got += try gpu.forward(patch, threads: 1, origin: .zero).values
            }
            report("\(name): patches, GPU vs \(f.reference)", Self.maxDiff(got, expected), nil)
            // Maps: GPU engine vs CPU engine in each mode, and vs the reference naive map.
            let cpuEngine = try MapEngine(classifier: model.classifier, patch: model.patchSize, allowPadding: true)
            let gpuEngine = try MapEngine(
                classifier: model.classifier, patch: model.patchSize, allowPadding: true,
                device: device)
            let image = try f.image()
            let prep = try f.preprocessing()
            let reference = try f.floats("map", "map")
            for mode in [MapMode.naive, .dense, .shift, .fast] {
                let cpuMap = try LocalMapper(engine: cpuEngine, preprocessing: prep).map(image, mode: mode)
                let gpuMap = try LocalMapper(engine: gpuEngine, preprocessing: prep).map(image, mode: mode)
                report("\(name): \(mode.rawValue) map, GPU vs CPU", Self.maxDiff(gpuMap.data, cpuMap.data), nil)
                if mode == .naive || (mode != .fast && model.geometry.isExact) {
                    report(
                        "\(name): \(mode.rawValue) map, GPU vs \(f.reference) naive map",
                        Self.maxDiff(gpuMap.data, reference), nil)
                }
            }
        }
    }

    private func checkDemo(_ device: ComputeDevice, _ report: (String, Float, Float?) -> Void) throws {
        let model = try ModelLoader.load(
            ModelSource(
                model: "\(demo)/deploy.prototxt",
                weights: "\(demo)/nuclei32.caffemodel"))
        let prep = Preprocessing(mean: [134, 151, 171], scale: 0.015625, channelOrder: .bgr)
        let image = try Self.crop(PNGReader.read(path: demoImage), to: demoCrop)
        let cpuEngine = try MapEngine(model: model)
        let gpuEngine = try MapEngine(model: model, device: device)
        for mode in [MapMode.naive, .dense, .shift] {
            let cpuMap = try LocalMapper(engine: cpuEngine, preprocessing: prep).map(image, mode: mode)
            let gpuMap = try LocalMapper(engine: gpuEngine, preprocessing: prep).map(image, mode: mode)
            report(
                "demo \(image.width)×\(image.height): \(mode.rawValue) map, GPU vs CPU",
                Self.maxDiff(gpuMap.data, cpuMap.data), nil)
        }
        // The same tile twice gives the same bytes (tiles of 96 map pixels).
        let a = try LocalMapper(engine: gpuEngine, preprocessing: prep).map(image, mode: .dense, tile: 96)
        let b = try LocalMapper(engine: gpuEngine, preprocessing: prep).map(image, mode: .dense, tile: 96)
        report(
            "demo: dense tiles computed twice on the GPU are byte-identical",
            a.data.withUnsafeBytes { x in b.data.withUnsafeBytes { y in x.elementsEqual(y) ? 0 : 1 } }, 0)
        // Two pipelines on one GPU (--device cuda:0,cuda:0): two threads map at once, sharing
        // the context (and, with TESSERA_CUDA_OVERLAP=1, overlapping transfers with compute).
        let lock = NSLock()
        var concurrent: [[Float]] = []
        var failure: Error?
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            do {
                let m = try LocalMapper(engine: gpuEngine, preprocessing: prep).map(image, mode: .dense, tile: 96)
                lock.withLock { concurrent.append(m.data) }
            } catch {
                lock.withLock { failure = error }
            }
        }
        if let failure { throw failure }
        report(
            "demo: dense tiles from two threads at once are byte-identical",
            concurrent.allSatisfy { $0 == a.data } ? 0 : 1, 0)
    }

    private func timeSeed(_ path: String, _ device: ComputeDevice, _ report: (String, Float, Float?) -> Void) throws {
        let loaded = try ModelLoader.load(ModelSource(model: path, requireWeights: false))
        let classifier = loaded.hasWeights ? loaded.classifier : loaded.classifier.withRandomWeights(seed: 42)
        let gpuEngine = try MapEngine(
            classifier: classifier, patch: loaded.patchSize, allowPadding: true, device: device)
        let cpuEngine =
            noCpuTiming
            ? nil
            : try MapEngine(classifier: classifier, patch: loaded.patchSize, allowPadding: true)
        if let exportDense {
            let dense = try gpuEngine.fcn.densified(patch: gpuEngine.geometry.patchSize).net
            let input = gpuEngine.tasks.inputRect(
                TileTask(mode: .dense, rect: PixelRect(y: 0, x: 0, height: size, width: size)))
            try DenseNetExport.write(dense, inputSize: Size2(input.height, input.width), to: exportDense)
        }
        let image = SyntheticImage(side: size, seed: 7)
        let prep = Preprocessing(mean: [104, 117, 123])
        let mapping = try ChannelMapping.resolve(imageChannels: 3, netChannels: classifier.inputChannels, order: .bgr)
        print("timing \(classifier.name) on \(size)×\(size), engine time incl. host↔device transfers:")
        for mode in [MapMode.fast, .shift, .dense] {
            let tasks = TilePlan.tasks(mode: mode, image: Size2(size, size), tile: size, geometry: gpuEngine.tasks)
            let inputs = tasks.map { task in
                PixelRegion(
                    image: image, paddedRect: gpuEngine.tasks.inputRect(task), halfPatch: gpuEngine.tasks.halfPatch
                )
                .tensor(mapping: mapping, preprocessing: prep)
            }
            let macs = try tasks.reduce(0) { $0 + (try gpuEngine.convolutionMACs($1)) }
            var times: [Double] = []
            var gpuOut: [Tensor] = []
            for r in 0...max(1, repeats) {  // run 0 warms up (plans, buffers)
                let start = DispatchTime.now()
                let outs = try zip(tasks, inputs).map { try gpuEngine.run($0, input: $1, threads: 1) }
                let t = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
                if r > 0 { times.append(t) } else { gpuOut = outs }
            }
            times.sort()
            var line = String(
                format: "  %-6@ GPU best %.4f s, median %.4f s, %.0f GFLOP/s (%d task%@)",
                mode.rawValue, times[0], times[times.count / 2], 2 * Double(macs) / times[0] / 1e9,
                tasks.count, tasks.count == 1 ? "" : "s")
            if let cpuEngine {
                let threads = ProcessInfo.processInfo.activeProcessorCount
                let start = DispatchTime.now()
                let cpuOut = try zip(tasks, inputs).map { try cpuEngine.run($0, input: $1, threads: threads) }
                let t = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
                line += String(format: "; CPU (%d threads) %.3f s = %.1f× the GPU", threads, t, t / times[0])
                let diff = zip(gpuOut, cpuOut).reduce(Float(0)) { max($0, Self.maxDiff($1.0.values, $1.1.values)) }
                print(line)
                report("seed \(mode.rawValue) \(size)×\(size): GPU vs CPU", diff, nil)
            } else {
                print(line)
            }
        }
    }

    /// The top-left `side`×`side` pixels of `image` (all of it when nil or larger).
    static func crop(_ image: PixelImage, to side: Int?) throws -> PixelImage {
        guard let side, side < image.width || side < image.height else { return image }
        guard side > 0 else { throw ValidationError("--demo-crop must be positive") }
        let (w, h, c) = (min(side, image.width), min(side, image.height), image.channels)
        func rows<T>(_ values: [T]) -> [T] {
            (0..<h).flatMap { y in values[(y * image.width * c)..<((y * image.width + w) * c)] }
        }
        switch image.samples {
        case .uint8(let v): return PixelImage(width: w, height: h, channels: c, samples: .uint8(rows(v)))
        case .uint16(let v): return PixelImage(width: w, height: h, channels: c, samples: .uint16(rows(v)))
        }
    }

    /// naive of a classifier (a net that pads: the exact map there is) on a synthetic
    /// --size square: the GPU's time for the whole square, and its top-left corner against
    /// the CPU engine's naive map of that corner alone (and computed twice on the GPU).
    private func timeNaive(_ path: String, _ device: ComputeDevice, _ report: (String, Float, Float?) -> Void) throws {
        let loaded = try ModelLoader.load(
            path.hasSuffix(".caffemodel")
                ? ModelSource(weights: path) : ModelSource(model: path, requireWeights: false))
        let classifier = loaded.hasWeights ? loaded.classifier : loaded.classifier.withRandomWeights(seed: 42)
        let gpuEngine = try MapEngine(
            classifier: classifier, patch: loaded.patchSize, allowPadding: true, device: device)
        let cpuEngine = try MapEngine(classifier: classifier, patch: loaded.patchSize, allowPadding: true)
        let image = SyntheticImage(side: size, seed: 9)
        let prep = Preprocessing(mean: [104, 117, 123], scale: 1.0 / 64)
        let mapping = try ChannelMapping.resolve(imageChannels: 3, netChannels: classifier.inputChannels, order: .bgr)
        func run(_ engine: MapEngine, side: Int, threads: Int) throws -> (Tensor, Double) {
            let task = TileTask(
                mode: .naive, rect: PixelRect(y: 0, x: 0, height: side, width: side), image: Size2(size, size))
            let input = PixelRegion(
                image: image, paddedRect: engine.tasks.inputRect(task), halfPatch: engine.tasks.halfPatch
            ).tensor(mapping: mapping, preprocessing: prep)
            let start = DispatchTime.now()
            let out = try engine.run(task, input: input, threads: threads)
            return (out, Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
        }
        let crop = min(naiveCheckCrop, size)
        let threads = ProcessInfo.processInfo.activeProcessorCount
        let (cpuCorner, cpuTime) = try run(cpuEngine, side: crop, threads: threads)
        let (gpuCorner, _) = try run(gpuEngine, side: crop, threads: 1)  // also makes the plans
        let (again, _) = try run(gpuEngine, side: crop, threads: 1)
        report(
            "naive \(classifier.name) \(crop)×\(crop): GPU vs CPU", Self.maxDiff(gpuCorner.values, cpuCorner.values),
            nil)
        report(
            "naive \(classifier.name) \(crop)×\(crop): computed twice, byte-identical",
            gpuCorner.values == again.values ? 0 : 1, 0)
        var times: [Double] = []
        var whole: Tensor?
        for _ in 0..<max(1, min(repeats, 3)) {
            let (out, t) = try run(gpuEngine, side: size, threads: 1)
            times.append(t)
            whole = out
        }
        times.sort()
        let macs = try gpuEngine.convolutionMACs(
            TileTask(mode: .naive, rect: PixelRect(y: 0, x: 0, height: size, width: size)))
        print(
            String(
                format: "  naive  GPU best %.3f s, median %.3f s, %.0f GFLOP/s (%@ %d×%d, one task); "
                    + "CPU (%d threads) %.2f s for the %d×%d corner = %.0f s for the whole square",
                times[0], times[times.count / 2], 2 * Double(macs) / times[0] / 1e9, classifier.name, size, size,
                threads, cpuTime, crop, crop, cpuTime * Double(size * size) / Double(crop * crop)))
        if let whole {
            var corner: [Float] = []
            for c in 0..<whole.c {
                for y in 0..<crop { for x in 0..<crop { corner.append(whole[c, y, x]) } }
            }
            report(
                "naive \(size)×\(size): its \(crop)×\(crop) corner vs the corner alone (GPU)",
                Self.maxDiff(corner, gpuCorner.values), nil)
        }
    }
}

/// The files of one fixture folder (see Tests/Fixtures/README.md).
private struct FixtureFiles {
    let folder: String
    let manifest: [String: Any]

    init(folder: String) throws {
        self.folder = folder
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/manifest.json"))
        guard let m = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CommandError("\(folder)/manifest.json is not a JSON object")
        }
        manifest = m
    }

    var reference: String { manifest["reference"] as? String ?? "reference" }

    private func entry(_ part: String, _ key: String) throws -> [String: Any] {
        guard let p = manifest[part] as? [String: Any], let e = p[key] as? [String: Any] else {
            throw CommandError("\(folder)/manifest.json has no \(part).\(key)")
        }
        return e
    }

    func shape(_ part: String, _ key: String) throws -> [Int] {
        guard let s = try entry(part, key)["shape"] as? [Int] else {
            throw CommandError("\(folder)/manifest.json: \(part).\(key) has no shape")
        }
        return s
    }

    func bytes(_ part: String, _ key: String) throws -> Data {
        guard let file = try entry(part, key)["file"] as? String else {
            throw CommandError("\(folder)/manifest.json: \(part).\(key) has no file")
        }
        return try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(file)"))
    }

    func floats(_ part: String, _ key: String) throws -> [Float] {
        let data = try bytes(part, key)
        guard data.count == (try shape(part, key)).reduce(4, *) else {
            throw CommandError("\(folder): \(part).\(key) has \(data.count) bytes, not what its shape says")
        }
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func image() throws -> RawImage {
        let s = try shape("map", "image")
        return RawImage(width: s[1], height: s[0], channels: s[2], pixels: [UInt8](try bytes("map", "image")))
    }

    func preprocessing() throws -> Preprocessing {
        guard let map = manifest["map"] as? [String: Any], let p = map["preprocess"] as? [String: Any] else {
            throw CommandError("\(folder)/manifest.json has no map.preprocess")
        }
        let mean = (p["mean"] as? [Double] ?? []).map(Float.init)
        return Preprocessing(
            mean: mean, rawScale: Float(p["raw_scale"] as? Double ?? 1),
            scale: Float(p["scale"] as? Double ?? 1),
            channelOrder: (map["channel_order"] as? String) == "rgb" ? .rgb : .bgr)
    }
}

/// Interleaved 8-bit pixels in memory.
private struct RawImage: PixelSource {
    let width: Int, height: Int, channels: Int
    let pixels: [UInt8]
    func value(y: Int, x: Int, channel: Int) -> Float { Float(pixels[(y * width + x) * channels + channel]) }
}

/// The dense net's layers as JSON, for a peer implementation to build the same
/// computation (weights are not exported: the peer times with its own).
enum DenseNetExport {
    static func write(_ net: Net, inputSize: Size2, to path: String) throws {
        var layers: [[String: Any]] = []
        for layer in net.layers {
            var l: [String: Any] = ["name": layer.name, "type": layer.op.typeName]
            switch layer.op {
            case .convolution(let c):
                l["outputs"] = c.outputs
                l["inputs"] = c.inputsPerGroup * c.group
                l["kernel"] = [c.kernel.h, c.kernel.w]
                l["stride"] = [c.stride.h, c.stride.w]
                l["pad"] = [c.pad.h, c.pad.w]
                l["dilation"] = [c.dilation.h, c.dilation.w]
                l["group"] = c.group
            case .pooling(let p):
                l["method"] = p.method.rawValue
                l["ceil_mode"] = p.roundsUp
                l["kernel"] = [p.kernel.h, p.kernel.w]
                l["stride"] = [p.stride.h, p.stride.w]
                l["pad"] = [p.pad.h, p.pad.w]
                l["dilation"] = [p.dilation.h, p.dilation.w]
            case .lrn(let r):
                l["region"] = r.region.rawValue
                l["size"] = r.size
                l["alpha"] = r.alpha
                l["beta"] = r.beta
                l["k"] = r.k
            case .relu(let slope):
                l["slope"] = slope
            default:
                break
            }
            layers.append(l)
        }
        let json: [String: Any] = [
            "name": net.name, "inputChannels": net.inputChannels,
            "inputSize": [inputSize.h, inputSize.w], "layers": layers,
        ]
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: path))
    }
}
