import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TesseraModel
@testable import TestSupport

/// The smallest inputs behind what the fuzzers found, each fixed in the parser.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    // MARK: - PNG

    @Test("a tiny PNG declaring 1.2·10⁹ pixels (under the pixel limit) is refused before any allocation")
    func pngHeaderLiesAboutSize() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        // 40000 × 30000 RGB = 3.6 GB of samples in a file of under 100 bytes: libpng would
        // zero a 120 kB row and the reader would reserve 3.6 GB before the data ran out.
        let path = directory.file("liar.png")
        let bytes =
            pngSignature + pngChunk("IHDR", bigEndian(40_000) + bigEndian(30_000) + [8, 2, 0, 0, 0])
            + pngChunk("IDAT", PNGMutator.storedZlib([0, 1, 2, 3])) + pngChunk("IEND", [])
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let start = ContinuousClock.now
        for read in [{ _ = try PNGReader.header(path: path) }, { _ = try PNGReader.read(path: path) }] {
            do {
                try read()
                Issue.record("a \(bytes.count)-byte file claiming 40000×30000 pixels was accepted")
            } catch let e as ImageIOError {
                #expect(e.kind == .truncated, "\(e)")
                #expect(e.detail.contains("40000 x 30000") && e.detail.contains("\(bytes.count) bytes"), "\(e)")
            }
        }
        #expect(ContinuousClock.now - start < .seconds(1))
    }

    @Test("an ancillary chunk declaring 1 GB in a 107-byte file is refused at once, not zeroed by libpng")
    func pngChunkLengthLie() throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        // Found by the PNG fuzzer (seed 0x9a6f022, input 64937): a palette image whose second
        // chunk, sPLT, declares 0x41000006 bytes. libpng allocated and zeroed them (0.7 s, 1 GB).
        let hex =
            "89504e470d0a1a0a0000000d4948445200000008000000090103000001429acffb00000006504c54453e663d92da2ed6b2"
            + "31474100000673504c543e663d92da2e56db85150000000e494441547801010300fcff025a0300c000607e71dc4100000000"
            + "49454e44ae426082"
        let bytes = stride(from: 0, to: hex.count, by: 2).map { i -> UInt8 in
            let a = hex.index(hex.startIndex, offsetBy: i)
            return UInt8(hex[a..<hex.index(a, offsetBy: 2)], radix: 16)!
        }
        let path = directory.file("splt.png")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let start = ContinuousClock.now
        do {
            _ = try PNGReader.read(path: path)
            Issue.record("accepted")
        } catch let e as ImageIOError {
            #expect(e.kind == .truncated, "\(e)")
            #expect(e.detail.contains("chunk 'sPLT' at byte 51 declares 1090519046 bytes"), "\(e)")
        }
        #expect(ContinuousClock.now - start < .milliseconds(100))
    }
}

// MARK: - Models

/// Parses `text` and loads it as `inspect` does (shape-only unless it holds blobs),
/// then computes the report; returns the error message, or nil when it loads.
func loadProbe(
    _ text: String, holdsWeights: Bool = false, patchSize: Int? = nil,
    placeholderLimit: Int = 1 << 22, patchValueLimit: Int = ModelLoader.maxPatchValues
) -> String? {
    do {
        var ignored: [String] = []
        let net = try CaffeFiles.parsePrototxt(text, file: "probe.prototxt", ignored: &ignored)
        let loaded = try ModelLoader.load(
            definition: net, definitionFile: "probe.prototxt",
            definitionHoldsWeights: holdsWeights, patchSize: patchSize,
            placeholderLimit: placeholderLimit, patchValueLimit: patchValueLimit)
        _ = try ModelReport(model: loaded, preprocessing: Preprocessing())
        if let full = loaded.declaredInput { _ = try loaded.net.shapes(input: full) }
        return nil
    } catch {
        return "\(error)"
    }
}

func conv(_ name: String, _ bottom: String, _ params: String) -> String {
    "layer { name: \"\(name)\" type: \"Convolution\" bottom: \"\(bottom)\" top: \"\(name)\" convolution_param { \(params) } }\n"
}

func pool(_ name: String, _ bottom: String, _ params: String) -> String {
    "layer { name: \"\(name)\" type: \"Pooling\" bottom: \"\(bottom)\" top: \"\(name)\" pooling_param { pool: MAX \(params) } }\n"
}

