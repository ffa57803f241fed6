import Foundation
import Logging
import TesseraCore
import TesseraModel
import TesseraPlan
import TesseraWire

/// A model as it travels between coordinator and workers: the raw bytes of its
/// files, named by their content digest. Both sides build their engine from these
/// bytes with `EngineSettings.plan`, so a worker computes with exactly the
/// plan the coordinator made.
package struct ModelBundle: Sendable, Equatable {
    /// Deploy prototxt (empty when the caffemodel carries its own net).
    package var prototxt: [UInt8]
    /// Trained weights (empty for a shape-only model run with random weights).
    package var weights: [UInt8]
    /// SHA-256 over `u64-LE(prototxt size) ‖ prototxt ‖ weights`: the size prefix
    /// keeps a split between the two files from colliding with another split.
    package let digest: Wire.ModelDigest

    package init(prototxt: [UInt8], weights: [UInt8]) {
        self.prototxt = prototxt
        self.weights = weights
        digest = Self.digest(prototxt: prototxt, weights: weights)
    }

    private init(digest: Wire.ModelDigest) {
        prototxt = []
        weights = []
        self.digest = digest
    }

    /// Bytes of the two files held.
    package var byteCount: Int { prototxt.count + weights.count }

    /// The same model's name without its bytes: what an ended job keeps (the files
    /// stay in the store; nothing sends an ended job's model).
    package var withoutFiles: ModelBundle { ModelBundle(digest: digest) }

    package static func digest(prototxt: [UInt8], weights: [UInt8]) -> Wire.ModelDigest {
        var h = SHA256()
        var size = UInt64(prototxt.count).littleEndian
        h.update(withUnsafeBytes(of: &size) { Array($0) })
        h.update(prototxt)
        h.update(weights)
        return Wire.ModelDigest(bytes: h.finalize())!
    }

    /// Reads the files (either may be nil, not both). An ONNX model travels as one
    /// file, its external data put inside (`ONNXFiles.selfContainedBytes`).
    package init(prototxtPath: String?, weightsPath: String?) throws {
        func read(_ path: String?) throws -> [UInt8] {
            guard let path else { return [] }
            if ONNXFiles.isONNX(nil, name: path) { return try ONNXFiles.selfContainedBytes(path) }
            return [UInt8](try ModelFiles.read(path, what: "model file"))
        }
        self.init(prototxt: try read(prototxtPath), weights: try read(weightsPath))
    }
}

