import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraModel
@testable import TestSupport

/// Each kind of broken model gives a clear ModelError naming file, layer and numbers; none crashes.
@Suite("Model import errors and small nets")
struct ModelImportErrorTests {
    /// A tiny patch classifier: 3×8×8 → conv 4@3×3 → ReLU → pool 2/2 → fc 2 → Softmax.
    static let tiny = """
        name: "tiny"
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
        layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
                convolution_param { num_output: 4 kernel_size: 3 } }
        layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
        layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
        layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 2 } }
        layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
        """

    /// Writes the tiny net with random weights; returns (dir, prototxt path, caffemodel path, net).
    static func tinyFiles() throws -> (URL, String, String, Net) {
        let dir = try temporaryDirectory()
        let proto = try writeFile(dir, "tiny.prototxt", tiny)
        let shapeOnly = try ModelLoader.load(ModelSource(model: proto, requireWeights: false))
        let net = shapeOnly.classifier.randomised(seed: 3)
        let (_, data) = try CaffeWriter.write(net, input: Size2(square: 8))
        let weights = try writeFile(dir, "tiny.caffemodel", data)
        return (dir, proto, weights, net)
    }

    @Test func tinyNetLoadsAndConverts() throws {
        let (dir, proto, weights, net) = try Self.tinyFiles()
        defer { try? FileManager.default.removeItem(at: dir) }
        let m = try ModelLoader.load(ModelSource(model: proto, weights: weights))
        #expect(m.classifier == net)
        #expect(m.geometry.receptiveField == Size2(square: 8))
        #expect(m.geometry.stride == Size2(square: 2))
        guard case .convolution(let fc) = m.net.layers[3].op else { Issue.record("fc not converted"); return }
        #expect(fc.kernel == Size2(square: 3))
        #expect(m.net.layers[3].name == "fc-conv" && m.net.layers[4].bottoms == ["fc-conv"])
    }

