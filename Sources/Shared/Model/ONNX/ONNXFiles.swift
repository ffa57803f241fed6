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
            if String(data: data.prefix(4096), encoding: .utf8) != nil, !data.prefix(4096).contains(0) {
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
    package static func selfContainedBytes(_ path: String) throws -> [UInt8] {
        let data = try CaffeFiles.readBytes(path, what: "ONNX model")
        var model = try decode(data, file: path)
        guard try loadExternalData(&model, modelPath: path) else { return [UInt8](data) }
        do {
            return try model.serializedBytes()
        } catch {
            throw ModelError(
                .unreadable, file: path,
                "the model with its external data put inside cannot be written as one file (\(error)): "
                    + "it is over protobuf's 2 GiB")
        }
    }

    /// Replaces every external tensor's reference by its values; true when there was one.
    @discardableResult
    static func loadExternalData(_ model: inout Onnx_ModelProto, modelPath: String) throws -> Bool {
        let folder = URL(fileURLWithPath: modelPath).deletingLastPathComponent().standardizedFileURL
        var any = false
        var cache: [String: Data] = [:]
        func resolve(_ t: inout Onnx_TensorProto, _ where_: String) throws {
            guard t.dataLocation == .external else { return }
            any = true
            var entries: [String: String] = [:]
            for e in t.externalData { entries[e.key] = e.value }
            let what = "tensor '\(t.name)'\(where_)"
            guard let location = entries["location"], !location.isEmpty else {
                throw ModelError(.weights, file: modelPath, "\(what) is external but names no location")
            }
            let url = try externalURL(location, folder: folder, modelPath: modelPath, what: what)
            let key = url.path
            if cache[key] == nil {
                do {
                    cache[key] = try Data(contentsOf: url, options: .mappedIfSafe)
                } catch {
                    throw ModelError(
                        .weights, file: modelPath,
                        "\(what): its external-data file '\(location)' cannot be read (\(url.path)): "
                            + "keep it next to the model")
                }
            }
            let file = cache[key]!
            let offset = Int(entries["offset"] ?? "0") ?? -1
            let length = entries["length"].map { Int($0) ?? -1 } ?? (file.count - max(0, offset))
            guard offset >= 0, length >= 0, offset <= file.count, length <= file.count - offset else {
                throw ModelError(
                    .weights, file: modelPath,
                    "\(what): offset \(entries["offset"] ?? "0") and length \(entries["length"] ?? "-") "
                        + "do not fit its external-data file '\(location)' of \(file.count) bytes")
            }
            t.rawData = file.subdata(in: (file.startIndex + offset)..<(file.startIndex + offset + length))
            t.externalData = []
            t.clearDataLocation()
        }
        for i in model.graph.initializer.indices {
            try resolve(&model.graph.initializer[i], "")
        }
        for n in model.graph.node.indices {
            for a in model.graph.node[n].attribute.indices where model.graph.node[n].attribute[a].hasT {
                try resolve(&model.graph.node[n].attribute[a].t, " of node '\(model.graph.node[n].name)'")
            }
        }
        return any
    }

    /// The external-data file `location`, which must stay inside the model's folder.
    static func externalURL(_ location: String, folder: URL, modelPath: String, what: String) throws -> URL {
        func escapes() -> ModelError {
            ModelError(
                .weights, file: modelPath,
                "\(what): its external-data location '\(location)' leaves the model's folder: "
                    + "external data must lie next to the model (or below it)")
        }
        guard !location.hasPrefix("/"), !location.contains("\0") else { throw escapes() }
        let url = folder.appendingPathComponent(location).standardizedFileURL
        let base = folder.resolvingSymlinksInPath().path
        let real = url.resolvingSymlinksInPath().path
        guard url.path.hasPrefix(folder.path.hasSuffix("/") ? folder.path : folder.path + "/"),
            real.hasPrefix(base.hasSuffix("/") ? base : base + "/")
        else { throw escapes() }
        return url
    }
}
