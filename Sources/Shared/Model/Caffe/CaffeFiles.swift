import Foundation
import SwiftProtobuf
import TesseraCore

/// Reading Caffe's files into their protobuf messages, with errors that name the
/// file and, for text, the line and column.
enum CaffeFiles {
    /// Largest file Tessera reads (Caffe's own limit for a protobuf message is 2 GiB).
    static let maxFileBytes = 2_147_483_647

    static func readBytes(_ path: String, what: String) throws -> Data {
        try ModelFiles.read(path, what: what)
    }
}

/// Reading a model file whole, after checking it is one: a regular file (a FIFO or `/dev/zero`
/// gave Foundation's "You don't have permission"), under 2 GiB (a coordinator read a client-named
/// sparse file of 1.9 GB whole and aborted; hostile-input audit).
package enum ModelFiles {
    package static func read(_ path: String, what: String) throws -> Data {
        let maxFileBytes = CaffeFiles.maxFileBytes
        let url = URL(fileURLWithPath: path)
        // stat follows links (model caches link their files); why it fails is said: a dangling link or a
        // loop of links was "not a regular file (a pipe, socket or device)" (paths audit 41 F6).
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            var link = stat()
            let why =
                code == ENOENT && lstat(path, &link) == 0
                ? "it is a link to \((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?"), "
                    + "which does not exist"
                : code == ENOENT || code == ENOTDIR
                    ? "the file does not exist"
                    : code == ELOOP
                        ? "its links form a loop"
                        : code == EACCES
                            ? "this user may not read it (or a folder on its path)"
                            : String(cString: strerror(code))
            throw ModelError(.unreadable, file: path, "cannot read the \(what): \(why)")
        }
        let type = info.st_mode & S_IFMT
        if type == S_IFDIR {
            throw ModelError(
                .unreadable, file: path, "cannot read the \(what): this is a folder; name the file in it")
        }
        if type != S_IFREG {
            throw ModelError(
                .unreadable, file: path,
                "cannot read the \(what): this is not a regular file (a pipe, socket or device)")
        }
        if Int64(info.st_size) > Int64(maxFileBytes) {
            throw ModelError(
                .unreadable, file: path,
                "the \(what) is \(info.st_size) bytes, more than the 2 GiB a Caffe file can hold")
        }
        // Read, copied and decoded to floats, a model file takes about three times its size: past what this
        // process may use, refused before reading (hostile-input audit: a client-named 1.9 GB file aborted
        // the coordinator under a 4 GB limit).
        if case let size = Int(info.st_size), size > SystemMemory.room / 3 {
            throw ModelError(
                .unreadable, file: path,
                "the \(what) is \(SystemMemory.text(size)): loading it takes about \(SystemMemory.text(3 * size)) and "
                    + "this process may use \(SystemMemory.text(SystemMemory.room)) in all")
        }
        do {
            return try Data(contentsOf: url)
        } catch {
            throw ModelError(.unreadable, file: path, "cannot read the \(what): \(systemErrorText(error))")
        }
    }
}

extension CaffeFiles {
    /// A text prototxt. Fields Tessera does not know are skipped (each noted in
    /// `ignored` with its position); anything else wrong is an error with line and column.
    static func readPrototxt(_ path: String, ignored: inout [String]) throws -> Caffe_NetParameter {
        try decodePrototxt(readBytes(path, what: "model definition (prototxt)"), file: path, ignored: &ignored)
    }