    @Test("Caffe's round_mode: FLOOR rounds the pooled size down, is exact, and is written back")
    func poolingRoundMode() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // At 9×9 the pool sees 7 rows: rounded up (Caffe's default) 4 windows, the last partial.
        let nine = Self.tiny.replacingOccurrences(of: "dim: 8 dim: 8", with: "dim: 9 dim: 9")
        let ceil = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "ceil.prototxt", nine), requireWeights: false))
        #expect(!ceil.geometry.isExact && ceil.geometry.inexactReasons.joined().contains("partial"))
        let floorText = nine.replacingOccurrences(of: "stride: 2 }", with: "stride: 2 round_mode: FLOOR }")
        let floor = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "floor.prototxt", floorText), requireWeights: false))
        #expect(floor.geometry.isExact, "\(floor.geometry.inexactReasons)")
        #expect(try floor.classifier.shapes(input: Size2(square: 9)).layers[2].spatial == Size2(square: 3))
        #expect(try ceil.classifier.shapes(input: Size2(square: 9)).layers[2].spatial == Size2(square: 4))
        // Written as Caffe files and read back: the same net, rounding included.
        let net = floor.classifier.randomised(seed: 4)
        let (text, data) = try CaffeWriter.write(net, input: Size2(square: 9))
        #expect(text.contains("round_mode: FLOOR"), "\(text)")
        let again = try ModelLoader.load(
            ModelSource(
                model: try writeFile(dir, "again.prototxt", text), weights: try writeFile(dir, "again.caffemodel", data)
            ))
        #expect(again.classifier == net)
        // Those weights with the definition that rounds up: the InnerProduct's weights are too few,
        // and the error says which pooling rounds up and what to write.
        let e = loadError(
            ModelSource(
                model: try writeFile(dir, "ceil.prototxt", nine), weights: try writeFile(dir, "f.caffemodel", data)))
        #expect(
            e.contains("shape mismatch") && e.contains("pooling 'pool1'") && e.contains("round_mode: FLOOR"), "\(e)")
        // A mismatch with no partial pooling window gets no such hint: 8×8 (whole windows) with 9×9 weights.
        let (_, ceilData) = try CaffeWriter.write(ceil.classifier.randomised(seed: 5), input: Size2(square: 9))
        let plain = loadError(
            ModelSource(
                model: try writeFile(dir, "tiny.prototxt", Self.tiny),
                weights: try writeFile(dir, "c.caffemodel", ceilData)))
        #expect(plain.contains("shape mismatch") && !plain.contains("round_mode"), "\(plain)")
    }

    @Test("A fully convolutional prototxt written by Tessera records the patch size, so its map is placed alike")
    func writtenPatchSize() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // At 9×9 with a pooling that rounds down, the receptive field is 8: a patch size taken
        // from it would shift the map by one pixel (user audit).
        let nine = Self.tiny.replacingOccurrences(of: "dim: 8 dim: 8", with: "dim: 9 dim: 9")
            .replacingOccurrences(of: "stride: 2 }", with: "stride: 2 round_mode: FLOOR }")
        let loaded = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "nine.prototxt", nine), requireWeights: false))
        #expect(loaded.patchSize == Size2(square: 9) && loaded.geometry.receptiveField == Size2(square: 8))
        var fcn = loaded.net
        fcn.layers = try loaded.classifier.randomised(seed: 6).fullyConvolutional(patch: loaded.patchSize).layers
        let (text, data) = try CaffeWriter.write(fcn, input: Size2(square: 40))
        #expect(text.hasPrefix("# tessera.patch_size: 9x9\n"), "\(text.prefix(80))")
        let weights = try writeFile(dir, "fcn.caffemodel", data)
        let again = try ModelLoader.load(ModelSource(model: try writeFile(dir, "fcn.prototxt", text), weights: weights))
        #expect(again.patchSize == Size2(square: 9) && again.patchSizeSource.contains("tessera.patch_size"))
        #expect(again.net.layers == fcn.layers)
        // Without the line, the receptive field it is.
        let bare = text.split(separator: "\n").dropFirst().joined(separator: "\n")
        let guessed = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "bare.prototxt", bare), weights: weights))
        #expect(guessed.patchSize == Size2(square: 8))
        // A damaged line is an error, not a guess.
        let bad = text.replacingOccurrences(of: "9x9", with: "9x")
        let message = loadError(ModelSource(model: try writeFile(dir, "bad.prototxt", bad), weights: weights))
        #expect(message.contains("not HEIGHTxWIDTH"), "\(message)")
    }

    @Test func truncatedCaffemodel() throws {
        let (dir, proto, weights, _) = try Self.tinyFiles()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = try Data(contentsOf: URL(fileURLWithPath: weights))
        let cut = try writeFile(dir, "cut.caffemodel", data.prefix(data.count - 7))
        let message = loadError(ModelSource(model: proto, weights: cut))
        #expect(message.contains("cut.caffemodel") && message.contains("truncated or corrupt"), "\(message)")
    }

    @Test func corruptCaffemodel() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let junk = try writeFile(dir, "junk.caffemodel", Data([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00, 0x01, 0x9A]))
        let message = loadError(ModelSource(weights: junk))
        #expect(message.contains("junk.caffemodel") && message.contains("truncated or corrupt"), "\(message)")
    }

    @Test(
        "prototxt syntax errors give line and column",
        arguments: [
            ("layer {\n  name: \"a\"\n  type \"ReLU\"\n}\n", "line 3, column 8"),
            ("layer {\n  name: \"a\n}\n", "line 2, column 9"),
            ("layer {\n  name: \"a\"\n", "missing '}'"),
            ("name: \"x\"\n}\n", "line 2, column 1"),
        ])
    func syntaxError(text: String, expected: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try writeFile(dir, "bad.prototxt", text)
        let message = loadError(ModelSource(model: path, requireWeights: false))
        #expect(message.contains("bad.prototxt") && message.contains(expected), "\(message)")
    }

    @Test func schemaErrorGivesLineAndColumn() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = Self.tiny.replacingOccurrences(of: "pool: MAX", with: "pool: MAXIMUM")
        let path = try writeFile(dir, "bad.prototxt", text)
        let message = loadError(ModelSource(model: path, requireWeights: false))
        #expect(
            message.contains("line 6, column 84") && message.contains("'pool'") && message.contains("MAXIMUM"),
            "\(message)")
        let numbers = Self.tiny.replacingOccurrences(of: "num_output: 4", with: "num_output: -4")
        let p2 = try writeFile(dir, "bad2.prototxt", numbers)
        let m2 = loadError(ModelSource(model: p2, requireWeights: false))
        #expect(m2.contains("line 4") && m2.contains("num_output"), "\(m2)")
    }

    @Test func unknownFieldsAreSkippedWithANote() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = Self.tiny.replacingOccurrences(of: "num_output: 4", with: "num_output: 4 frobnicate: 3")
        let path = try writeFile(dir, "extra.prototxt", text)
        let m = try ModelLoader.load(ModelSource(model: path, requireWeights: false))
        #expect(m.notes.contains { $0.contains("frobnicate") && $0.contains("line 4") })
    }

    @Test func layerWithoutWeights() throws {
        let (dir, proto, _, net) = try Self.tinyFiles()
        defer { try? FileManager.default.removeItem(at: dir) }
        var partial = net
        partial.layers.removeAll { $0.name == "fc" }
        partial.layers.removeAll { $0.name == "prob" }
        let (_, data) = try CaffeWriter.write(partial, input: Size2(square: 8))
        let weights = try writeFile(dir, "partial.caffemodel", data)
        let message = loadError(ModelSource(model: proto, weights: weights))
        #expect(
            message.contains("layer 'fc'") && message.contains("has no weights") && message.contains("conv1"),
            "\(message)")
        let none = #expect(throws: ModelError.self) { try ModelLoader.load(ModelSource(model: proto)) }
        #expect(none?.kind == .weights && none?.message.hasPrefix("no weights") == true, "\(String(describing: none))")
    }

    @Test func weightShapeMismatch() throws {
        let (dir, proto, _, net) = try Self.tinyFiles()
        defer { try? FileManager.default.removeItem(at: dir) }
        var wrong = net
        wrong.layers[0].op = .convolution(
            Convolution(
                outputs: 4, kernel: Size2(square: 5),
                weights: [Float](repeating: 0.5, count: 4 * 3 * 25),
                bias: [0, 0, 0, 0]))
        let (_, data) = try CaffeWriter.write(wrong, input: Size2(square: 8))
        let weights = try writeFile(dir, "wrong.caffemodel", data)
        let message = loadError(ModelSource(model: proto, weights: weights))
        #expect(
            message.contains("layer 'conv1'") && message.contains("expected 4×3×3×3")
                && message.contains("found 4×3×5×5"), "\(message)")
    }

    @Test func unsupportedLayer() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = Self.tiny.replacingOccurrences(
            of: "name: \"relu1\" type: \"ReLU\"", with: "name: \"relu1\" type: \"Exp\"")
        let path = try writeFile(dir, "p.prototxt", text)
        let message = loadError(ModelSource(model: path, requireWeights: false))
        #expect(message.contains("layer 'relu1'") && message.contains("'Exp'"), "\(message)")
        #expect(!message.contains("did you mean"), "\(message)")
        // The list names every type the importer computes (docs/CLI audit 36 F6: ELU and BNLL were left out).
        for type in CaffeImporter.computedTypes where type != "SoftmaxWithLoss" {
            #expect(message.contains(type), "\(type) missing from: \(message)")
        }
        // A near miss of a supported type is named.
        let typo = try writeFile(
            dir, "typo.prototxt",
            Self.tiny.replacingOccurrences(of: "name: \"relu1\" type: \"ReLU\"", with: "name: \"relu1\" type: \"ReLu\"")
        )
        let near = loadError(ModelSource(model: typo, requireWeights: false))
        #expect(near.contains("'ReLu' (did you mean 'ReLU'?"), "\(near)")
    }

    /// User review: a PNG given as --model was called a caffemodel.
    @Test("an image given as the model is named as one")
    func imageAsModel() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let png = Data([
            0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0xFF, 0xFE,
        ])
        let message = loadError(ModelSource(model: try writeFile(dir, "img.png", png), requireWeights: false))
        #expect(message.contains("a PNG image: the image goes last"), "\(message)")
    }

    /// User review: a misspelt field was ignored as unknown, and the error named only the missing one.
    @Test("an error after unknown fields names them: a misspelt field is likely")
    func misspeltField() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = Self.tiny.replacingOccurrences(
            of: "num_output: 4 kernel_size: 3", with: "num_output: 4 kernel_sise: 3")
        let message = loadError(ModelSource(model: try writeFile(dir, "typo.prototxt", text), requireWeights: false))
        #expect(message.contains("kernel_size") && message.contains("'kernel_sise' at line 4"), "\(message)")
    }

    @Test func outputNotOneByOne() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let fcn = """
            input: "data"
            input_shape { dim: 1 dim: 1 dim: 100 dim: 100 }
            layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" convolution_param { num_output: 2 kernel_size: 5 } }
            """
        let path = try writeFile(dir, "fcn.prototxt", fcn)
        let m = try ModelLoader.load(ModelSource(model: path, requireWeights: false))
        #expect(m.patchSize == Size2(square: 5))
        let message = loadError(ModelSource(model: path, patchSize: 9, requireWeights: false))
        #expect(message.contains("5×5, not 1×1") && message.contains("layer 'c1'"), "\(message)")
    }

    @Test(
        "absurd sizes are refused before allocating",
        arguments: [
            ("convolution_param { num_output: 2000000000 kernel_size: 3 }", "2^28"),
            ("convolution_param { num_output: 4 kernel_size: 300000 }", "absurdly large"),
        ])
    func absurdLayer(param: String, expected: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = Self.tiny.replacingOccurrences(of: "convolution_param { num_output: 4 kernel_size: 3 }", with: param)
        let path = try writeFile(dir, "big.prototxt", text)
        let message = loadError(ModelSource(model: path, requireWeights: false))
        #expect(message.contains("conv1") && message.contains(expected), "\(message)")
    }

    /// Hostile-input audit 27: a mean file with NaN said only "preprocessing values must be finite numbers"; one
    /// whose shape and data disagree spoke of a "layer 'mean'" (a mean file has no layer).
    @Test("A damaged mean file is named, with what is wrong in it")
    func damagedMeanFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ name: String, _ data: [Float], dims: [Int64]) throws -> String {
            var blob = Caffe_BlobProto()
            blob.data = data
            var shape = Caffe_BlobShape()
            shape.dim = dims
            blob.shape = shape
            let path = dir.appendingPathComponent(name).path
            try blob.serializedData().write(to: URL(fileURLWithPath: path))
            return path
        }
        let good = try write("good.binaryproto", [1, 2, 3, 4, 5, 6, 7, 8], dims: [2, 2, 2])
        #expect(try Preprocessing.readMeanFile(good).mean == [2.5, 6.5])
        let nan = try write("nan.binaryproto", [1, 2, .nan, 4], dims: [1, 2, 2])
        let e1 = #expect(throws: ModelError.self) { try Preprocessing.readMeanFile(nan) }
        #expect(e1?.description.contains("nan.binaryproto") == true, "\(String(describing: e1))")
        #expect(e1?.description.contains("not a finite number") == true, "\(String(describing: e1))")
        let short = try write("short.binaryproto", [1, 2, 3], dims: [1, 2, 2])
        let e2 = #expect(throws: ModelError.self) { try Preprocessing.readMeanFile(short) }
        #expect(e2?.description.contains("short.binaryproto") == true, "\(String(describing: e2))")
        #expect(e2?.description.contains("layer") == false, "\(String(describing: e2))")
        // An image, an array or a text file given as the mean file says what it is (docs/CLI audit 36 F17).
        let png = dir.appendingPathComponent("mean.png").path
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13]).write(to: URL(fileURLWithPath: png))
        let npy = dir.appendingPathComponent("mean.npy").path
        try Data([0x93] + Array("NUMPY".utf8) + [1, 0]).write(to: URL(fileURLWithPath: npy))
        let text = try writeFile(dir, "mean.txt", "104 117 123\n")
        for (path, kind) in [(png, "a PNG image"), (npy, "a NumPy .npy array"), (text, "a text file")] {
            let e = #expect(throws: ModelError.self) { try Preprocessing.readMeanFile(path) }
            let message = e?.description ?? ""
            #expect(message.contains(path) && message.contains("this is \(kind)"), "\(message)")
            #expect(message.contains("--mean"), "\(message)")
        }
    }

    /// Paths audit 41 F6: a dangling link or a loop of links was "not a regular file (a pipe, socket or device)".
    @Test("A model behind a dangling link or a loop of links says so")
    func brokenLinks() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let dangling = dir.appendingPathComponent("gone.prototxt").path
        try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: dir.path + "/nowhere")
        let (a, b) = (dir.appendingPathComponent("a.prototxt").path, dir.appendingPathComponent("b.prototxt").path)
        try FileManager.default.createSymbolicLink(atPath: a, withDestinationPath: b)
        try FileManager.default.createSymbolicLink(atPath: b, withDestinationPath: a)
        let missing = loadError(ModelSource(model: dangling, requireWeights: false))
        #expect(missing.contains("it is a link to") && missing.contains("which does not exist"), "\(missing)")
        let loop = loadError(ModelSource(model: a, requireWeights: false))
        #expect(loop.contains("its links form a loop"), "\(loop)")
        let none = loadError(ModelSource(model: dir.path + "/none.prototxt", requireWeights: false))
        #expect(none.contains("the file does not exist"), "\(none)")
    }

    /// Caffe's `Blob::FromProto` prefers double_data: a blob with both was read from data (hostile-input audit 27).
    @Test func doubleDataWinsAsInCaffe() throws {
        var blob = Caffe_BlobProto()
        var shape = Caffe_BlobShape()
        shape.dim = [2]
        blob.shape = shape
        blob.data = [1, 2]
        blob.doubleData = [3, 4]
        #expect(try BlobValues(blob, file: "f", layer: "l", index: 0).data == [3, 4])
        blob.doubleData = []
        #expect(try BlobValues(blob, file: "f", layer: "l", index: 0).data == [1, 2])
    }

    @Test func absurdBlobAndInput() throws {
        var blob = Caffe_BlobProto()
        var s = Caffe_BlobShape()
        s.dim = [1 << 20, 1 << 20]
        blob.shape = s
        #expect(throws: ModelError.self) { _ = try BlobValues(blob, file: "f", layer: "l", index: 0) }
        s.dim = [4, -1]
        blob.shape = s
        do {
            _ = try BlobValues(blob, file: "f", layer: "l", index: 0)
            Issue.record("negative dimension accepted")
        } catch let e as ModelError {
            #expect(e.description.contains("negative"))
        }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = Self.tiny.replacingOccurrences(of: "dim: 8 dim: 8", with: "dim: 8 dim: 9000000000")
        let path = try writeFile(dir, "in.prototxt", text)
        let message = loadError(ModelSource(model: path, requireWeights: false))
        #expect(message.contains("input shape"), "\(message)")
    }

    @Test func legacyV1LayersAreRead() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let v1 = """
            input: "data"
            input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
            layers { name: "ip" type: INNER_PRODUCT bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
            layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
            """
        let path = try writeFile(dir, "v1.prototxt", v1)
        let m = try ModelLoader.load(ModelSource(model: path, requireWeights: false))
        #expect(m.geometry.classes == 3)
        #expect(m.geometry.receptiveField == Size2(square: 4))
        #expect(m.notes.contains { $0.contains("V1") })
    }

    /// Caffe fuzz audit: V1 files with ABSVAL, POWER or FLATTEN were refused though the current format's are read;
    /// BNLL (and ELU, current format only) are read since ELU and softplus layers exist.
    @Test("V1 ABSVAL, POWER, FLATTEN and BNLL layers are read; ELU and BNLL write back and read again")
    func legacyV1ActivationsAndWriter() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let v1 = """
            input: "data"
            input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4
            layers { name: "abs" type: ABSVAL bottom: "data" top: "abs" }
            layers { name: "pow" type: POWER bottom: "abs" top: "pow" power_param { scale: 2 shift: 1 } }
            layers { name: "soft" type: BNLL bottom: "pow" top: "soft" }
            layers { name: "flat" type: FLATTEN bottom: "soft" top: "flat" }
            layers { name: "ip" type: INNER_PRODUCT bottom: "flat" top: "ip" inner_product_param { num_output: 3 } }
            layers { name: "prob" type: SOFTMAX bottom: "ip" top: "prob" }
            """
        let m = try ModelLoader.load(ModelSource(model: try writeFile(dir, "v1.prototxt", v1), requireWeights: false))
        #expect(m.geometry.classes == 3)
        #expect(m.classifier.layers.map(\.op.typeName).contains("BNLL"), "\(m.classifier.layers.map(\.op.typeName))")
        #expect(m.classifier.layers.contains { $0.op == .relu(negativeSlope: -1) })
        // ELU (with its alpha) and softplus survive CaffeWriter and the importer.
        let text = Self.tiny.replacingOccurrences(
            of: "name: \"relu1\" type: \"ReLU\"", with: "name: \"relu1\" type: \"ELU\" elu_param { alpha: 0.25 }")
        let proto = try writeFile(dir, "elu.prototxt", text)
        let net = try ModelLoader.load(ModelSource(model: proto, requireWeights: false)).classifier.randomised(seed: 4)
        #expect(net.layers.contains { $0.op == .elu(alpha: 0.25) })
        let (written, data) = try CaffeWriter.write(net, input: Size2(square: 8))
        let again = try ModelLoader.load(
            ModelSource(
                model: try writeFile(dir, "w.prototxt", written), weights: try writeFile(dir, "w.caffemodel", data)))
        #expect(again.classifier == net)
    }

    @Test func batchNormBVLCZeroFactorAndScaleFold() throws {
        var def = Caffe_NetParameter()
        def.input = ["data"]
        var s = Caffe_BlobShape(); s.dim = [1, 2, 1, 1]
        def.inputShape = [s]
        func blob(_ v: [Float]) -> Caffe_BlobProto {
            var b = Caffe_BlobProto(); b.data = v; var sh = Caffe_BlobShape(); sh.dim = [Int64(v.count)]; b.shape = sh;
            return b
        }
        var bn = Caffe_LayerParameter(); bn.name = "bn"; bn.type = "BatchNorm"; bn.bottom = ["data"]; bn.top = ["data"]
        bn.blobs = [blob([2, 4]), blob([8, 16]), blob([2])]
        var sc = Caffe_LayerParameter(); sc.name = "sc"; sc.type = "Scale"; sc.bottom = ["data"]; sc.top = ["data"]
        sc.scaleParam.biasTerm = true
        sc.blobs = [blob([3, 5]), blob([1, -1])]
        def.layer = [bn, sc]
        var importer = CaffeImporter(definitionFile: "t")
        let net = try importer.importNet(def).net
        #expect(net.layers.count == 1)
        #expect(
            net.layers[0].op
                == .batchNorm(BatchNorm(mean: [1, 2], variance: [4, 8], eps: 1e-5, scale: [3, 5], bias: [1, -1])))
        def.layer[0].blobs[2] = blob([0])
        def.layer = [def.layer[0]]
        var i2 = CaffeImporter(definitionFile: "t")
        let zero = try i2.importNet(def).net
        #expect(zero.layers[0].op == .batchNorm(BatchNorm(mean: [0, 0], variance: [0, 0], eps: 1e-5)))
    }

    @Test func innerProductTransposeIsUndone() throws {
        var def = Caffe_NetParameter()
        def.input = ["data"]
        var s = Caffe_BlobShape(); s.dim = [1, 3, 1, 1]
        def.inputShape = [s]
        var ip = Caffe_LayerParameter(); ip.name = "ip"; ip.type = "InnerProduct"; ip.bottom = ["data"]; ip.top = ["ip"]
        ip.innerProductParam.numOutput = 2
        ip.innerProductParam.transpose = true
        ip.innerProductParam.biasTerm = false
        var w = Caffe_BlobProto(); w.data = [1, 2, 3, 4, 5, 6]; var ws = Caffe_BlobShape(); ws.dim = [3, 2];
        w.shape = ws
        ip.blobs = [w]
        def.layer = [ip]
        var importer = CaffeImporter(definitionFile: "t")
        let net = try importer.importNet(def).net
        #expect(net.layers[0].op == .innerProduct(InnerProduct(outputs: 2, weights: [1, 3, 5, 2, 4, 6], bias: nil)))
    }

    @Test func preprocessingChecks() throws {
        #expect(throws: ModelError.self) { _ = try Preprocessing(mean: [1, 2]).validated(channels: 3) }
        let p = try Preprocessing(mean: [104, 117, 123], rawScale: 255, scale: 0.5).validated(channels: 3)
        #expect(p.descriptionLines.contains { $0.contains("104.0000") })
        #expect(p.mean(channel: 2) == 123)
    }
}

