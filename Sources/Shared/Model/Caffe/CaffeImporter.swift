import Foundation
import TesseraCore

/// Turns Caffe's NetParameter (a deploy prototxt, a caffemodel, or both merged by
/// layer name) into Tessera's `Net`, as Caffe would run it in the TEST phase.
struct CaffeImporter {
    /// Where the layer definitions came from (for messages).
    var definitionFile: String
    /// Where the weights came from, if anywhere.
    var weightsFile: String?
    /// Blobs of the weights file by layer name.
    var weightsByLayer: [String: [Caffe_BlobProto]] = [:]
    /// Blobs by their shared name (`param { name: … }`), as the layer owning them holds them in the caffemodel.
    var sharedBlobs: [String: Caffe_BlobProto] = [:]
    /// Build placeholder (zero) weights when there are none: shapes only.
    var shapeOnly = false
    /// Patch size given by the user, which wins over everything else.
    var patchOverride: Size2?
    /// What the importer did that a user should know.
    var notes: [String] = []

    /// Largest total of placeholder weights built for a shape-only import (elements):
    /// 1 GiB of zeros, more than VGG-19's 144 M weights; a 300-byte prototxt asked
    /// for 8 GiB under the old cap of 2^31 (user audit).
    static let maxPlaceholderElements = 1 << 28
    /// The cap this import uses (tests lower it to keep hostile inputs cheap).
    var placeholderLimit = maxPlaceholderElements

    /// Result of an import.
    struct Imported {
        var net: Net
        /// The input size the definition declares (Input layer, input_shape, input_dim), if any.
        var declaredInput: Size2?
        /// crop_size of the training data layer, if any.
        var cropSize: Int?
        /// Mean file named by the data layer (a path on the training machine), if any.
        var meanFileHint: String?
        /// The data layer's transform_param mean_value and scale, if it gives them.
        var declaredMean: [Float] = []
        var declaredScale: Float?
    }

    // MARK: - Layer selection

    /// Caffe's NetStateRule check for the TEST phase, level 0, no stages.
    static func meets(_ rule: Caffe_NetStateRule) -> Bool {
        if rule.hasPhase, rule.phase != .test { return false }
        if rule.hasMinLevel, 0 < rule.minLevel { return false }
        if rule.hasMaxLevel, 0 > rule.maxLevel { return false }
        if !rule.stage.isEmpty { return false }
        return true
    }

    static func includedInTest(_ layer: Caffe_LayerParameter) -> Bool {
        if !layer.include.isEmpty { return layer.include.contains(where: meets) }
        if !layer.exclude.isEmpty { return !layer.exclude.contains(where: meets) }
        if layer.hasPhase { return layer.phase == .test }
        return true
    }

    static let dataTypes: Set<String> = [
        "Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData",
        "AnnotatedData", "Python",
    ]
    static let dropTypes: Set<String> = [
        "Accuracy", "Silence", "EuclideanLoss", "HingeLoss", "InfogainLoss",
        "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "ContrastiveLoss",
    ]
}
