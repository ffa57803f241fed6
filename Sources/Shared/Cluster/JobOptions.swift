import TesseraImage

/// The per-job settings that `Wire.JobSpec` carries as text in its options string:
/// `key=value` pairs separated by `;` (values never contain `;` or `=`).
///
/// | key | meaning |
/// |---|---|
/// | outputs | output kinds, CLI syntax (`all`, `npy,prob`…) |
/// | bit-depth | 8 or 16 |
/// | classes | probability PNG classes (`0,2`) |
/// | overlay-class | the overlay's class |
/// | patch-size, allow-padding, random-weights | `EngineSettings` |
/// | memory-budget | MiB for one tile's activations (sets the default tile) |
/// | out | output folder on the coordinator's machine: honoured only by an embedded coordinator |
package struct JobOptions: Equatable, Sendable {
    package var outputs: String = "all"
    package var bitDepth: Int = 8
    package var classes: String?
    package var overlayClass: Int?
    package var engine = EngineSettings()
    package var outputDirectory: String?

    package init() {}

    package var encoded: String {
        var parts = ["outputs=\(outputs)", "bit-depth=\(bitDepth)"]
        if let classes { parts.append("classes=\(classes)") }
        if let overlayClass { parts.append("overlay-class=\(overlayClass)") }
        if let p = engine.patchSize { parts.append("patch-size=\(p)") }
        if engine.allowPadding { parts.append("allow-padding=1") }
        if let s = engine.randomWeightsSeed { parts.append("random-weights=\(s)") }
        if let outputDirectory { parts.append("out=\(outputDirectory)") }
        return parts.joined(separator: ";")
    }

    /// Parses `encoded`, rejecting unknown keys and malformed values.
    package init(encoded text: String) throws {
        for part in text.split(separator: ";") {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { throw ClusterError(.invalidOption, "job option \"\(part)\" is not key=value") }
            let (key, value) = (String(kv[0]), String(kv[1]))
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
                guard let s = UInt64(value) else { throw ClusterError(.invalidOption, "job option random-weights=\(value)") }
                engine.randomWeightsSeed = s
            case "out": outputDirectory = value
            default: throw ClusterError(.invalidOption, "unknown job option \"\(key)\"")
            }
        }
    }

    /// The writers' options for an image whose outputs are named `stem`, in `directory`.
    package func outputOptions(directory: String, stem: String) throws -> OutputOptions {
        do {
            let kinds = try OutputOptions.parseKinds(outputs)
            if let chunked = kinds.first(where: \.isChunked) {
                throw ClusterError(
                    .invalidOption, "the \(chunked.rawValue) output is written by in-process runs only so far: "
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