extension ModelImportErrorTests {
    /// Found by a user audit: a NaN weight before a ReLU came out of the engine as 0, so
    /// the map looked like probabilities (onnxruntime and Caffe give NaN everywhere); a
    /// negative BatchNorm variance made a map of NaNs, written with exit status 0.
    @Test("NaN or infinite parameters and a negative BatchNorm variance are refused, naming file, layer and value")
    func nonFiniteParametersRefused() throws {
        let (dir, proto, _, net) = try Self.tinyFiles()
        defer { try? FileManager.default.removeItem(at: dir) }
        func message(_ edit: (inout Net) -> Void) throws -> String {
            var bad = net
            edit(&bad)
            let (_, data) = try CaffeWriter.write(bad, input: Size2(square: 8))
            return loadError(ModelSource(model: proto, weights: try writeFile(dir, "bad.caffemodel", data)))
        }
        let nan = try message { n in
            guard case .convolution(var c) = n.layers[0].op else { return }
            c.weights[5] = .nan
            n.layers[0].op = .convolution(c)
        }
        #expect(
            nan.contains("bad.caffemodel") && nan.contains("layer 'conv1'") && nan.contains("weights [5] is nan"),
            "\(nan)")
        let inf = try message { n in
            guard let i = n.layers.firstIndex(where: { $0.name == "fc" }), case .innerProduct(var p) = n.layers[i].op
            else { return }
            p.bias![1] = -.infinity
            n.layers[i].op = .innerProduct(p)
        }
        #expect(inf.contains("layer 'fc'") && inf.contains("bias [1] is -inf"), "\(inf)")
        // The untouched model still loads.
        _ = try ModelLoader.load(ModelSource(model: proto, weights: dir.appendingPathComponent("tiny.caffemodel").path))

