import Foundation
import Testing

@testable import TesseraCore
@testable import TesseraImage
@testable import TesseraModel
@testable import TestSupport

/// `Net.fillingBlobs(fromNPYDirectory:)`: weights trained outside Caffe, one `.npy` per blob.
@Suite("Weights from .npy files")
struct NPYWeightsTests {
    /// The tiny classifier's shape-only net, the same net with random weights, and a folder
    /// holding those weights as `<layer>.<blobIndex>.npy`.
    static func fixture() throws -> (dir: URL, proto: String, shapeOnly: Net, trained: Net) {
        let dir = try temporaryDirectory()
        let proto = try writeFile(dir, "tiny.prototxt", ModelImportErrorTests.tiny)
        let shapeOnly = try ModelLoader.load(ModelSource(model: proto, requireWeights: false)).classifier
        let trained = shapeOnly.randomised(seed: 11)
        let blobs = dir.appendingPathComponent("npy")
        try FileManager.default.createDirectory(at: blobs, withIntermediateDirectories: true)
        for layer in trained.layers {
            switch layer.op {
            case .convolution(let c):
                try save(
                    c.weights, [c.outputs, c.inputsPerGroup, c.kernel.h, c.kernel.w], blobs, "\(layer.name).0.npy")
                try save(c.bias!, [c.outputs], blobs, "\(layer.name).1.npy")
            case .innerProduct(let ip):
                try save(ip.weights, [ip.outputs, ip.inputs], blobs, "\(layer.name).0.npy")
                try save(ip.bias!, [ip.outputs], blobs, "\(layer.name).1.npy")
            default: break
            }
        }
        return (dir, proto, shapeOnly, trained)
    }

    static func save(_ values: [Float], _ shape: [Int], _ dir: URL, _ name: String) throws {
        try values.withUnsafeBufferPointer {
            try NPY.write(shape: shape, values: $0, to: dir.appendingPathComponent(name).path)
        }
    }

    /// The error `body` throws, as a ModelError (nil when it throws none).
    static func modelError(_ body: () throws -> Void) -> ModelError? {
        do { try body() } catch let e as ModelError { return e } catch { Issue.record("not a ModelError: \(error)") }
        return nil
    }

    @Test func fillsEveryBlobAndRoundTripsThroughTheCaffeWriter() throws {
        let (dir, _, shapeOnly, trained) = try Self.fixture()
        defer { try? FileManager.default.removeItem(at: dir) }
        let filled = try shapeOnly.fillingBlobs(fromNPYDirectory: dir.appendingPathComponent("npy").path)
        #expect(filled == trained)

        // Written as the patch classifier (what `convert --weights-npy --keep-classifier` does), read back.
        let (text, data) = try CaffeWriter.write(filled, input: Size2(square: 8))
        #expect(text.contains("InnerProduct") && text.contains("dim: 8"))
        let proto = try writeFile(dir, "out.prototxt", text)
        let weights = try writeFile(dir, "out.caffemodel", data)
        let back = try ModelLoader.load(ModelSource(model: proto, weights: weights))
        #expect(back.classifier.layers == trained.layers)
        #expect(back.patchSize == Size2(square: 8))
    }

    @Test func aMissingFileNamesTheLayerAndTheFile() throws {
        let (dir, _, shapeOnly, _) = try Self.fixture()
        defer { try? FileManager.default.removeItem(at: dir) }
        let npy = dir.appendingPathComponent("npy")
        try FileManager.default.removeItem(at: npy.appendingPathComponent("fc.1.npy"))
        let e = Self.modelError { _ = try shapeOnly.fillingBlobs(fromNPYDirectory: npy.path) }
        #expect(e?.layer == "fc")
        #expect(e?.file?.hasSuffix("fc.1.npy") == true)
        #expect(e?.message.contains("bias, shape (2,)") == true)
    }