    /// A text prototxt already in memory; `path` names it in errors.
    static func decodePrototxt(_ data: Data, file path: String, ignored: inout [String]) throws -> Caffe_NetParameter {
        guard let text = String(data: data, encoding: .utf8) else {
            if looksBinary(data) {
                // What it is, when its first bytes say (user review: a PNG was called a caffemodel).
                let head = [UInt8](data.prefix(8))
                let kind: String
                if head.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
                    kind = "a PNG image: the image goes last on the command line, --model takes the net's prototxt"
                } else if head.starts(with: [0x49, 0x49, 0x2A]) || head.starts(with: [0x4D, 0x4D, 0x00]) {
                    kind = "a TIFF image: the image goes last on the command line, --model takes the net's prototxt"
                } else {
                    kind = "a .caffemodel goes with --weights, not --model"
                }
                throw ModelError(.unreadable, file: path, "this is not a text prototxt but a binary file: \(kind)")
            }
            throw ModelError(.unreadable, file: path, "the prototxt is not valid UTF-8 text")
        }
        return try parsePrototxt(text, file: path, ignored: &ignored)
    }

    /// BVLC Caffe's LayerParameter and V1LayerParameter fields that Tessera's caffe.proto leaves out: the
    /// parameters of layers it does not compute (data sources, losses, Crop, ArgMax, …).
    static let bvlcFieldsNotRead: Set<String> = [
        "argmax_param", "bias_param", "contrastive_loss_param", "crop_param", "dummy_data_param", "embed_param",
        "exp_param", "hdf5_data_param", "hdf5_output_param", "hinge_loss_param", "infogain_loss_param", "log_param",
        "mvn_param", "parameter_param", "python_param", "recurrent_param", "reduction_param", "slice_param",
        "spp_param", "swish_param", "threshold_param", "tile_param", "window_data_param", "blob_share_mode",
    ]

    static func parsePrototxt(_ text: String, file: String, ignored: inout [String]) throws -> Caffe_NetParameter {
        var scanner = PrototxtScanner(text)
        let entries: [PrototxtScanner.Entry]
        do {
            entries = try scanner.parse()
        } catch let e as PrototxtScanner.SyntaxError {
            throw ModelError(.syntax, file: file, "syntax error at line \(e.line), column \(e.column): \(e.message)")
        }
        _ = entries
        var current = scanner.bytes
        // Each pass decodes the text about log2(fields) times: passes are bounded by the text's size, so a
        // hostile file of a thousand distinct unknown fields fails in seconds (hostile-input audit: 2 MB
        // took 47 s, 4 MB over a minute, and blocked the coordinator's submissions meanwhile).
        let passes = max(16, min(1000, (32 << 20) / max(1, current.count)))
        for _ in 0..<passes {
            let candidate = String(decoding: current, as: UTF8.self)
            let error: Error
            do {
                return try Caffe_NetParameter(textFormatString: candidate)
            } catch let e {
                error = e
            }
            // Locate the failing field.
            var s = PrototxtScanner(candidate)
            let tree = (try? s.parse()) ?? []
            guard let culprit = s.culprit(in: tree, decodes: { (try? Caffe_NetParameter(textFormatString: $0)) != nil })
            else {
                throw ModelError(.syntax, file: file, "cannot parse the prototxt: \(describe(error))")
            }
            let at = "line \(culprit.line), column \(culprit.column)"
            // Caffe forks' pooling_param ceil_mode (BVLC PR 3057) is BVLC's round_mode: ignoring it rounded
            // a floor-mode pooling up (Caffe audit: a map off by 0.95).
            if culprit.name == "ceil_mode", ["false", "true", "0", "1"].contains(s.valueText(culprit)) {
                let floor = ["false", "0"].contains(s.valueText(culprit))
                let text = Array((floor ? "round_mode: FLOOR" : "round_mode: CEIL").utf8)
                current.replaceSubrange(culprit.start..<culprit.end, with: text)
                ignored.append(
                    "\(file): 'ceil_mode: \(s.valueText(culprit))' at \(at) (a Caffe fork's field) read as "
                        + "'round_mode: \(floor ? "FLOOR" : "CEIL")'")
                continue
            }
            if case TextFormatDecodingError.unknownField = error {
                // The same field in every layer at once (a fork's engine field, say): one warning. It was an
                // info line saying "not used by Tessera", which read as harmless: a misspelt 'pol: AVE' ran MAX
                // pooling, up to 0.93 off the net meant (hostile-input audit 27; BVLC Caffe refuses the file).
                let all = s.entries(atPathOf: culprit, in: tree)
                if let e = all.first, Self.bvlcFieldsNotRead.contains(e.name) {
                    // BVLC's own field, of a layer Tessera does not compute (a data source, Crop, ArgMax): it was
                    // called misspelt, and "BVLC Caffe refuses the file" (model audit 48 F4).
                    ignored.append(
                        "\(file): '\(e.name)' at line \(e.line), column \(e.column)"
                            + "\(all.count > 1 ? " (and \(all.count - 1) more of that name)" : ""): a Caffe field of "
                            + "layers Tessera does not compute, not read")
                } else if let e = all.first {
                    ignored.append(
                        "\(ModelLoader.warningPrefix)\(file): ignored field '\(e.name)' at line \(e.line), column "
                            + "\(e.column)\(all.count > 1 ? " (and \(all.count - 1) more of that name)" : ""): Caffe's "
                            + "caffe.proto has no such field (misspelt? a Caffe fork's?), and BVLC Caffe refuses the file"
                    )
                }
                for e in all { current = s.blanking(e, in: current) }
                continue
            }
            let value = s.valueText(culprit)
            throw ModelError(
                .syntax, file: file,
                "error at \(at): field '\(culprit.name)'"
                    + (value.isEmpty ? "" : " = \(value)") + ": \(describe(error))")
        }
        throw ModelError(
            .syntax, file: file,
            "too many unknown fields (still more after \(passes) passes over its \(current.count) bytes): is this a Caffe "
                + "prototxt?")
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case TextFormatDecodingError.malformedNumber: return "not a valid number for this field (or out of range)"
        case TextFormatDecodingError.unrecognizedEnumValue: return "not one of the values this field allows"
        case TextFormatDecodingError.schemaMismatch: return "the value has the wrong type for this field"
        case TextFormatDecodingError.malformedText: return "malformed text"
        case TextFormatDecodingError.unknownField: return "unknown field"
        case TextFormatDecodingError.invalidUTF8: return "invalid UTF-8 in a string"
        case TextFormatDecodingError.truncated: return "the text ends in the middle of a field"
        case TextFormatDecodingError.messageDepthLimit: return "messages nested too deeply"
        default: return "\(error)"
        }
    }

    private static func looksBinary(_ data: Data) -> Bool {
        data.prefix(4096).contains { $0 == 0 || ($0 < 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09) }
    }

    /// A binary NetParameter (.caffemodel).
    static func readCaffemodel(_ path: String) throws -> Caffe_NetParameter {
        try decodeCaffemodel(readBytes(path, what: "weights (caffemodel)"), file: path)
    }

    /// A binary NetParameter (.caffemodel) already in memory; `file` names it in errors.
    static func decodeCaffemodel(_ data: Data, file path: String) throws -> Caffe_NetParameter {
        guard !data.isEmpty else { throw ModelError(.unreadable, file: path, "the caffemodel is empty") }
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 64
            return try Caffe_NetParameter(serializedBytes: data, options: options)
        } catch {
            let looksText = String(data: data.prefix(4096), encoding: .utf8) != nil && !looksBinary(data)
            if looksText {
                throw ModelError(
                    .unreadable, file: path,
                    "this is a text file, not a binary caffemodel: "
                        + "a prototxt goes with --model, not --weights")
            }
            throw ModelError(
                .unreadable, file: path,
                "the caffemodel is truncated or corrupt (\(binaryReason(error))): "
                    + "it does not decode as a Caffe NetParameter")
        }
    }

    /// A binary BlobProto (mean.binaryproto).
    static func readBlob(_ path: String) throws -> Caffe_BlobProto {
        let data = try readBytes(path, what: "mean file (binaryproto)")
        // An image or an array is the likely mistake (docs/CLI audit 36 F17: a PNG was "malformed protobuf";
        // protobuf skips unknown fields, so some such files would even decode as an empty blob).
        if let kind = fileKind(data) {
            throw ModelError(
                .unreadable, file: path,
                "this is \(kind), not a Caffe mean file (a BlobProto, usually mean.binaryproto): give the "
                    + "per-channel means with --mean instead (e.g. --mean 104,117,123, in the net's channel order)")
        }
        do {
            return try Caffe_BlobProto(serializedBytes: data)
        } catch {
            if String(data: data.prefix(4096), encoding: .utf8) != nil && !looksBinary(data) && !data.isEmpty {
                throw ModelError(
                    .unreadable, file: path,
                    "this is a text file, not a Caffe mean file (a binary BlobProto, usually mean.binaryproto): "
                        + "give per-channel means with --mean instead")
            }
            throw ModelError(
                .unreadable, file: path,
                "the mean file is truncated or corrupt (\(binaryReason(error))): "
                    + "it does not decode as a Caffe BlobProto")
        }
    }

    /// "a PNG image" and the like, from the first bytes of a file that is not what was expected.
    static func fileKind(_ data: Data) -> String? {
        let head = [UInt8](data.prefix(8))
        func starts(_ magic: [UInt8]) -> Bool { head.starts(with: magic) }
        if starts([0x89, 0x50, 0x4E, 0x47]) { return "a PNG image" }
        if starts([0xFF, 0xD8, 0xFF]) { return "a JPEG image" }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) || starts([0x49, 0x49, 0x2B, 0x00])
            || starts([0x4D, 0x4D, 0x00, 0x2B])
        {
            return "a TIFF image"
        }
        if starts([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) { return "a NumPy .npy array" }
        return nil
    }

    static func binaryReason(_ error: Error) -> String {
        switch error {
        case BinaryDecodingError.truncated: return "it ends in the middle of a field"
        case BinaryDecodingError.malformedProtobuf: return "malformed protobuf data"
        case BinaryDecodingError.invalidUTF8: return "a string is not valid UTF-8"
        case BinaryDecodingError.messageDepthLimit: return "messages nested too deeply"
        default: return "\(error)"
        }
    }
}