        var def = Caffe_NetParameter()
        def.input = ["data"]
        var s = Caffe_BlobShape()
        s.dim = [1, 2, 1, 1]
        def.inputShape = [s]
        func blob(_ v: [Float]) -> Caffe_BlobProto {
            var b = Caffe_BlobProto()
            b.data = v
            var sh = Caffe_BlobShape()
            sh.dim = [Int64(v.count)]
            b.shape = sh
            return b
        }
        var bn = Caffe_LayerParameter()
        (bn.name, bn.type, bn.bottom, bn.top) = ("bn", "BatchNorm", ["data"], ["bn"])
        bn.blobs = [blob([0, 0]), blob([1, -9]), blob([1])]
        def.layer = [bn]
        do {
            _ = try ModelLoader.load(
                definition: def, definitionFile: "bn.caffemodel", definitionHoldsWeights: true, patchSize: 1)
            Issue.record("a negative variance was accepted")
        } catch {
            let text = "\(error)"
            #expect(
                text.contains("bn.caffemodel") && text.contains("layer 'bn'") && text.contains("variance [1] is -9"),
                "\(text)")
        }
    }

    @Test("The NaN scan finds the first non-finite value wherever it lies")
    func nonFiniteScan() {
        #expect(ParameterCheck.firstNonFinite([]) == nil)
        #expect(ParameterCheck.firstNonFinite([Float](repeating: 3e38, count: 10_000)) == nil)
        for at in [0, 4095, 4096, 9_999] {
            var v = [Float](repeating: 1, count: 10_000)
            v[at] = .infinity
            if at == 9_999 { v[at] = .nan }
            #expect(ParameterCheck.firstNonFinite(v) == at)
        }
    }
}

