import Foundation
import TesseraCluster
import TesseraModel
import TesseraPlan
import TesseraWire

/// What the job store keeps of a submitted job (`jobs/<id>/job.txt`), enough to
/// rebuild it after a restart: its spec (mode, tile, preprocessing, options) and the
/// checks of its stored files. One `key=value` per line, every value percent-encoded
/// (`RecordText`) so that no file name, option or message can end a line or add a
/// key; floats as their exact bit patterns (hex) so a resumed job preprocesses
/// exactly as the original did. Format 2 (values written raw) is still read.
///
/// The model is `deploy.prototxt` and/or `weights.caffemodel` beside it (checked
/// against `model-sha256`), the image `image.png` (checked against `image-crc32` and
/// `image-bytes`). `job.txt` is written last: its presence means the entry is whole.
struct JobRecord: Equatable {
    static let fileName = "job.txt"
    static let formatVersion = 3
    /// Formats this version reads: 2 wrote values unencoded.
    static let readableFormats = [2, 3]

    var mode: Wire.Mode
    var tile: Int
    var stem: String
    /// `JobOptions.encoded`.
    var options: String
    var preprocessing: Wire.Preprocessing
    var modelDigest: String
    var imageCRC32: UInt32
    var imageBytes: Int
    /// Shared-storage jobs: the image the workers read and the map store they write
    /// (under its temporary name); nil for upload jobs.
    var sharedImage: String?
    var sharedStore: String?
    /// The shared image's `FileIdentity` when the job was planned: a resume checks it (review 31: an image
    /// replaced while the coordinator was down gave a map of two images, "done"). Nil in earlier records.
    var sharedImageIdentity: String?
    /// The CURVE key name that submitted the job (roles: only it may see, cancel or
    /// fetch the job); nil or "anonymous" without CURVE.
    var owner: String?
    /// How the job's tasks compute a net's map: `currentPlacement` (`TaskGeometry.placementVersion`);
    /// older in records of earlier releases, nil before 0.3.0 (`CoordinatorLoop.refuseMixedPlacement`).
    var placement: Int? = JobRecord.currentPlacement
    static let currentPlacement = TaskGeometry.placementVersion

    func encoded() -> String {
        func bits(_ f: Float) -> String { String(format: "%08x", f.bitPattern) }
        let p = preprocessing
        var fields: [(String, String)] = [
            ("format", "\(Self.formatVersion)"),
            ("mode", mode.name),
            ("tile", "\(tile)"),
            ("stem", stem),
            ("options", options),
            ("channel-order", p.channelOrder == .bgr ? "bgr" : "rgb"),
            ("raw-scale", bits(p.rawScale)),
            ("scale", bits(p.scale)),
            ("mean", p.mean.map(bits).joined(separator: ",")),
            ("model-sha256", modelDigest),
            ("image-crc32", String(format: "%08x", imageCRC32)),
            ("image-bytes", "\(imageBytes)"),
        ]
        if !p.std.isEmpty { fields.append(("std", p.std.map(bits).joined(separator: ","))) }
        if let sharedImage { fields.append(("shared-image", sharedImage)) }
        if let sharedStore { fields.append(("shared-store", sharedStore)) }
        if let sharedImageIdentity { fields.append(("shared-image-identity", sharedImageIdentity)) }
        if let owner { fields.append(("owner", owner)) }
        if let placement { fields.append(("window-placement", "\(placement)")) }
        return RecordText.encode(fields)
    }

    /// Parses a record; the error names the key at fault (the caller adds the path).
    init(text: String) throws {
        let lines = try RecordText.lines(text)
        var fields: [String: String] = [:]
        for (key, value) in lines {
            guard fields[key] == nil else { throw ClusterError("key \(key) appears twice") }
            fields[key] = value
        }
        guard let format = fields["format"] else { throw ClusterError("no format= line") }
        guard let version = Int(format), Self.readableFormats.contains(version) else {
            let readable = Self.readableFormats.map(String.init).joined(separator: " or ")
            throw ClusterError(
                "format \(format) is not one this coordinator reads (\(readable)): written by another version")
        }
        if version >= 3 {
            for (key, value) in fields { fields[key] = try RecordText.decode(value, key: key) }
        }
        func field(_ key: String) throws -> String {
            guard let v = fields[key] else { throw ClusterError("no \(key)= line") }
            return v
        }
        func float(_ hex: String, _ key: String) throws -> Float {
            guard let b = UInt32(hex, radix: 16) else { throw ClusterError("\(key)=\(hex) is not a hex float") }
            return Float(bitPattern: b)
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
            mean: try meanText.isEmpty ? [] : meanText.split(separator: ",").map { try float(String($0), "mean") },
            std: try (fields["std"] ?? "").split(separator: ",").map { try float(String($0), "std") })
        modelDigest = try field("model-sha256")
        guard let crc = UInt32(try field("image-crc32"), radix: 16) else { throw ClusterError("bad image-crc32") }
        imageCRC32 = crc
        guard let n = Int(try field("image-bytes")), n >= 0 else { throw ClusterError("bad image-bytes") }
        imageBytes = n
        sharedImage = fields["shared-image"]
        sharedStore = fields["shared-store"]
        sharedImageIdentity = fields["shared-image-identity"]
        owner = fields["owner"]
        placement = fields["window-placement"].flatMap { Int($0) }
        guard (sharedImage == nil) == (sharedStore == nil) else {
            throw ClusterError("a shared-storage job needs both shared-image= and shared-store=")
        }
    }

