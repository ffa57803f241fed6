import Foundation
import Logging
import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TestSupport

/// Findings of the Caffe importer's differential fuzz against OpenCV (numbers: the audit's NumPy reference; here
/// what the importer reads and refuses).
@Suite("Caffe import: fuzz audit findings")
struct CaffeImportAuditTests {
    static func training(_ data: String, _ body: String) -> String {
        """
        name: "t"
        layer { name: "data" type: "Data" top: "data" top: "label" \(data) }
        \(body)
        layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" inner_product_param { num_output: 2 } }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
        """
    }

    static let reluFirst = """
        layer { name: "relu0" type: "ReLU" bottom: "data" top: "relu0" }
        layer { name: "conv1" type: "Convolution" bottom: "relu0" top: "conv1"
                convolution_param { num_output: 4 kernel_size: 3 } }
        """

    @Test("a training net starting with a ReLU: its channels from mean_value, or a clear refusal")
    func reluFirstTrainingNet() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let withMeans = Self.training(
            "transform_param { crop_size: 8 mean_value: 120 mean_value: 110 mean_value: 100 scale: 0.01 }",
            Self.reluFirst)
        let m = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "a.prototxt", withMeans), requireWeights: false))
        #expect(m.classifier.inputChannels == 3 && m.geometry.receptiveField == Size2(square: 8))
        // One mean for every channel says nothing of their number, and no weights are given.
        let oneMean = Self.training("transform_param { crop_size: 8 mean_value: 120 }", Self.reluFirst)
        let message = loadError(ModelSource(model: try writeFile(dir, "b.prototxt", oneMean), requireWeights: false))
        #expect(message.contains("input channels is unknown") && message.contains("input_shape"), "\(message)")
    }

    /// One channel too (re-run of the fuzz: a grayscale BatchNorm's one-value blobs were taken for "unknown").
    @Test("a training net starting with a BatchNorm: its channels from the BatchNorm's weights", arguments: [1, 5])
    func batchNormFirstTrainingNet(channels: Int) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let body = """
            layer { name: "bn0" type: "BatchNorm" bottom: "data" top: "bn0" }
            layer { name: "conv1" type: "Convolution" bottom: "bn0" top: "conv1"
                    convolution_param { num_output: 4 kernel_size: 3 } }
            """
        let deploy = """
            name: "t"
            input: "data"
            input_shape { dim: 1 dim: \(channels) dim: 8 dim: 8 }
            \(body)
            layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" inner_product_param { num_output: 2 } }
            layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
            """
        var net = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "d.prototxt", deploy), requireWeights: false)
        ).classifier.randomised(seed: 8)
        // Variances must be positive for the BatchNorm to be one.
        if case .batchNorm(var bn) = net.layers[0].op {
            bn.variance = bn.variance.map { abs($0) + 0.5 }
            net.layers[0].op = .batchNorm(bn)
        }
        let (_, data) = try CaffeWriter.write(net, input: Size2(square: 8))
        let weights = try writeFile(dir, "w.caffemodel", data)
        let train = Self.training("transform_param { crop_size: 8 }", body)
        let m = try ModelLoader.load(ModelSource(model: try writeFile(dir, "t.prototxt", train), weights: weights))
        #expect(m.classifier.inputChannels == channels)
    }

    @Test("V1 data_param scale and mean_file are read, as Caffe's upgrade moves them into transform_param")
    func legacyDataParam() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let v1 = """
            layers { name: "data" type: DATA top: "data" top: "label" transform_param { mean_value: 1 mean_value: 2 mean_value: 3 }
                     data_param { source: "x" batch_size: 4 scale: 0.00390625 crop_size: 6 mean_file: "m.binaryproto" } }
            layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
                     convolution_param { num_output: 2 kernel_size: 6 } }
            layers { name: "prob" type: SOFTMAX bottom: "conv1" top: "prob" }
            """
        let log = CapturedLog()
        let m = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "v1.prototxt", v1), requireWeights: false), logger: log.logger)
        #expect(m.declaredScale == 0.00390625)
        #expect(m.meanFileHint == "m.binaryproto")
        #expect(m.geometry.receptiveField == Size2(square: 6))
        // The mean file is pointed out in inspect's notes, not logged by the loader: a command that maps says
        // it only when no --mean-file or --mean is given (user review F4: it followed a given --mean-file).
        #expect(m.notes.contains { $0.contains("m.binaryproto") && $0.contains("--mean-file") })
        #expect(!log.messages.contains { $0.contains("m.binaryproto") }, "\(log.messages)")
        #expect(log.messages.contains { $0.contains("patch size") }, "the loader logs its other notes")
    }

    @Test("Eltwise PROD and MAX with coeff are refused; axis -3 is the channel axis")
    func eltwiseCoefficientsAndNegativeAxis() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func net(_ extra: String, axis: String = "") -> String {
            """
            name: "t"
            layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }
            layer { name: "a" type: "Convolution" bottom: "data" top: "a"
                    convolution_param { num_output: 2 kernel_size: 3 \(axis) } }
            layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 2 kernel_size: 3 } }
            layer { name: "m" type: "Eltwise" bottom: "a" bottom: "b" top: "m" eltwise_param { \(extra) } }
            layer { name: "cat" type: "Concat" bottom: "m" bottom: "a" top: "cat" concat_param { axis: -3 } }
            layer { name: "ip" type: "InnerProduct" bottom: "cat" top: "ip" inner_product_param { num_output: 2 axis: -3 } }
            layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
            """
        }
        for op in ["PROD", "MAX"] {
            let text = net("operation: \(op) coeff: 1 coeff: -1")
            let message = loadError(
                ModelSource(model: try writeFile(dir, "\(op).prototxt", text), requireWeights: false))
            #expect(message.contains("layer 'm'") && message.contains("only for SUM"), "\(message)")
        }
        let sum = net("operation: SUM coeff: 1 coeff: -1", axis: "axis: -3")
        let m = try ModelLoader.load(ModelSource(model: try writeFile(dir, "sum.prototxt", sum), requireWeights: false))
        #expect(m.geometry.classes == 2)
    }

    /// Model audit 48 F1: a train_val file lists its TRAIN data layer first; its mean, scale, mean file and crop
    /// size were taken, not the TEST layer's (a map 0.97 off).
    @Test("A train_val net's preprocessing and crop size are its TEST data layer's, whichever comes first")
    func testPhaseDataLayer() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = """
            layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
                    transform_param { crop_size: 8 mean_value: 200 mean_value: 200 mean_value: 200 scale: 0.02
                                      mirror: true mean_file: "train.binaryproto" } data_param { source: "t" batch_size: 8 } }
            """
        let test = """
            layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
                    transform_param { crop_size: 6 mean_value: 10 mean_value: 20 mean_value: 30 scale: 0.01
                                      mean_file: "val.binaryproto" } data_param { source: "v" batch_size: 8 } }
            """
        let body = """
            layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 2 kernel_size: 3 } }
            layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" inner_product_param { num_output: 2 } }
            layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
            """
        for (name, layers) in [("train-first", train + "\n" + test), ("test-first", test + "\n" + train)] {
            let m = try ModelLoader.load(
                ModelSource(
                    model: try writeFile(dir, "\(name).prototxt", "name: \"t\"\n" + layers + "\n" + body),
                    requireWeights: false))
            #expect(m.declaredMean == [10, 20, 30] && m.declaredScale == 0.01, "\(name)")
            #expect(m.meanFileHint == "val.binaryproto" && m.patchSize == Size2(square: 6), "\(name)")
        }
        // A TEST layer without a mean or scale: Caffe's TEST phase applies none, whatever the TRAIN layer says.
        let bare = test.replacingOccurrences(
            of: "mean_value: 10 mean_value: 20 mean_value: 30 scale: 0.01\n", with: "mean_value: 0 mean_value: 0 mean_value: 0 ")
        let m = try ModelLoader.load(
            ModelSource(
                model: try writeFile(dir, "bare.prototxt", "name: \"t\"\n" + train + "\n" + bare + "\n" + body),
                requireWeights: false))
        #expect(m.declaredMean == [0, 0, 0] && m.declaredScale == nil && m.patchSize == Size2(square: 6))
    }

    /// Model audit 48 F4: BVLC fields Tessera's caffe.proto leaves out (a data source's, a Crop's) were warned about
    /// as misspelt, "and BVLC Caffe refuses the file".
    @Test("BVLC fields of layers Tessera does not compute are noted as not read, not as misspelt")
    func bvlcFieldsNotRead() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = """
            name: "t"
            layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }
                    hdf5_data_param { source: "train.txt" batch_size: 8 } }
            layer { name: "data" type: "Python" top: "data" top: "label" include { phase: TEST }
                    python_param { module: "reader" layer: "Patches" }
                    transform_param { crop_size: 6 mean_value: 1 mean_value: 2 mean_value: 3 } }
            layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 2 kernel_size: 3 } }
            layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" inner_product_param { num_output: 2 } }
            layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
            """
        let m = try ModelLoader.load(ModelSource(model: try writeFile(dir, "h5.prototxt", text), requireWeights: false))
        #expect(m.patchSize == Size2(square: 6))
        #expect(!m.notes.contains { $0.hasPrefix(ModelLoader.warningPrefix) }, "\(m.notes)")
        for field in ["hdf5_data_param", "python_param"] {
            #expect(m.notes.contains { $0.contains("'\(field)'") && $0.contains("not read") }, "\(m.notes)")
        }
        // A Crop layer is refused for its type; its crop_param is no "misspelt field".
        let crop = """
            name: "t"
            layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
            layer { name: "c" type: "Crop" bottom: "data" bottom: "data" top: "c" crop_param { axis: 2 offset: 1 } }
            layer { name: "conv1" type: "Convolution" bottom: "c" top: "conv1" convolution_param { num_output: 2 kernel_size: 8 } }
            layer { name: "prob" type: "Softmax" bottom: "conv1" top: "prob" }
            """
        let message = loadError(ModelSource(model: try writeFile(dir, "crop.prototxt", crop), requireWeights: false))
        #expect(message.contains("'c'") && !message.contains("misspelt"), "\(message)")
    }

    /// Model audit 48 F3: a net whose branches do not line up at the input size it declares was refused as "the
    /// patch size is unknown", with the real reason in parentheses and a hint to give --patch-size.
    @Test("Branches that do not line up at the declared input size: that is the error, not the patch size")
    func misalignedAtDeclaredSize() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = """
            name: "t"
            input: "data"
            input_shape { dim: 1 dim: 3 dim: 10 dim: 10 }
            layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 4 kernel_size: 3 stride: 2 } }
            layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 4 kernel_size: 4 stride: 2 } }
            layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "e" }
            layer { name: "fc" type: "InnerProduct" bottom: "e" top: "fc" inner_product_param { num_output: 2 } }
            layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
            """
        let e = #expect(throws: ModelError.self) {
            try ModelLoader.load(ModelSource(model: try writeFile(dir, "m.prototxt", text), requireWeights: false))
        }
        #expect(e?.kind != .patchSize && e?.layer == "e", "\(String(describing: e))")
        #expect(
            e?.message.contains("do not line up") == true && e?.message.contains("patch size is unknown") == false
                && e?.message.contains("declares, 10)") == true, "\(String(describing: e))")
    }
}

/// A logger that keeps its messages, for tests of what is logged.
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var kept: [String] = []
    var messages: [String] { lock.withLock { kept } }

    var logger: Logger {
        Logger(label: "test.captured") { _ in Handler(log: self) }
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            log.lock.withLock { log.kept.append("\(event.message)") }
        }
    }
}
