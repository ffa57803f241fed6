import TesseraImage
import TesseraWire

/// The per-job settings that `Wire.JobSpec` carries as text in its options string:
/// `key=value` pairs separated by `;`, each value percent-encoded (`%`, `;`, `=`
/// and control characters), so a folder name cannot end a value or add a key.
///
/// | key | meaning |
/// |---|---|
/// | outputs | output kinds, CLI syntax (`all`, `npy,prob`…) |
/// | bit-depth | 8 or 16 |
/// | classes | probability PNG classes (`0,2`) |
/// | overlay-class | the overlay's class |
/// | patch-size, allow-padding, random-weights | `EngineSettings` |
/// | memory-budget | MiB for one tile's activations (sets the default tile) |
/// | out | output folder on the coordinator's machine: honoured only by an embedded coordinator or a shared-storage job |
/// | token | the client's id for this submission: a retried submit with the same token gets the same job |
/// | storage | `upload` (default: the coordinator cuts and assembles pixels) or `shared` (docs/ARCHITECTURE.md §7) |
/// | image | shared: the image of a multi-image file to map (from 1); written only when not 1, so a job of image 1 reads as before images could be chosen |
/// | level, mpp | shared: the pyramid level to map, or the level nearest this many µm/px |
/// | tissue | shared: 1 to compute only tiles with tissue |
/// | dtype | shared: the store's sample type (`MapDType`) |
/// | raw-image | upload: the image arrives decoded, in `uploadPart`s: `HEIGHTxWIDTHxCHANNELSxBITS` (`RawImageShape`) |
/// | keep | shared: the classes the store keeps (`1` or `0,2`; default every class), applied by the workers |
/// | store | shared: `zarr` (the OME-Zarr output, kept) or `raw` (a temporary float32 store the client exports from) |
/// | corrupt-tiles | shared: `skip` leaves the map tiles whose input is damaged empty (default `fail`: the job fails) |
package struct JobOptions: Equatable, Sendable {
    /// Where a job's pixels and map live.
    package enum Storage: String, Sendable { case upload, shared }
    /// What a shared-storage job's store is.
    package enum StoreKind: String, Sendable { case zarr, raw }

    package var outputs: String = "all"
    package var bitDepth: Int = 8
    package var classes: String?
    package var overlayClass: Int?
    package var engine = EngineSettings()
    package var outputDirectory: String?
    package var storage = Storage.upload
    /// The image of a multi-image file (`--image`, from 1).
    package var image = 1
    package var level: Int?
    package var mpp: Double?
    package var tissue = false
    package var dtype = MapDType.float32
    package var storeKind = StoreKind.zarr
    /// An upload job whose client decodes the image and sends its raw samples in parts.
    package var rawImage: RawImageShape?
    /// The classes a shared-storage job's store keeps (ascending, distinct), or nil for every class.
    package var keptClasses: [Int]?
    /// A shared-storage job's map tiles whose input data is damaged (`SlideError.isCorruptData`,
    /// on every attempt) are left empty and listed in the job's note instead of failing the job.
    package var skipCorruptTiles = false
    /// The submission's id, chosen by the client (a UUID): `submit` is retried across a
    /// coordinator restart without creating a second job.
    package var token: String?

    package init() {}

    package var encoded: String {
        var parts = ["outputs=\(Self.escape(outputs))", "bit-depth=\(bitDepth)"]
        if let classes { parts.append("classes=\(Self.escape(classes))") }
        if let overlayClass { parts.append("overlay-class=\(overlayClass)") }
        if let p = engine.patchSize { parts.append("patch-size=\(p)") }
        if engine.allowPadding { parts.append("allow-padding=1") }
        if let s = engine.randomWeightsSeed { parts.append("random-weights=\(s)") }
        if let outputDirectory { parts.append("out=\(Self.escape(outputDirectory))") }
        if let token { parts.append("token=\(Self.escape(token))") }
        if let rawImage { parts.append("raw-image=\(rawImage.encoded)") }
        if storage == .shared {
            parts.append("storage=shared")
            if image != 1 { parts.append("image=\(image)") }
            if let level { parts.append("level=\(level)") }
            if let mpp { parts.append("mpp=\(mpp)") }
            if tissue { parts.append("tissue=1") }
            parts.append("dtype=\(dtype.rawValue)")
            parts.append("store=\(storeKind.rawValue)")
            if skipCorruptTiles { parts.append("corrupt-tiles=skip") }
        }
        if let keptClasses { parts.append("keep=\(keptClasses.map(String.init).joined(separator: ","))") }
        return parts.joined(separator: ";")
    }

    /// Parses `encoded`, rejecting unknown keys and malformed values.
    package init(encoded text: String) throws {
        for part in text.split(separator: ";") {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { throw ClusterError(.invalidOption, "job option \"\(part)\" is not key=value") }
            let key = String(kv[0])
            guard let value = String(kv[1]).removingPercentEncoding else {
                throw ClusterError(.invalidOption, "job option \(key): bad percent-encoding")
            }
            func named<T: RawRepresentable<String>>(_: T.Type) throws -> T {
                guard let v = T(rawValue: value) else {
                    throw ClusterError(.invalidOption, "job option \(key)=\(value)")
                }
                return v
            }
            func int(_ range: ClosedRange<Int>) throws -> Int {
                guard let v = Int(value), range.contains(v) else {
                    throw ClusterError(.invalidOption, "job option \(key)=\(value) out of range")
                }
                return v
            }
            switch key {
            case "outputs": outputs = value
            case "bit-depth": bitDepth = try int(8...16)
            case "classes": classes = value
            case "overlay-class": overlayClass = try int(0...65535)
            case "patch-size": engine.patchSize = try int(1...65536)
            case "allow-padding": engine.allowPadding = try int(0...1) == 1
            case "random-weights":
                guard let s = UInt64(value) else {
                    throw ClusterError(.invalidOption, "job option random-weights=\(value)")
                }
                engine.randomWeightsSeed = s
            case "out": outputDirectory = value
            case "token":
                guard (1...128).contains(value.utf8.count) else {
                    throw ClusterError(.invalidOption, "job option token: 1 to 128 bytes")
                }
                token = value
            case "storage": storage = try named(Storage.self)
            case "image": image = try int(1...Int(Wire.TileTaskSpec.maxImage))
            case "level": level = try int(0...64)
            case "mpp":
                guard let v = Double(value), v > 0, v.isFinite else {
                    throw ClusterError(.invalidOption, "job option mpp=\(value)")
                }
                mpp = v
            case "tissue": tissue = try int(0...1) == 1
            case "corrupt-tiles":
                guard value == "skip" || value == "fail" else {
                    throw ClusterError(.invalidOption, "job option corrupt-tiles=\(value) (skip or fail)")
                }
                skipCorruptTiles = value == "skip"
            case "dtype": dtype = try named(MapDType.self)
            case "store": storeKind = try named(StoreKind.self)
            case "keep": keptClasses = try Self.keptClasses(value)
            case "raw-image": rawImage = try RawImageShape(encoded: value)
            default: throw ClusterError(.invalidOption, "unknown job option \"\(key)\"")
            }
        }
    }

    /// A class list (`1` or `0,2`) as the ascending distinct classes a store keeps.
    package static func keptClasses(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let classes = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, classes.count == parts.count, classes.allSatisfy({ (0...65535).contains($0) }) else {
            throw ClusterError(.invalidOption, "kept classes \"\(text)\": give class numbers like 1 or 0,2")
        }
        if let twice = classes.first(where: { c in classes.filter { $0 == c }.count > 1 }) {
            throw ClusterError(.invalidOption, "kept classes \"\(text)\": class \(twice) is given twice")
        }
        // The outputs hold the kept classes in the net's order: "3,1" written as 1,3 left a .npy's planes other
        // than asked, silently (numerics audit 33).
        guard classes == classes.sorted() else {
            throw ClusterError(
                .invalidOption,
                "kept classes \"\(text)\": give them in ascending order (\(classes.sorted().map(String.init).joined(separator: ","))): "
                    + "the outputs hold them in the net's class order")
        }
        return classes
    }

    /// `value` with `%`, `;`, `=` and control characters percent-encoded (UTF-8 kept as is).
    static func escape(_ value: String) -> String {
        var bytes: [UInt8] = []
        for byte in value.utf8 {
            if byte == 0x25 || byte == 0x3B || byte == 0x3D || byte < 0x20 || byte == 0x7F {
                bytes += Array("%\(byte < 16 ? "0" : "")\(String(byte, radix: 16, uppercase: true))".utf8)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The writers' options for an image whose outputs are named `stem`, in `directory`.
    package func outputOptions(directory: String, stem: String) throws -> OutputOptions {
        do {
            let kinds = try OutputOptions.parseKinds(outputs)
            if let chunked = kinds.first(where: \.isChunked) {
                throw ClusterError(
                    .invalidOption,
                    "the \(chunked.rawValue) output is written by in-process runs only so far: "
                        + "a cluster job writes prob, labels, overlay and npy")
            }
            return try OutputOptions(
                directory: directory, stem: stem, kinds: kinds,
                bitDepth: OutputOptions.parseBitDepth(String(bitDepth)),
                classes: classes.map(OutputOptions.parseClasses), overlayClass: overlayClass)
        } catch let e as OutputOptionError {
            throw ClusterError(.invalidOption, e.description)
        }
    }
}

/// The shape of a raw image an upload job's client sends decoded (`JobOptions.rawImage`):
/// rows of `width × channels` samples, UInt8, or UInt16 in host order (little-endian on
/// every platform Tessera builds for), as
/// `RawPixelFile` reads them.
package struct RawImageShape: Equatable, Sendable {
    package var height: Int
    package var width: Int
    package var channels: Int
    package var bitDepth: Int

    package init(height: Int, width: Int, channels: Int, bitDepth: Int) {
        self.height = height; self.width = width; self.channels = channels; self.bitDepth = bitDepth
    }

    /// `HEIGHTxWIDTHxCHANNELSxBITS`; refuses anything else (sizes from 1 to 2^31, 1–4 channels, 8 or 16 bits).
    init(encoded text: String) throws {
        let parts = text.split(separator: "x").map { Int($0) }
        guard parts.count == 4, let h = parts[0], let w = parts[1], let c = parts[2], let b = parts[3],
            (1...(1 << 31)).contains(h), (1...(1 << 31)).contains(w), (1...4).contains(c), b == 8 || b == 16
        else {
            throw ClusterError(.invalidOption, "job option raw-image=\(text): expected HEIGHTxWIDTHxCHANNELSx(8|16)")
        }
        self.init(height: h, width: w, channels: c, bitDepth: b)
    }

    var encoded: String { "\(height)x\(width)x\(channels)x\(bitDepth)" }

    /// The image's size in bytes (nil if it overflows).
    package var byteCount: Int? {
        let (px, o1) = height.multipliedReportingOverflow(by: width)
        let (s, o2) = px.multipliedReportingOverflow(by: channels * bitDepth / 8)
        return o1 || o2 ? nil : s
    }
}