    init(
        mode: Wire.Mode, tile: Int, stem: String, options: String, preprocessing: Wire.Preprocessing,
        modelDigest: String, imageCRC32: UInt32, imageBytes: Int, sharedImage: String? = nil,
        sharedStore: String? = nil, owner: String? = nil
    ) {
        self.sharedImage = sharedImage; self.sharedStore = sharedStore; self.owner = owner
        self.mode = mode; self.tile = tile; self.stem = stem; self.options = options
        self.preprocessing = preprocessing; self.modelDigest = modelDigest
        self.imageCRC32 = imageCRC32; self.imageBytes = imageBytes
    }
}

/// How a job ended, as the store keeps it (`jobs/<id>/state.txt`); absent while the
/// job is unfinished. `file=` lines name its outputs (in the job's output folder).
/// Values are percent-encoded like `JobRecord`'s (`format=3` first); a file without
/// a `format=` line is the older, unencoded form.
struct JobEnding: Equatable {
    static let fileName = "state.txt"

    var state: Wire.JobState
    var message: String
    /// The job's task count (for status).
    var tasks: Int
    var files: [String]

    func encoded() -> String {
        RecordText.encode(
            [
                ("format", "\(JobRecord.formatVersion)"), ("state", "\(state.rawValue)"), ("tasks", "\(tasks)"),
                ("message", message),
            ] + files.map { ("file", $0) })
    }

    init(state: Wire.JobState, message: String, tasks: Int, files: [String]) {
        self.state = state; self.message = message; self.tasks = tasks; self.files = files
    }

    init(text: String) throws {
        let lines = try RecordText.lines(text)
        let encoded = lines.first?.key == "format"
        if encoded, lines[0].value != "\(JobRecord.formatVersion)" {
            throw ClusterError(
                "format \(lines[0].value) is not \(JobRecord.formatVersion) (written by another version)")
        }
        var state: Wire.JobState?
        var message = ""
        var tasks = 0
        var files: [String] = []
        for (key, raw) in lines.dropFirst(encoded ? 1 : 0) {
            let value = encoded ? try RecordText.decode(raw, key: key) : raw
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

/// The text of the store's records: one `key=value` per line, each value
/// percent-encoded so that it holds no line break, `=`, `;` or `%` of its own, nor
/// any byte outside printable ASCII (a file name may hold anything but NUL and `/`).
/// Letters, digits and `-._~/,:+@` stay as they are, so records remain readable.
enum RecordText {
    private static let plain: Set<UInt8> = Set(
        Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/,:+@".utf8))
    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    static func encode(_ fields: [(String, String)]) -> String {
        fields.map { "\($0.0)=\(encode($0.1))\n" }.joined()
    }

    static func encode(_ value: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            if plain.contains(byte) {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The value `encode` made; an error naming `key` for a stray `%` or bad escape.
    static func decode(_ text: String, key: String) throws -> String {
        var out: [UInt8] = []
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            guard bytes[i] == UInt8(ascii: "%") else {
                out.append(bytes[i])
                i += 1
                continue
            }
            guard i + 2 < bytes.count, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) else {
                throw ClusterError("\(key)= has a malformed %-escape at character \(i + 1)")
            }
            out.append(hi << 4 | lo)
            i += 3
        }
        guard let value = String(validating: out, as: UTF8.self) else {
            throw ClusterError("\(key)= is not valid UTF-8 once decoded")
        }
        return value
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }

    /// The (key, raw value) pairs of a record's lines, in order; empty lines are
    /// skipped. Lines are split on the byte `\n` alone (not Swift's `Character`, for
    /// which `\r\n` is one character).
    static func lines(_ text: String) throws -> [(key: String, value: String)] {
        try Array(text.utf8).split(separator: UInt8(ascii: "\n")).map { line in
            guard let eq = line.firstIndex(of: UInt8(ascii: "=")) else {
                throw ClusterError("line \"\(String(decoding: line.prefix(200), as: UTF8.self))\" is not key=value")
            }
            return (String(decoding: line[..<eq], as: UTF8.self), String(decoding: line[(eq + 1)...], as: UTF8.self))
        }
    }
}