/// How a job's engine is built from its model: the part of a job every worker must
/// agree on. Travels in each task's options frame (a few bytes), so a task is
/// self-contained; workers cache one engine per (digest, settings).
package struct EngineSettings: Hashable, Sendable {
    /// Patch size override (`--patch-size`), nil = from the files.
    package var patchSize: Int?
    /// Accept an approximate net (`--allow-padding`).
    package var allowPadding: Bool
    /// Seed for `Net.withRandomWeights` when the model has no weights (benchmarks).
    package var randomWeightsSeed: UInt64?
    /// The net has a pooling layer that rounds down (Caffe `round_mode: FLOOR`, ONNX
    /// `ceil_mode=0`) where rounding up would give another size. Set by the coordinator from
    /// its plan (`forWorkers(of:)`), not by users: a worker built before pooling kept its
    /// rounding reads a Caffe FLOOR as rounding up, a different net there; it refuses options
    /// with this bit (it knows bits 0 and 1 only), so its tasks fail with a message instead of
    /// a wrong map. Where the rounding changes nothing (most ONNX `ceil_mode=0` pools), older
    /// workers compute the same net, and the bytes stay as they were.
    package var poolingRoundsDown: Bool

    package init(
        patchSize: Int? = nil, allowPadding: Bool = false, randomWeightsSeed: UInt64? = nil,
        poolingRoundsDown: Bool = false
    ) {
        self.patchSize = patchSize
        self.allowPadding = allowPadding
        self.randomWeightsSeed = randomWeightsSeed
        self.poolingRoundsDown = poolingRoundsDown
    }

    /// The settings the coordinator sends workers with the tasks of a job planned as
    /// `plan`: these, with the bits that keep workers too old for the net away.
    package func forWorkers(of plan: ModelPlan) -> EngineSettings {
        var s = self
        s.poolingRoundsDown = plan.classifier.poolingRoundingMatters(at: plan.geometry.patchSize)
        return s
    }

    /// What an older worker answers to options with a bit it does not know.
    package static let notUnderstood = "task options are not engine settings this worker understands"

    /// 1 version byte, u32 patch size (0 = none), u8 flags (bit 0 padding, bit 1 seed,
    /// bit 2 pooling rounds down), u64 seed.
    package var encoded: [UInt8] {
        var out: [UInt8] = [1]
        let p = UInt32(clamping: patchSize ?? 0)
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: p >> (8 * UInt32(i)))) }
        out.append((allowPadding ? 1 : 0) | (randomWeightsSeed != nil ? 2 : 0) | (poolingRoundsDown ? 4 : 0))
        let s = randomWeightsSeed ?? 0
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: s >> (8 * UInt64(i)))) }
        return out
    }

    /// Parses `encoded`; nil for anything else.
    package init?(encoded b: [UInt8]) {
        guard b.count == 14, b[0] == 1, b[5] & ~7 == 0 else { return nil }
        var p: UInt32 = 0
        for i in 0..<4 { p |= UInt32(b[1 + i]) << (8 * UInt32(i)) }
        var s: UInt64 = 0
        for i in 0..<8 { s |= UInt64(b[6 + i]) << (8 * UInt64(i)) }
        guard p <= 65536 else { return nil }
        self.init(
            patchSize: p == 0 ? nil : Int(p), allowPadding: b[5] & 1 != 0,
            randomWeightsSeed: b[5] & 2 != 0 ? s : nil, poolingRoundsDown: b[5] & 4 != 0)
    }

    /// Loads `bundle` from its bytes and plans its maps: the one construction every
    /// process uses (the coordinator stops here; workers build a `MapEngine` from the plan).
    package func plan(_ bundle: ModelBundle, logger: Logger? = nil) throws -> (plan: ModelPlan, model: LoadedModel) {
        let onnx = ONNXFiles.isONNX(Data(bundle.prototxt.prefix(1)), name: nil)
        // The loader reads the bundle's own bytes (no `Data` copy of each file: a third copy
        // of a large model's weights beside the bundle and the decoded message). The decoders
        // copy what they keep, so nothing holds these views after `load` returns.
        let loaded = try bundle.prototxt.withUnsafeBytes { prototxt in
            try bundle.weights.withUnsafeBytes { weights in
                let contents = ModelContents(
                    prototxt: Self.borrowed(prototxt), prototxtName: onnx ? "model.onnx" : "deploy.prototxt",
                    weights: Self.borrowed(weights))
                return try ModelLoader.load(
                    contents, patchSize: patchSize, requireWeights: randomWeightsSeed == nil, logger: logger)
            }
        }
        return try plan(loaded)
    }

    /// `bytes` as `Data` without copying them (nil when empty); valid only while `bytes` is.
    private static func borrowed(_ bytes: UnsafeRawBufferPointer) -> Data? {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return nil }
        return Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: bytes.count, deallocator: .none)
    }

    /// The same from files on disk (the in-process `run`).
    package func plan(
        prototxtPath: String?, weightsPath: String?, logger: Logger? = nil
    ) throws
        -> (plan: ModelPlan, model: LoadedModel)
    {
        let source = ModelSource(
            model: prototxtPath, weights: weightsPath, patchSize: patchSize,
            requireWeights: randomWeightsSeed == nil)
        return try plan(ModelLoader.load(source, logger: logger))
    }

    private func plan(_ loaded: LoadedModel) throws -> (plan: ModelPlan, model: LoadedModel) {
        if poolingRoundsDown, !loaded.classifier.hasPoolingRoundingDown {
            throw ClusterError(
                "the coordinator planned this model with a pooling layer that rounds down, "
                    + "and this worker reads none: the two builds read the model differently")
        }
        if let seed = randomWeightsSeed, !loaded.hasWeights {
            let classifier = loaded.classifier.withRandomWeights(seed: seed)
            return (try ModelPlan(classifier: classifier, patch: loaded.patchSize, allowPadding: allowPadding), loaded)
        }
        try loaded.requireExact(allowApproximate: allowPadding)
        return (try ModelPlan(model: loaded, allowPadding: allowPadding), loaded)
    }
}