extension ModelImportErrorTests {
    /// Found by a user audit: `inspect` of a 300-byte prototxt without weights built 7 GB
    /// of zero placeholders (and aborted under a memory limit).
    @Test("A shape-only load refuses placeholder weights past 2^28 values, saying to give the caffemodel")
    func placeholderWeightsCapped() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let proto = try writeFile(
            dir, "big.prototxt",
            """
            name: "big"
            input: "data"
            input_shape { dim: 1 dim: 3 dim: 1024 dim: 1024 }
            layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 600 } }
            layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
            """)
        let message = loadError(ModelSource(model: proto, requireWeights: false))
        #expect(
            message.contains("big.prototxt") && message.contains("layer 'fc'") && message.contains("2^28")
                && message.contains("give the caffemodel"), "\(message)")
    }
}

/// Caffe audit: the last layer's blob was the map, so a side output after the Softmax became the map.
@Suite("A Caffe net with several outputs")
struct CaffeOutputsTests {
    static func load(_ extra: String, replacing: (String, String)? = nil) throws -> LoadedModel {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var text = ModelImportErrorTests.tiny + "\n" + extra
        if let (a, b) = replacing { text = text.replacingOccurrences(of: a, with: b) }
        let proto = try writeFile(dir, "outputs.prototxt", text)
        return try ModelLoader.load(ModelSource(model: proto, requireWeights: false))
    }

    @Test("A side output after the Softmax: the Softmax's blob is mapped, the side layers left out, with a note")
    func softmaxChosen() throws {
        let m = try Self.load(#"layer { name: "feat" type: "ReLU" bottom: "fc" top: "feat" }"#)
        #expect(m.classifier.layers.last?.name == "prob" && !m.classifier.layers.contains { $0.name == "feat" })
        #expect(m.geometry.classes == 2)
        #expect(
            m.notes.contains { $0.contains("the net has 2 outputs ('prob', 'feat'): Tessera maps 'prob'") },
            "\(m.notes)")
    }

    @Test("Two outputs, neither a Softmax or Sigmoid (or both): refused, naming them")
    func ambiguousRefused() throws {
        let e = #expect(throws: ModelError.self) {
            try Self.load(
                #"layer { name: "feat" type: "TanH" bottom: "fc" top: "feat" }"#,
                replacing: (#"type: "Softmax""#, #"type: "TanH""#))
        }
        #expect(
            e?.message.contains("the net has 2 outputs") == true && e?.message.contains("'prob', 'feat'") == true
                && e?.message.contains("none of them is made by a Softmax") == true, "\(String(describing: e))")
    }
}

/// Caffe audit: shapes were compared without their size-1 axes, so a caffemodel of a 1×3 kernel ran as a 3×1
/// one, and a convolution's extra blob was ignored; Caffe refuses both.
@Suite("Caffe weight shapes as Caffe checks them")
struct CaffeWeightShapeTests {
    @Test("A 1×3 kernel's weights under a 3×1 definition, and a bias under bias_term: false, are refused")
    func shapesChecked() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let oneByThree = ModelImportErrorTests.tiny.replacingOccurrences(
            of: "num_output: 4 kernel_size: 3", with: "num_output: 4 kernel_h: 1 kernel_w: 3")
        let proto = try writeFile(dir, "k13.prototxt", oneByThree)
        let net = try ModelLoader.load(ModelSource(model: proto, requireWeights: false)).classifier.randomised(seed: 5)
        let (_, data) = try CaffeWriter.write(net, input: Size2(square: 8))
        let weights = try writeFile(dir, "k13.caffemodel", data)
        _ = try ModelLoader.load(ModelSource(model: proto, weights: weights))
        let threeByOne = try writeFile(
            dir, "k31.prototxt",
            oneByThree.replacingOccurrences(of: "kernel_h: 1 kernel_w: 3", with: "kernel_h: 3 kernel_w: 1"))
        var e = #expect(throws: ModelError.self) {
            try ModelLoader.load(ModelSource(model: threeByOne, weights: weights))
        }
        #expect(
            e?.message.contains("weight shape mismatch") == true
                && e?.message.contains("expected 4×3×3×1, found 4×3×1×3")
                    == true,
            "\(String(describing: e))")
        let noBias = try writeFile(
            dir, "nobias.prototxt",
            oneByThree.replacingOccurrences(
                of: "kernel_h: 1 kernel_w: 3", with: "kernel_h: 1 kernel_w: 3 bias_term: false"))
        e = #expect(throws: ModelError.self) { try ModelLoader.load(ModelSource(model: noBias, weights: weights)) }
        #expect(
            e?.message.contains("has 2 weight blobs in the caffemodel; its definition takes 1") == true,
            "\(String(describing: e))")
        // A kernel blob of another rank (5-D 4×3×3×1×1: a 3×1 kernel's layout) is refused, not squeezed into the
        // 1×3 definition (hostile-input audit 27).
        var saved = try Caffe_NetParameter(serializedBytes: data)
        let conv = try #require(saved.layer.firstIndex { $0.name == "conv1" })
        saved.layer[conv].blobs[0].shape.dim = [4, 3, 3, 1, 1]
        let fiveD = dir.appendingPathComponent("k5d.caffemodel").path
        try Data(try saved.serializedBytes() as [UInt8]).write(to: URL(fileURLWithPath: fiveD))
        e = #expect(throws: ModelError.self) { try ModelLoader.load(ModelSource(model: proto, weights: fiveD)) }
        #expect(e?.message.contains("expected 4×3×1×3, found 4×3×3×1×1") == true, "\(String(describing: e))")
    }
}

