import Foundation
import TesseraCluster
import TesseraModel
import TesseraWire

/// What the job store keeps of a submitted job (`jobs/<id>/job.txt`), enough to
/// rebuild it after a restart: its spec (mode, tile, preprocessing, options) and the
/// checks of its stored files. One `key=value` per line; floats as their exact bit
/// patterns (hex) so a resumed job preprocesses exactly as the original did.
///
/// The model is `deploy.prototxt` and/or `weights.caffemodel` beside it (checked
/// against `model-sha256`), the image `image.png` (checked against `image-crc32` and
/// `image-bytes`). `job.txt` is written last: its presence means the entry is whole.
struct JobRecord: Equatable {
    static let fileName = "job.txt"
    static let formatVersion = 2

    var mode: Wire.Mode
    var tile: Int
    var stem: String
    /// `JobOptions.encoded`.
    var options: String
    var preprocessing: Wire.Preprocessing
    var modelDigest: String
    var imageCRC32: UInt32
    var imageBytes: Int

    func encoded() -> String {
        func bits(_ f: Float) -> String { String(format: "%08x", f.bitPattern) }
        let p = preprocessing
        return """
            format=\(Self.formatVersion)
            mode=\(mode.name)
            tile=\(tile)
            stem=\(stem)
            options=\(options)
            channel-order=\(p.channelOrder == .bgr ? "bgr" : "rgb")
            raw-scale=\(bits(p.rawScale))
            scale=\(bits(p.scale))
            mean=\(p.mean.map(bits).joined(separator: ","))
            model-sha256=\(modelDigest)
            image-crc32=\(String(format: "%08x", imageCRC32))
            image-bytes=\(imageBytes)

            """
    }

    /// Parses a record; the error names the key at fault (the caller adds the path).
    init(text: String) throws {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { throw ClusterError("line \"\(line)\" is not key=value") }
            fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        func field(_ key: String) throws -> String {
            guard let v = fields[key] else { throw ClusterError("no \(key)= line") }
            return v
        }
        func float(_ hex: String, _ key: String) throws -> Float {
            guard let b = UInt32(hex, radix: 16) else { throw ClusterError("\(key)=\(hex) is not a hex float") }
            return Float(bitPattern: b)
        }
        guard try field("format") == "\(Self.formatVersion)" else {
            throw ClusterError("format \(fields["format"]!) is not \(Self.formatVersion) (written by another version)")
        }
        guard let mode = Wire.Mode(name: try field("mode")) else {
            throw ClusterError("unknown mode \(fields["mode"]!)")
        }
        self.mode = mode
        guard let tile = Int(try field("tile")), tile > 0 else { throw ClusterError("bad tile=\(fields["tile"]!)") }
        self.tile = tile
        stem = try field("stem")
        options = try field("options")
        let order = try field("channel-order")
        guard order == "bgr" || order == "rgb" else { throw ClusterError("bad channel-order=\(order)") }
        let meanText = try field("mean")
        preprocessing = Wire.Preprocessing(
            channelOrder: order == "bgr" ? .bgr : .rgb, rawScale: try float(try field("raw-scale"), "raw-scale"),
            scale: try float(try field("scale"), "scale"),
            mean: try meanText.isEmpty ? [] : meanText.split(separator: ",").map { try float(String($0), "mean") })
        modelDigest = try field("model-sha256")
        guard let crc = UInt32(try field("image-crc32"), radix: 16) else { throw ClusterError("bad image-crc32") }
        imageCRC32 = crc
        guard let n = Int(try field("image-bytes")), n >= 0 else { throw ClusterError("bad image-bytes") }
        imageBytes = n
    }

    init(
        mode: Wire.Mode, tile: Int, stem: String, options: String, preprocessing: Wire.Preprocessing,
        modelDigest: String, imageCRC32: UInt32, imageBytes: Int
    ) {
        self.mode = mode; self.tile = tile; self.stem = stem; self.options = options
        self.preprocessing = preprocessing; self.modelDigest = modelDigest
        self.imageCRC32 = imageCRC32; self.imageBytes = imageBytes
    }
}

/// How a job ended, as the store keeps it (`jobs/<id>/state.txt`); absent while the
/// job is unfinished. `file=` lines name its outputs (in the job's output folder).
struct JobEnding: Equatable {
    static let fileName = "state.txt"

    var state: Wire.JobState
    var message: String
    /// The job's task count (for status).
    var tasks: Int
    var files: [String]

    func encoded() -> String {
        let oneLine = message.replacingOccurrences(of: "\n", with: " ")
        return (["state=\(state.rawValue)", "tasks=\(tasks)", "message=\(oneLine)"] + files.map { "file=\($0)" })
            .joined(separator: "\n") + "\n"
    }

    init(state: Wire.JobState, message: String, tasks: Int, files: [String]) {
        self.state = state; self.message = message; self.tasks = tasks; self.files = files
    }

    init(text: String) throws {
        var state: Wire.JobState?
        var message = ""
        var tasks = 0
        var files: [String] = []
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { throw ClusterError("line \"\(line)\" is not key=value") }
            let (key, value) = (line[..<eq], String(line[line.index(after: eq)...]))
            switch key {
            case "state":
                guard let raw = UInt8(value), let s = Wire.JobState(rawValue: raw) else {
                    throw ClusterError("bad state=\(value)")
                }
                state = s
            case "message": message = value
            case "tasks":
                guard let n = Int(value), n >= 0 else { throw ClusterError("bad tasks=\(value)") }
                tasks = n
            case "file": files.append(value)
            default: throw ClusterError("unknown key \(key)")
            }
        }
        guard let state else { throw ClusterError("no state= line") }
        self.state = state; self.message = message; self.tasks = tasks; self.files = files
    }
}