@Suite("Fuzz regressions: models")
struct ModelFuzzRegressionTests {
    @Test("four stride-65536 convolutions (total stride 2^64) are refused, not an overflow trap")
    func strideChain() {
        let text =
            "input: \"data\" input_shape { dim: 1 dim: 1 dim: 1 dim: 1 }\n"
            + conv("c1", "data", "num_output: 1 kernel_size: 1 stride: 65536")
            + conv("c2", "c1", "num_output: 1 kernel_size: 1 stride: 65536")
            + conv("c3", "c2", "num_output: 1 kernel_size: 1 stride: 65536")
            + conv("c4", "c3", "num_output: 1 kernel_size: 1 stride: 65536")
        // Neither the declared 1×1 input nor the receptive field gives a patch size: both overflow.
        let error = loadProbe(text)
        #expect(error?.contains("the patch size is unknown") == true, "\(error ?? "loaded")")
        let given = loadProbe(text, patchSize: 1)
        #expect(
            given?.contains(
                "layer 'c2': its vertical receptive field, total stride or offset exceeds "
                    + "2147483647 pixels") == true, "\(given ?? "loaded")")
    }

    @Test("dilated kernels whose receptive field passes Int give no patch size instead of trapping")
    func receptiveFieldChain() {
        let layers = (1...3).map { i in
            Layer(
                name: "c\(i)",
                op: .convolution(
                    Convolution(
                        outputs: 1, kernel: Size2(65536, 1), stride: Size2(65536, 1),
                        dilation: Size2(65536, 1), weights: [], bias: nil)),
                bottoms: [i == 1 ? "data" : "c\(i - 1)"], tops: ["c\(i)"])
        }
        let net = Net(name: "rf", inputName: "data", inputChannels: 1, patchSize: nil, layers: layers)
        #expect(net.receptiveFieldWithoutShapes() == nil)
        #expect(
            Net(name: "rf", inputName: "data", inputChannels: 1, patchSize: nil, layers: Array(layers.prefix(1)))
                .receptiveFieldWithoutShapes() == nil)  // 1 + 65536·65535 > 2^31 − 1
    }

    @Test("an activation of more than 2^48 values is refused by shape inference")
    func hugeActivation() {
        let text =
            "input: \"data\" input_shape { dim: 1 dim: 1 dim: 1048576 dim: 1048576 }\n"
            + conv("c1", "data", "num_output: 4194304 kernel_size: 1 bias_term: false")
            + "layer { name: \"cat\" type: \"Concat\" bottom: \"c1\" bottom: \"c1\" bottom: \"c1\" bottom: \"c1\" "
            + "top: \"cat\" }\n"
        let error = loadProbe(text)
        #expect(
            error?.contains("layer 'c1': its output would be 4194304×1048576×1048576 values, more than 2^48")
                == true, "\(error ?? "loaded")")
        let concat =
            "input: \"data\" input_shape { dim: 1 dim: 256 dim: 1048576 dim: 1048576 }\n"
            + "layer { name: \"cat\" type: \"Concat\" bottom: \"data\" bottom: \"data\" top: \"cat\" }\n"
        #expect(loadProbe(concat)?.contains("layer 'cat': its output would be 512×1048576×1048576 values") == true)
    }

    @Test("a report whose MAC counts pass Int saturates instead of trapping")
    func hugeReport() throws {
        let text =
            "input: \"data\" input_shape { dim: 1 dim: 1 dim: 1048576 dim: 1048576 }\n"
            + conv("c1", "data", "num_output: 256 kernel_size: 1 bias_term: false")
            + conv("c2", "c1", "num_output: 256 kernel_h: 256 kernel_w: 1 bias_term: false")
            + pool("p1", "c2", "kernel_size: 65536 stride: 65536")
            + pool("p2", "p1", "kernel_size: 16 stride: 16")
        // 2^48 activation values a patch: load refuses it unless the limit is lifted, as here.
        #expect(loadProbe(text, placeholderLimit: 1 << 25)?.contains("one patch needs") == true)
        #expect(loadProbe(text, placeholderLimit: 1 << 25, patchValueLimit: .max) == nil)
        var ignored: [String] = []
        let net = try CaffeFiles.parsePrototxt(text, file: "probe.prototxt", ignored: &ignored)
        let loaded = try ModelLoader.load(
            definition: net, definitionFile: "probe.prototxt", patchSize: nil,
            placeholderLimit: 1 << 25, patchValueLimit: .max)
        let report = try ModelReport(model: loaded, preprocessing: Preprocessing())
        #expect(report.layers[1].macsPerPatch == Int.max)  // 2^24 MACs at ~2^40 positions
        #expect(report.macsPerOutputPixel.naive == Int.max)
    }

    @Test("a convolution whose blob has a 0 dimension (0 input channels) is refused, not an overflow trap")
    func zeroDimensionBlob() {
        let text =
            "input: \"data\"\n"
            + "layer { name: \"c1\" type: \"Convolution\" bottom: \"data\" top: \"c1\" "
            + "convolution_param { num_output: 2147483648 kernel_size: 65536 bias_term: false } "
            + "blobs { shape { dim: 2147483648 dim: 0 dim: 65536 dim: 65536 } } }\n"
        let error = loadProbe(text, holdsWeights: true)
        #expect(
            error?.contains("layer 'c1': its weights blob gives 0 input channels: a convolution needs at least one")
                == true,
            "\(error ?? "loaded")")
        let declared = text.replacingOccurrences(
            of: "input: \"data\"\n",
            with: "input: \"data\" input_dim: 1 input_dim: 0 input_dim: 4 input_dim: 4\n")
        #expect(loadProbe(declared, holdsWeights: true)?.contains("not between 1 and 2^20") == true)
        // The weights' own arithmetic cannot trap either.
        let c = Convolution(outputs: 1 << 31, kernel: Size2(65536, 65536), weights: [], bias: nil)
        #expect(c.inputsPerGroup == 0)
    }
}