/// Caffe audit: a Flatten before the InnerProduct was refused, and softmax_param.axis -1 after one too. Model audit
/// 48 F2: axis -1 of a convolution's N×K×1×1 output was taken for its channels (Caffe takes the width).
@Suite("Caffe Flatten and Softmax axis")
struct CaffeFlattenSoftmaxTests {
    @Test(
        "Flatten before the InnerProduct and a Softmax over axis -1 load as the plain net; -3 (of 2 axes) and 0 are refused"
    )
    func flattenAndAxis() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "plain.prototxt", ModelImportErrorTests.tiny), requireWeights: false))
        for axis in ["-1", "-3"] {
            let text = ModelImportErrorTests.tiny
                .replacingOccurrences(
                    of: #"layer { name: "fc" type: "InnerProduct" bottom: "pool1""#,
                    with: #"layer { name: "flat" type: "Flatten" bottom: "pool1" top: "flat" }"#
                        + "\n" + #"layer { name: "fc" type: "InnerProduct" bottom: "flat""#
                )
                .replacingOccurrences(
                    of: #"type: "Softmax" bottom: "fc" top: "prob" }"#,
                    with: #"type: "Softmax" bottom: "fc" top: "prob" softmax_param { axis: "# + axis + " } }")
            let source = ModelSource(model: try writeFile(dir, "flat\(axis).prototxt", text), requireWeights: false)
            if axis == "-3" {
                let e = #expect(throws: ModelError.self) { try ModelLoader.load(source) }
                #expect(e?.message.contains("has two axes") == true, "\(String(describing: e))")
                continue
            }
            let m = try ModelLoader.load(source)
            #expect(m.geometry == plain.geometry && m.classifier.layers.last?.op == .softmax)
        }
        let zero = ModelImportErrorTests.tiny.replacingOccurrences(
            of: #"type: "Softmax" bottom: "fc" top: "prob" }"#,
            with: #"type: "Softmax" bottom: "fc" top: "prob" softmax_param { axis: 0 } }"#)
        let e = #expect(throws: ModelError.self) {
            try ModelLoader.load(ModelSource(model: try writeFile(dir, "axis0.prototxt", zero), requireWeights: false))
        }
        #expect(e?.message.contains("softmax_param.axis is 0") == true, "\(String(describing: e))")
        // A convolution head's N×2×1×1 output: axis -3 is its channels, -1 its width (Caffe: 1 for every class);
        // so is an InnerProduct's output reshaped to 4 axes.
        let heads = [
            #"type: "Convolution" bottom: "pool1" top: "fc" convolution_param { num_output: 2 kernel_size: 3 } }"#
                + "\n" + #"layer { name: "relu2" type: "ReLU" bottom: "fc" top: "fc" }"#,
            #"type: "InnerProduct" bottom: "pool1" top: "ip" inner_product_param { num_output: 2 } }"# + "\n"
                + #"layer { name: "r" type: "Reshape" bottom: "ip" top: "fc" reshape_param { shape { dim: 0 dim: -1 dim: 1 dim: 1 } } }"#,
        ]
        for (head, axis) in heads.flatMap({ h in ["-3", "-1"].map { (h, $0) } }) {
            let conv = ModelImportErrorTests.tiny.replacingOccurrences(
                of: #"type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 2 } }"#,
                with: head
            ).replacingOccurrences(
                of: #"type: "Softmax" bottom: "fc" top: "prob" }"#,
                with: #"type: "Softmax" bottom: "fc" top: "prob" softmax_param { axis: "# + axis + " } }")
            let source = ModelSource(
                model: try writeFile(dir, "conv\(axis)-\(head.count).prototxt", conv), requireWeights: false)
            if axis == "-3" {
                #expect(try ModelLoader.load(source).classifier.layers.last?.op == .softmax)
            } else {
                let e = #expect(throws: ModelError.self) { try ModelLoader.load(source) }
                #expect(e?.layer == "prob" && e?.message.contains("the width") == true, "\(String(describing: e))")
            }
        }
    }

    @Test("A Flatten of a C×H×W blob read by anything but an InnerProduct is refused; of a 1×1 blob it is nothing")
    func flattenReaders() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // A Softmax over all 4×3×3 values of a flattened pool1 is not the per-position Softmax a map gives.
        let spatial = ModelImportErrorTests.tiny.replacingOccurrences(
            of:
                #"layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 2 } }"#,
            with: #"layer { name: "flat" type: "Flatten" bottom: "pool1" top: "flat" }"#
        ).replacingOccurrences(of: #"type: "Softmax" bottom: "fc""#, with: #"type: "Softmax" bottom: "flat""#)
        let e = #expect(throws: ModelError.self) {
            try ModelLoader.load(
                ModelSource(model: try writeFile(dir, "spatial.prototxt", spatial), requireWeights: false))
        }
        #expect(e?.layer == "flat", "\(String(describing: e))")
        #expect(e?.message.contains("4×3×3 blob is read by 'prob' (Softmax)") == true, "\(String(describing: e))")
        // After the InnerProduct (1×1 at patch size) a Flatten changes nothing.
        let late = ModelImportErrorTests.tiny.replacingOccurrences(
            of: #"layer { name: "prob" type: "Softmax" bottom: "fc""#,
            with: #"layer { name: "flat" type: "Flatten" bottom: "fc" top: "flat" }"# + "\n"
                + #"layer { name: "prob" type: "Softmax" bottom: "flat""#)
        let plain = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "plain.prototxt", ModelImportErrorTests.tiny), requireWeights: false))
        let m = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "late.prototxt", late), requireWeights: false))
        #expect(m.geometry == plain.geometry && m.classifier.layers.last?.op == .softmax)
    }
}

/// Caffe audit: Power, AbsVal and Reshape were refused. AbsVal, Power of power 1 and a flattening
/// Reshape are read (numbers: the `absval_power_reshape` OpenCV fixture); other settings are refused.
@Suite("Caffe AbsVal, Power, Clip and Reshape")
struct CaffePowerReshapeTests {
    static func load(_ dir: URL, _ name: String, _ text: String) throws -> LoadedModel {
        try ModelLoader.load(ModelSource(model: try writeFile(dir, name, text), requireWeights: false))
    }

    static func refusal(_ dir: URL, _ name: String, _ text: String) -> ModelError? {
        #expect(throws: ModelError.self) { try load(dir, name, text) }
    }

