import Foundation
import Testing

@testable import TesseraModel
@testable import TestSupport

/// What a model's import says of it (audit 53 F7, F12).
@Suite("Model import: notes and wording")
struct ModelNoteTests {
    static func deploy(head: String) -> String {
        """
        name: "t"
        input: "data"
        input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
        layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
                convolution_param { num_output: 4 kernel_size: 3 } }
        layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" inner_product_param { num_output: 2 } }
        \(head)
        """
    }

    /// F7: a deploy file without its `prob` layer mapped raw scores (−7.5…6.4) as a "probability" map, clipped
    /// in the PNGs, without a word.
    @Test("a net that does not end in a Softmax or Sigmoid is said to map raw scores")
    func scoresNote() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func notes(_ head: String, _ name: String) throws -> [String] {
            try ModelLoader.load(
                ModelSource(model: try writeFile(dir, name, Self.deploy(head: head)), requireWeights: false)
            ).notes
        }
        let bare = try notes("", "bare.prototxt")
        let warning = bare.first { $0.contains("not a Softmax or Sigmoid") }
        #expect(
            warning?.hasPrefix(ModelLoader.warningPrefix) == true
                && warning?.contains("layer 'ip' (InnerProduct)") == true
                && warning?.contains("raw scores") == true, "\(bare)")
        let relu = try notes(#"layer { name: "r" type: "ReLU" bottom: "ip" top: "r" }"#, "relu.prototxt")
        #expect(relu.contains { $0.contains("layer 'r' (ReLU)") }, "\(relu)")
        for (head, name) in [
            (#"layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }"#, "softmax.prototxt"),
            (#"layer { name: "s" type: "Sigmoid" bottom: "ip" top: "s" }"#, "sigmoid.prototxt"),
            // A Dropout after the Softmax is an Identity: the net still ends in the Softmax.
            (
                #"layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" } "#
                    + #"layer { name: "d" type: "Dropout" bottom: "prob" top: "prob" }"#, "dropout.prototxt"
            ),
        ] {
            let found = try notes(head, name)
            #expect(!found.contains { $0.contains("not a Softmax or Sigmoid") }, "\(name): \(found)")
        }
    }

    /// F12: a caffemodel of empty layer messages, given alone, said "layer '': unsupported layer type ''".
    @Test("layers without a type or name are told as such")
    func untypedLayers() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // NetParameter field 100 (layer), three empty messages.
        let file = try writeFile(dir, "empty.caffemodel", Data([0xA2, 0x06, 0x00, 0xA2, 0x06, 0x00, 0xA2, 0x06, 0x00]))
        let message = loadError(ModelSource(weights: file))
        #expect(
            message.contains("a layer without a name: it has no type") && !message.contains("layer ''"), "\(message)")
    }
}
