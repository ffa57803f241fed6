import Foundation
import SwiftProtobuf

/// Reading ONNX files (`ModelProto`, binary protobuf) with errors that name the file,
/// and the external-data files a large model keeps its weights in.
package enum ONNXFiles {
    /// Whether `data` (named `name`) is meant as an ONNX model: its name says so, or
    /// it starts with field 1 as a varint (`ir_version`, what every ONNX writer puts
    /// first). A prototxt starts with text, a caffemodel with field 1 as a string.
    package static func isONNX(_ data: Data?, name: String?) -> Bool {
        if let name, name.lowercased().hasSuffix(".onnx") { return true }
        return data?.first == 0x08
    }

    /// Decodes a `ModelProto` from memory; `file` names it in errors.
    static func decode(_ data: Data, file: String) throws -> Onnx_ModelProto {
        guard !data.isEmpty else { throw ModelError(.unreadable, file: file, "the ONNX file is empty") }
        let model: Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 64
            model = try Onnx_ModelProto(serializedBytes: data, options: options)
        } catch {
            // Text has no control bytes but tab and line ends: the first bytes of a truncated model
            // (08 08 12 07 "pyto…") are valid UTF-8 too, and were called a text file (ONNX user audit).
            let head = data.prefix(4096)
            if String(data: head, encoding: .utf8) != nil,
                head.allSatisfy({ $0 >= 0x20 || $0 == 9 || $0 == 10 || $0 == 13 })
            {
                throw ModelError(
                    .unreadable, file: file,
                    "this is a text file, not an ONNX model (a binary ModelProto): a Caffe prototxt is not an ONNX file"
                )
            }
            throw ModelError(
                .unreadable, file: file,
                "not an ONNX model, or a truncated or corrupt one (\(CaffeFiles.binaryReason(error))): "
                    + "it does not decode as an ONNX ModelProto")
        }
        guard model.irVersion > 0, model.hasGraph else {
            throw ModelError(
                .unreadable, file: file,
                "not an ONNX model: it decodes as protobuf but has no "
                    + (model.irVersion > 0 ? "graph" : "ir_version"))
        }
        return model
    }

    /// Reads an ONNX model from `path` and the external-data files its tensors name,
    /// which must lie in the model's folder or below it. The result keeps every
    /// tensor's values in `raw_data`: a self-contained model.
    static func read(_ path: String) throws -> Onnx_ModelProto {
        let data = try CaffeFiles.readBytes(path, what: "ONNX model")
        var model = try decode(data, file: path)
        try loadExternalData(&model, modelPath: path)
        return model
    }

    /// The bytes that carry the model at `path` to another process: the file itself,
    /// or, when its tensors keep their values in external files, the model with those
    /// values put inside (a worker has no access to the files next to the model).
    /// `dataWithin`: whether an external-data file may be read (a coordinator reading a shared
    /// folder for others: its links must not lead out of `--shared-root`); nil: any.
    package static func selfContainedBytes(_ path: String, dataWithin: ((String) -> Bool)? = nil) throws -> [UInt8] {
        let data = try CaffeFiles.readBytes(path, what: "ONNX model")
        var model = try decode(data, file: path)
        guard try loadExternalData(&model, modelPath: path, dataWithin: dataWithin) else {
            // The message's copy of the weights goes before the file's bytes are copied out.
            model = Onnx_ModelProto()
            return [UInt8](data)
        }
        do {
            return try model.serializedBytes()
        } catch {
            throw ModelError(
                .unreadable, file: path,
                "the model with its external data put inside cannot be written as one file (\(error)): "
                    + "it is over protobuf's 2 GiB")
        }
    }
}