    /// The tiny net with `layer` inserted after relu1, reading and writing conv1.
    static func withLayer(_ layer: String) -> String {
        ModelImportErrorTests.tiny.replacingOccurrences(
            of: #"layer { name: "pool1""#, with: layer + "\n" + #"layer { name: "pool1""#)
    }

    @Test("AbsVal is a leaky ReLU of slope −1; Power of power 1 a Scale; other powers are refused")
    func pointwise() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let abs = try Self.load(
            dir, "abs.prototxt", Self.withLayer(#"layer { name: "a" type: "AbsVal" bottom: "conv1" top: "conv1" }"#))
        #expect(abs.classifier.layers.first { $0.name == "a" }?.op == .relu(negativeSlope: -1))
        let power = try Self.load(
            dir, "power.prototxt",
            Self.withLayer(
                #"layer { name: "p" type: "Power" bottom: "conv1" top: "conv1" power_param { scale: 0.5 shift: -2 } }"#
            ))
        #expect(
            power.classifier.layers.first { $0.name == "p" }?.op
                == .scale(Scale(scale: [Float](repeating: 0.5, count: 4), bias: [Float](repeating: -2, count: 4))))
        let square = Self.refusal(
            dir, "square.prototxt",
            Self.withLayer(
                #"layer { name: "p" type: "Power" bottom: "conv1" top: "conv1" power_param { power: 2 } }"#))
        #expect(
            square?.layer == "p" && square?.message.contains("power_param.power is 2.0") == true,
            "\(String(describing: square))")
    }

    @Test("Clip and a fork's ReLU6 are ReLU and Scale layers; a Clip without both bounds is refused")
    func clip() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let relu6 = try Self.load(
            dir, "relu6.prototxt", Self.withLayer(#"layer { name: "c" type: "ReLU6" bottom: "conv1" top: "conv1" }"#))
        #expect(relu6.classifier.layers.filter { $0.name.hasPrefix("c") && $0.name != "conv1" }.count == 4)
        #expect(relu6.notes.contains { $0.contains("layer 'c' (ReLU6) to [0.0, 6.0]") }, "\(relu6.notes)")
        let open = Self.refusal(
            dir, "open.prototxt",
            Self.withLayer(#"layer { name: "c" type: "Clip" bottom: "conv1" top: "conv1" clip_param { min: 0 } }"#))
        #expect(
            open?.layer == "c" && open?.message.contains("clip_param { min max }") == true,
            "\(String(describing: open))")
    }

    @Test("A Reshape or Flatten is read only when it flattens each image from the channel axis")
    func flattening() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = try Self.load(dir, "plain.prototxt", ModelImportErrorTests.tiny)
        func before(_ layer: String) -> String {
            ModelImportErrorTests.tiny.replacingOccurrences(
                of: #"layer { name: "fc" type: "InnerProduct" bottom: "pool1""#,
                with: layer + "\n" + #"layer { name: "fc" type: "InnerProduct" bottom: "flat""#)
        }
        for (i, shape) in ["dim: 0 dim: -1", "dim: 1 dim: 36", "dim: 0 dim: -1 dim: 1 dim: 1"].enumerated() {
            let m = try Self.load(
                dir, "reshape\(i).prototxt",
                before(
                    #"layer { name: "r" type: "Reshape" bottom: "pool1" top: "flat" reshape_param { shape { "#
                        + shape + " } } }"))
            #expect(m.geometry == plain.geometry && m.classifier.layers.last?.op == .softmax, "\(shape)")
        }
        for (i, shape) in ["dim: 0 dim: 4 dim: -1", "dim: 0 dim: 35", "dim: -1"].enumerated() {
            let e = Self.refusal(
                dir, "bad\(i).prototxt",
                before(
                    #"layer { name: "r" type: "Reshape" bottom: "pool1" top: "flat" reshape_param { shape { "#
                        + shape + " } } }"))
            #expect(e?.layer == "r" && e?.message.contains("reshape_param shape") == true, "\(String(describing: e))")
        }
        let axis2 = Self.refusal(
            dir, "axis2.prototxt",
            before(#"layer { name: "f" type: "Flatten" bottom: "pool1" top: "flat" flatten_param { axis: 2 } }"#))
        #expect(
            axis2?.layer == "f" && axis2?.message.contains("flatten_param axis 2") == true,
            "\(String(describing: axis2))")
    }
}

/// Caffe audit: a fork's `pooling_param { ceil_mode: false }` was ignored as "not used", so the pooling rounded up.
@Suite("Caffe forks' ceil_mode")
struct CaffeCeilModeTests {
    @Test("ceil_mode: false is read as round_mode: FLOOR, ceil_mode: true as CEIL, with a note")
    func ceilMode() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for (value, roundsUp) in [("false", false), ("true", true)] {
            let text = ModelImportErrorTests.tiny.replacingOccurrences(
                of: "pool: MAX kernel_size: 2 stride: 2", with: "pool: MAX kernel_size: 2 stride: 2 ceil_mode: \(value)"
            )
            let m = try ModelLoader.load(
                ModelSource(model: try writeFile(dir, "ceil-\(value).prototxt", text), requireWeights: false))
            let pool = m.classifier.layers.first { $0.name == "pool1" }
            guard case .pooling(let p)? = pool?.op else {
                Issue.record("no pool1")
                continue
            }
            #expect(p.roundsUp == roundsUp, "ceil_mode: \(value)")
            #expect(
                m.notes.contains { $0.contains("'ceil_mode: \(value)'") && $0.contains("read as 'round_mode") },
                "\(m.notes)")
        }
    }
}

/// Caffe audit: weights shared by name (`param { name: … }`) and stored only with their owner were refused
/// as "has no weights"; Caffe loads such a net with the owner's blobs.
@Suite("Caffe weights shared by name")
struct CaffeSharedWeightsTests {
    @Test("A layer whose blobs are stored only with the layer sharing them by name gets that layer's weights")
    func sharedByName() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let shared = #"param { name: "w" } param { name: "b" }"#
        let text = ModelImportErrorTests.tiny.replacingOccurrences(
            of: #"layer { name: "relu1""#,
            with: #"layer { name: "conv1b" type: "Convolution" bottom: "conv1" top: "conv1b" "# + shared
                + #" convolution_param { num_output: 4 kernel_size: 1 } }"# + "\n"
                + #"layer { name: "conv1c" type: "Convolution" bottom: "conv1b" top: "conv1c" "# + shared
                + #" convolution_param { num_output: 4 kernel_size: 1 } }"# + "\n" + #"layer { name: "relu1""#
        ).replacingOccurrences(of: #"bottom: "conv1" top: "conv1" }"#, with: #"bottom: "conv1c" top: "conv1c" }"#)
            .replacingOccurrences(of: #"bottom: "conv1" top: "pool1""#, with: #"bottom: "conv1c" top: "pool1""#)
        let proto = try writeFile(dir, "shared.prototxt", text)
        let net = try ModelLoader.load(ModelSource(model: proto, requireWeights: false)).classifier.randomised(seed: 9)
        let (_, data) = try CaffeWriter.write(net, input: Size2(square: 8))
        // As Caffe saves a shared blob: with its owner only (and the params naming it).
        var saved = try Caffe_NetParameter(serializedBytes: data)
        for i in saved.layer.indices where ["conv1b", "conv1c"].contains(saved.layer[i].name) {
            saved.layer[i].param = [Caffe_ParamSpec.with { $0.name = "w" }, Caffe_ParamSpec.with { $0.name = "b" }]
            if saved.layer[i].name == "conv1c" { saved.layer[i].blobs = [] }
        }
        let weights = dir.appendingPathComponent("shared.caffemodel").path
        let bytes: [UInt8] = try saved.serializedBytes()
        try Data(bytes).write(to: URL(fileURLWithPath: weights))
        let m = try ModelLoader.load(ModelSource(model: proto, weights: weights))
        func kernel(_ name: String) -> [Float]? {
            guard case .convolution(let c)? = m.classifier.layers.first(where: { $0.name == name })?.op else {
                return nil
            }
            return c.weights
        }
        #expect(kernel("conv1c") != nil && kernel("conv1c") == kernel("conv1b"))
    }
}

/// Caffe audit: PReLU was refused, though the ONNX importer maps PRelu (checked against a NumPy Caffe forward
/// by the audit's scripts: 6e-8 per channel, 1e-6 shared).
@Suite("Caffe PReLU")
struct CaffePReLUTests {
    @Test("A per-channel PReLU becomes ReLU, x − relu(x), its slopes as a Scale, and a sum; a shared one a leaky ReLU")
    func prelu() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let plainProto = try writeFile(dir, "plain.prototxt", ModelImportErrorTests.tiny)
        let net = try ModelLoader.load(ModelSource(model: plainProto, requireWeights: false)).classifier.randomised(
            seed: 4)
        let (_, data) = try CaffeWriter.write(net, input: Size2(square: 8))
        let prelu = ModelImportErrorTests.tiny.replacingOccurrences(
            of: #"layer { name: "relu1" type: "ReLU""#, with: #"layer { name: "relu1" type: "PReLU""#)
        let proto = try writeFile(dir, "prelu.prototxt", prelu)
        for slopes: [Float] in [[0.1, 0.2, 0.05, 0.3], [0.25]] {
            var saved = try Caffe_NetParameter(serializedBytes: data)
            saved.layer.removeAll { $0.name == "relu1" }
            var layer = Caffe_LayerParameter()
            layer.name = "relu1"
            layer.type = "PReLU"
            layer.blobs = [
                Caffe_BlobProto.with {
                    $0.data = slopes; $0.shape.dim = [Int64(slopes.count)]
                }
            ]
            saved.layer.append(layer)
            let bytes: [UInt8] = try saved.serializedBytes()
            let weights = dir.appendingPathComponent("prelu\(slopes.count).caffemodel").path
            try Data(bytes).write(to: URL(fileURLWithPath: weights))
            let m = try ModelLoader.load(ModelSource(model: proto, weights: weights))
            #expect(!m.notes.contains { $0.contains("ignored field") }, "\(m.notes)")
            let ops = m.classifier.layers.map(\.op)
            if slopes.count == 1 {
                #expect(ops.contains(.relu(negativeSlope: 0.25)), "\(m.classifier.layers.map(\.name))")
            } else {
                #expect(ops.contains(.scale(Scale(scale: slopes, bias: nil))), "\(m.classifier.layers.map(\.name))")
                #expect(ops.contains(.eltwise(Eltwise(operation: .sum, coefficients: [1, -1]))))
                #expect(m.classifier.layers.last?.op == .softmax && m.geometry.classes == 2)
            }
            // BVLC's prelu_param (numbers audit 33: it was "a field BVLC Caffe refuses"): channel_shared
            // wants one slope.
            let shared = try writeFile(
                dir, "shared.prototxt",
                prelu.replacingOccurrences(
                    of: #"type: "PReLU""#, with: #"type: "PReLU" prelu_param { channel_shared: true }"#))
            // channel_shared: false, said explicitly, wants a slope per channel.
            let perChannel = try writeFile(
                dir, "per-channel.prototxt",
                prelu.replacingOccurrences(
                    of: #"type: "PReLU""#, with: #"type: "PReLU" prelu_param { channel_shared: false }"#))
            if slopes.count == 1 {
                let e = #expect(throws: ModelError.self) {
                    try ModelLoader.load(ModelSource(model: perChannel, weights: weights))
                }
                #expect(
                    e?.description.contains("channel_shared: false, but its slopes blob holds 1 value") == true,
                    "\(String(describing: e))")
            } else {
                #expect(throws: Never.self) { try ModelLoader.load(ModelSource(model: perChannel, weights: weights)) }
            }
            if slopes.count == 1 {
                let one = try ModelLoader.load(ModelSource(model: shared, weights: weights))
                #expect(!one.notes.contains { $0.contains("prelu_param") }, "\(one.notes)")
                #expect(one.classifier.layers.map(\.op).contains(.relu(negativeSlope: 0.25)))
            } else {
                let e = #expect(throws: ModelError.self) {
                    try ModelLoader.load(ModelSource(model: shared, weights: weights))
                }
                #expect(
                    e?.description.contains("relu1") == true
                        && e?.description.contains("channel_shared, but its slopes blob holds 4 values") == true,
                    "\(String(describing: e))")
            }
        }
    }
}

/// Hostile-input audit: model files that crashed, hung or misled.
@Suite("Hostile model files")
struct HostileModelFileTests {
    @Test("10 000 nested blocks are a syntax error, not a stack overflow")
    func deepNesting() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let deep = ModelImportErrorTests.tiny + String(repeating: "layer {\n", count: 10_000)
        let e = #expect(throws: ModelError.self) {
            try ModelLoader.load(ModelSource(model: try writeFile(dir, "deep.prototxt", deep), requireWeights: false))
        }
        #expect(e?.message.contains("nested more than 100 deep") == true, "\(String(describing: e))")
    }

    @Test("One unknown field in every layer is skipped in one pass; thousands of distinct ones fail fast")
    func unknownFields() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // The same unknown field in 300 layers: each noted, all read.
        var layers = ""
        for i in 0..<300 {
            layers += #"layer { name: "r\#(i)" type: "ReLU" bottom: "conv1" top: "conv1" fork_engine: 3 }"# + "\n"
        }
        let same = ModelImportErrorTests.tiny.replacingOccurrences(
            of: #"layer { name: "pool1""#, with: layers + #"layer { name: "pool1""#)
        let m = try ModelLoader.load(
            ModelSource(model: try writeFile(dir, "same.prototxt", same), requireWeights: false))
        // One warning for them all (audit 27: a misspelt field was an info line, "not used by Tessera").
        let notes = m.notes.filter { $0.contains("ignored field 'fork_engine'") }
        #expect(notes.count == 1 && notes[0].hasPrefix(ModelLoader.warningPrefix), "\(notes)")
        #expect(notes.first?.contains("(and 299 more of that name)") == true, "\(notes)")
        #expect(notes.first?.contains("caffe.proto has no such field") == true, "\(notes)")
        // 20 000 distinct unknown fields (about 1 MB): refused within a bounded number of passes.
        var distinct = ModelImportErrorTests.tiny
        for i in 0..<20_000 { distinct += "unknown_field_number_\(i): 1\n" }
        let start = Date()
        let e = #expect(throws: ModelError.self) {
            try ModelLoader.load(
                ModelSource(model: try writeFile(dir, "distinct.prototxt", distinct), requireWeights: false))
        }
        #expect(e?.message.contains("too many unknown fields") == true, "\(String(describing: e))")
        #expect(Date().timeIntervalSince(start) < 30, "took \(Date().timeIntervalSince(start)) s")
    }

    @Test("A FIFO or device as weights is named as not a regular file")
    func notRegularFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let proto = try writeFile(dir, "tiny.prototxt", ModelImportErrorTests.tiny)
        let fifo = dir.appendingPathComponent("w.caffemodel").path
        #expect(mkfifo(fifo, 0o644) == 0)
        for weights in [fifo, "/dev/zero"] {
            let e = #expect(throws: ModelError.self) {
                try ModelLoader.load(ModelSource(model: proto, weights: weights))
            }
            #expect(e?.message.contains("not a regular file") == true, "\(weights): \(String(describing: e))")
        }
    }
}