/// A blob's shape and values, checked for sane sizes.
struct BlobValues {
    var dims: [Int]
    var data: [Float]
    var count: Int { data.count }

    /// Largest blob Tessera accepts (elements).
    static let maxElements = 1 << 31

    /// Dimensions with the size-1 axes removed: how shapes are compared, so that
    /// legacy 4-D shapes (1×1×64×1024) match modern ones (64×1024).
    var squeezed: [Int] { dims.filter { $0 != 1 } }

    var shapeText: String { dims.isEmpty ? "(scalar)" : dims.map(String.init).joined(separator: "×") }

    init(dims: [Int], data: [Float]) {
        self.dims = dims
        self.data = data
    }

    init(_ blob: Caffe_BlobProto, file: String?, layer: String, index: Int) throws {
        func fail(_ m: String) -> ModelError { ModelError(.weights, file: file, layer: layer, "blob \(index): \(m)") }
        let raw: [Int64]
        if blob.hasShape {
            raw = blob.shape.dim
        } else if blob.hasNum || blob.hasChannels || blob.hasHeight || blob.hasWidth {
            raw = [Int64(blob.num), Int64(blob.channels), Int64(blob.height), Int64(blob.width)]
        } else {
            raw = [Int64(max(blob.data.count, blob.doubleData.count))]
        }
        guard raw.count <= 32 else { throw fail("has \(raw.count) dimensions") }
        var count: Int64 = 1
        for d in raw {
            guard d >= 0 else {
                throw fail("has a negative dimension (\(raw.map(String.init).joined(separator: "×")))")
            }
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, p <= Int64(Self.maxElements) else {
                throw fail("its shape \(raw.map(String.init).joined(separator: "×")) has more than 2^31 elements")
            }
            count = p
        }
        dims = raw.map { Int($0) }
        // Caffe's `Blob::FromProto` reads double_data when it has any, whatever data holds (hostile-input audit 27:
        // a blob with both was read from data).
        if !blob.doubleData.isEmpty {
            data = blob.doubleData.map { Float($0) }
        } else {
            data = blob.data
        }
        guard data.count == Int(count) else {
            throw fail(
                "its shape \(dims.map(String.init).joined(separator: "×")) holds \(count) values "
                    + "but it stores \(data.count)")
        }
    }
}