    /// Hostile-input audit 27: NaN weights were written into a caffemodel with rc 0 (only a run refused them); a
    /// header echoed raw control bytes into the error.
    @Test func nanWeightsAndAControlByteInAHeaderAreRefusedByName() throws {
        let (dir, _, shapeOnly, _) = try Self.fixture()
        defer { try? FileManager.default.removeItem(at: dir) }
        let npy = dir.appendingPathComponent("npy")
        try Self.save([Float](repeating: .nan, count: 2), [2], npy, "fc.1.npy")
        let e = Self.modelError { _ = try shapeOnly.fillingBlobs(fromNPYDirectory: npy.path) }
        #expect(e?.layer == "fc" && e?.message.contains("nan") == true, "\(String(describing: e))")
        // A dtype with an escape and a bell in it: printed as '?'.
        let file = npy.appendingPathComponent("fc.1.npy")
        var bytes = [UInt8](try Data(contentsOf: file))
        let text = String(decoding: bytes, as: UTF8.self)
        let at = try #require(text.range(of: "<f4")).lowerBound.utf16Offset(in: text)
        bytes[at + 1] = 0x1B
        bytes[at + 2] = 0x07
        try Data(bytes).write(to: file)
        let d = Self.modelError { _ = try shapeOnly.fillingBlobs(fromNPYDirectory: npy.path) }
        let shown = "\(String(describing: d))"
        #expect(
            shown.contains("only '<f4' is read") && !shown.contains("\u{1B}") && !shown.contains("\u{07}"), "\(shown)")
    }

    @Test func aWrongShapeNamesBothShapes() throws {
        let (dir, _, shapeOnly, _) = try Self.fixture()
        defer { try? FileManager.default.removeItem(at: dir) }
        let npy = dir.appendingPathComponent("npy")
        // fc's weights transposed: (36, 2) instead of (2, 36).
        try Self.save([Float](repeating: 0, count: 72), [36, 2], npy, "fc.0.npy")
        let e = Self.modelError { _ = try shapeOnly.fillingBlobs(fromNPYDirectory: npy.path) }
        #expect(e?.layer == "fc")
        #expect(e?.message.contains("(36, 2), expected (2, 36)") == true)

        // A conv kernel with one input channel too few.
        try Self.save([Float](repeating: 0, count: 72), [2, 36], npy, "fc.0.npy")
        try Self.save([Float](repeating: 0, count: 4 * 2 * 9), [4, 2, 3, 3], npy, "conv1.0.npy")
        let c = Self.modelError { _ = try shapeOnly.fillingBlobs(fromNPYDirectory: npy.path) }
        #expect(c?.layer == "conv1")
        #expect(c?.message.contains("expected (4, 3, 3, 3)") == true)
    }

    @Test func aFileOfNoLayerAndANonFloatFileAreRejected() throws {
        let (dir, _, shapeOnly, _) = try Self.fixture()
        defer { try? FileManager.default.removeItem(at: dir) }
        let npy = dir.appendingPathComponent("npy")
        try Self.save([0, 0], [2], npy, "fc9.1.npy")
        let e = Self.modelError { _ = try shapeOnly.fillingBlobs(fromNPYDirectory: npy.path) }
        #expect(e?.message.contains("fc9.1.npy") == true)
        #expect(e?.message.contains("conv1, fc") == true)
        try FileManager.default.removeItem(at: npy.appendingPathComponent("fc9.1.npy"))

        // A float64 array (NumPy's default dtype) is named as such.
        var header: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        var dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }"
        dict += String(repeating: " ", count: 64 - (10 + dict.utf8.count + 1) % 64) + "\n"
        header += [UInt8(dict.utf8.count & 0xff), UInt8(dict.utf8.count >> 8)] + Array(dict.utf8)
        _ = try writeFile(npy, "fc.1.npy", Data(header + [UInt8](repeating: 0, count: 16)))
        let f = Self.modelError { _ = try shapeOnly.fillingBlobs(fromNPYDirectory: npy.path) }
        #expect(f?.layer == "fc")
        #expect(f?.message.contains("<f8") == true)

        let missing = Self.modelError {
            _ = try shapeOnly.fillingBlobs(fromNPYDirectory: dir.appendingPathComponent("nope").path)
        }
        #expect(missing?.message.contains("not a directory") == true)
    }
}
