import Foundation
import TesseraCore

/// External data: the files next to a large model that hold its tensors' values,
/// read into `raw_data` (only from the model's folder or below it).
extension ONNXFiles {
    /// The most external data a model may hold: it goes into one protobuf message, of at most 2 GiB.
    static let maxExternalBytes = 2 << 30

    /// Replaces every external tensor's reference by its values; true when there was one.
    @discardableResult
    static func loadExternalData(
        _ model: inout Onnx_ModelProto, modelPath: String, dataWithin: ((String) -> Bool)? = nil
    ) throws -> Bool {
        let folder = URL(fileURLWithPath: modelPath).deletingLastPathComponent().standardizedFileURL
        var any = false
        // Each tensor's bytes are read from its file where they lie: a 4 KB tensor in a 3 GiB file read
        // the whole file into memory (hostile-input audit).
        var files: [String: (handle: FileHandle, size: Int)] = [:]
        defer { for f in files.values { try? f.handle.close() } }
        // The tensors together, before any is read: each within its file, all of them named one whole 1 GiB file,
        // and the coordinator held 3.6 GiB before protobuf's limit refused the model (hostile-peer audit 54 F9).
        var total = 0
        // Two passes: every tensor's range checked and counted, then read.
        func resolve(_ t: inout Onnx_TensorProto, _ where_: String, read: Bool) throws {
            guard t.dataLocation == .external else { return }
            any = true
            var entries: [String: String] = [:]
            for e in t.externalData { entries[e.key] = e.value }
            let what = "tensor '\(t.name)'\(where_)"
            guard let location = entries["location"], !location.isEmpty else {
                throw ModelError(.weights, file: modelPath, "\(what) is external but names no location")
            }
            let url = try externalURL(location, folder: folder, modelPath: modelPath, what: what)
            if let dataWithin, !dataWithin(url.path) {
                throw ModelError(
                    .weights, file: modelPath,
                    "\(what): its external-data file '\(location)' leads outside the folders this coordinator "
                        + "reads (--shared-root), through a symbolic link")
            }
            let key = url.path
            if files[key] == nil { files[key] = try open(url, location: location, what: what, modelPath: modelPath) }
            let (handle, size) = files[key]!
            let offset = Int(entries["offset"] ?? "0") ?? -1
            let length = entries["length"].map { Int($0) ?? -1 } ?? (size - max(0, offset))
            guard offset >= 0, length >= 0, offset <= size, length <= size - offset else {
                throw ModelError(
                    .weights, file: modelPath,
                    "\(what): offset \(entries["offset"] ?? "0") and length \(entries["length"] ?? "-") "
                        + "do not fit its external-data file '\(location)' of \(size) bytes")
            }
            guard read else {
                total += length
                guard total <= Self.maxExternalBytes else {
                    throw ModelError(
                        .weights, file: modelPath,
                        "\(what): the external data of the model's tensors comes to more than "
                            + "\(Self.maxExternalBytes >> 30) GiB, over protobuf's 2 GiB for the model they go into")
                }
                return
            }
            let bytes: Data?
            do {
                try handle.seek(toOffset: UInt64(offset))
                bytes = try handle.read(upToCount: length)
            } catch {
                throw ModelError(
                    .weights, file: modelPath,
                    "\(what): reading its external-data file '\(location)' failed: \(systemErrorText(error))")
            }
            let data = bytes ?? Data()
            guard data.count == length else {
                throw ModelError(
                    .weights, file: modelPath, "\(what): its external-data file '\(location)' ended early")
            }
            t.rawData = data
            t.externalData = []
            t.clearDataLocation()
        }
        for read in [false, true] {
            for i in model.graph.initializer.indices {
                try resolve(&model.graph.initializer[i], "", read: read)
            }
            for n in model.graph.node.indices {
                for a in model.graph.node[n].attribute.indices where model.graph.node[n].attribute[a].hasT {
                    try resolve(
                        &model.graph.node[n].attribute[a].t, " of node '\(model.graph.node[n].name)'", read: read)
                }
            }
        }
        return any
    }

    /// An external-data file opened for reading, with its size; a missing file, or one that is not a
    /// regular file (a FIFO or device ran into Foundation's misleading errors), is named as such.
    private static func open(
        _ url: URL, location: String, what: String, modelPath: String
    ) throws -> (handle: FileHandle, size: Int) {
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path)
        guard let attributes else {
            throw ModelError(
                .weights, file: modelPath,
                "\(what): its external-data file '\(location)' does not exist (\(url.path)): keep it next to the model")
        }
        guard attributes[.type] as? FileAttributeType == .typeRegular,
            let size = (attributes[.size] as? NSNumber)?.intValue
        else {
            throw ModelError(
                .weights, file: modelPath,
                "\(what): its external-data file '\(location)' is not a regular file (a pipe, socket or device)")
        }
        do {
            return (try FileHandle(forReadingFrom: url), size)
        } catch {
            throw ModelError(
                .weights, file: modelPath,
                "\(what): its external-data file '\(location)' cannot be opened: \(systemErrorText(error))")
        }
    }

    /// The external-data file `location`, which must stay inside the model's folder as written:
    /// the model file cannot name another file on the machine. A symbolic link in that folder is
    /// followed wherever it points, as onnxruntime does: whoever made the folder made the link (the
    /// Hugging Face hub cache links every file of a snapshot to a blob outside it; user audit).
    static func externalURL(_ location: String, folder: URL, modelPath: String, what: String) throws -> URL {
        func escapes() -> ModelError {
            ModelError(
                .weights, file: modelPath,
                "\(what): its external-data location '\(location)' leaves the model's folder: "
                    + "external data must lie next to the model (or below it)")
        }
        guard !location.hasPrefix("/"), !location.contains("\0") else { throw escapes() }
        let url = folder.appendingPathComponent(location).standardizedFileURL
        guard url.path.hasPrefix(folder.path.hasSuffix("/") ? folder.path : folder.path + "/") else { throw escapes() }
        return url
    }
}
