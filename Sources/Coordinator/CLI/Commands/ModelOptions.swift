import ArgumentParser
import Logging
import TesseraModel

/// `--model`, `--weights`, `--patch-size`: the files that make a model. Shared by every
/// command that loads one (`@OptionGroup var model: ModelOptions`).
struct ModelOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Deploy prototxt (text), optional when the caffemodel holds its training net; "
                + "or an ONNX model (.onnx, weights inside or in external-data files next to it).",
            valueName: "prototxt|onnx"))
    var model: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Trained weights (binary .caffemodel), matched to layers by name.",
            valueName: "caffemodel"))
    var weights: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Patch size P the classifier was trained on (default: the data layer's "
                + "crop_size, the declared input, or the receptive field).", valueName: "P"))
    var patchSize: Int?

    func validate() throws {
        guard model != nil || weights != nil else {
            throw ValidationError(
                "give --model (a deploy prototxt or an ONNX model) and/or --weights (a caffemodel)")
        }
        if let p = patchSize, p <= 0 || p > 65536 {
            throw ValidationError("--patch-size must be between 1 and 65536")
        }
    }

    func source(requireWeights: Bool = true) -> ModelSource {
        ModelSource(model: model, weights: weights, patchSize: patchSize, requireWeights: requireWeights)
    }
}

/// `--mean-file`, `--mean`, `--raw-scale`, `--scale`, `--channel-order`: what is done to each
/// pixel before the net. Shared by every command that runs a model.
struct PreprocessingOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Mean image (mean.binaryproto), reduced to one mean per channel.",
            valueName: "file"))
    var meanFile: String?

    // The numeric options take the next argument whatever it looks like (`.unconditional`),
    // so a negative value (`--mean -1e30,5,5`) is a value, not an unknown flag.
    @Option(
        name: .long, parsing: .unconditional,
        help: ArgumentHelp(
            "Per-channel mean in the network's channel order, e.g. 104,117,123.",
            valueName: "V1,V2,V3"))
    var mean: String?

    @Option(
        name: .long, parsing: .unconditional,
        help: "Multiply raw pixels (0-255; 0-65535 for 16-bit images) by this first (Caffe's raw_scale).")
    var rawScale: Float?

    @Option(
        name: .long, parsing: .unconditional,
        help: ArgumentHelp(
            "Multiply by this after subtracting the mean (Caffe's scale).",
            discussion: "Without --mean, --mean-file, --scale, --raw-scale and --std, a Caffe model's own "
                + "preprocessing is used: its data layer's transform_param mean_value and scale."))
    var scale: Float?

    @Option(
        name: .long, parsing: .unconditional,
        help: ArgumentHelp(
            "Per-channel std, in the network's channel order: each channel is divided by it after the mean "
                + "(torchvision's Normalize: --raw-scale 0.00392156862745098 --mean 0.485,0.456,0.406 "
                + "--std 0.229,0.224,0.225 --channel-order rgb).",
            valueName: "V1,V2,V3"))
    var std: String?

    @Option(name: .long, help: "Channel order the net was trained on: bgr (Caffe/OpenCV) or rgb.")
    var channelOrder: Preprocessing.ChannelOrder = .bgr

    func validate() throws {
        if meanFile != nil, mean != nil { throw ValidationError("give --mean-file or --mean, not both") }
        if mean != nil { _ = try parsedMean() }
        if let s = try parsedList(std, "--std"), s.contains(where: { $0 <= 0 }) {
            throw ValidationError("--std \(std!): every std must be positive")
        }
        guard rawScale?.isFinite ?? true, scale?.isFinite ?? true else {
            throw ValidationError("--raw-scale and --scale must be finite")
        }
    }

    func parsedMean() throws -> [Float] {
        try parsedList(mean, "--mean") ?? []
    }

    /// Comma-separated finite numbers, or nil when the option is not given.
    func parsedList(_ text: String?, _ flag: String) throws -> [Float]? {
        guard let text else { return nil }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let values = parts.map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil && $0!.isFinite }) else {
            throw ValidationError(
                "\(flag) \(text): expected comma-separated numbers, e.g. "
                    + (flag == "--std" ? "0.229,0.224,0.225" : "104,117,123"))
        }
        return values.map { $0! }
    }

    /// Whether any option of the values (not the channel order) was given.
    var givesValues: Bool { meanFile != nil || mean != nil || rawScale != nil || scale != nil || std != nil }

    /// Warns when the model's data layer subtracted a mean image that no option gives.
    private func warnOfMeanFile(_ model: LoadedModel, logger: Logger?) {
        guard let hint = model.meanFileHint, meanFile == nil, mean == nil else { return }
        logger?.warning(
            "the model's data layer subtracted the mean image \(hint) (mean_file): give it with --mean-file (reduced to one mean per channel) or --mean, or the map is not Caffe's"
        )
    }

    /// The preprocessing for `model`: the options, or when they give no values, what the model's training data
    /// layer declares (transform_param mean_value and scale; a user audit: they were ignored, and the map was
    /// off by 0.6 from Caffe's). A mean image it names, and declared values the options differ from, are warned of.
    func resolve(_ model: LoadedModel, logger: Logger? = nil) throws -> Preprocessing {
        let declares = !model.declaredMean.isEmpty || model.declaredScale != nil
        if declares, !givesValues {
            var p = Preprocessing(
                mean: model.declaredMean, rawScale: 1, scale: model.declaredScale ?? 1, channelOrder: channelOrder)
            if !p.mean.isEmpty { p.meanSource = "the model's data layer (transform_param mean_value)" }
            logger?.notice(
                "preprocessing from the model's data layer: mean \(Self.list(p.mean)), scale \(p.scale); give --mean, --scale (or --mean-file) to override"
            )
            // (A mean image it names is not among those values: Caffe fuzz, it went unsaid.)
            if p.mean.isEmpty { warnOfMeanFile(model, logger: logger) }
            return try p.validated(channels: model.net.inputChannels)
        }
        let p = try resolve(channels: model.net.inputChannels, logger: logger)
        if declares,
            !model.declaredMean.isEmpty && model.declaredMean != p.mean
                || (model.declaredScale.map { $0 != p.scale } ?? false)
        {
            logger?.warning(
                "the model's data layer preprocessed with mean \(Self.list(model.declaredMean)) and scale \(model.declaredScale ?? 1) (transform_param); the options give mean \(Self.list(p.mean)), scale \(p.scale): the map is the net's on that input"
            )
        }
        warnOfMeanFile(model, logger: logger)
        return p
    }

    static func list(_ values: [Float]) -> String {
        values.isEmpty ? "none" : values.map { "\($0)" }.joined(separator: ",")
    }

    /// The preprocessing the options give, for a net with `channels` input channels.
    func resolve(channels: Int, logger: Logger? = nil) throws -> Preprocessing {
        var p = Preprocessing(
            rawScale: rawScale ?? 1, scale: scale ?? 1, channelOrder: channelOrder,
            std: try parsedList(std, "--std") ?? [])
        if let meanFile {
            let (m, source) = try Preprocessing.readMeanFile(meanFile, logger: logger)
            p.mean = m
            p.meanSource = source
        } else {
            p.mean = try parsedMean()
            if !p.mean.isEmpty { p.meanSource = "--mean" }
        }
        warnOfImplausible(p, logger: logger)
        return try p.validated(channels: channels)
    }

    /// Values that are allowed but almost surely a slip (hostile-input audit 27: accepted without a word).
    private func warnOfImplausible(_ p: Preprocessing, logger: Logger?) {
        if p.scale <= 0 || p.rawScale <= 0 {
            logger?.warning(
                "--scale \(p.scale) and --raw-scale \(p.rawScale): a factor of 0 makes every input value the same, a negative one inverts the image; is that meant?"
            )
        }
        // Pixels are 0–255 × --raw-scale: a mean far outside that range (a damaged mean file, a typo) leaves
        // every input far from what the net was trained on.
        let range = 255 * Double(abs(p.rawScale))
        if let worst = p.mean.max(by: { abs($0) < abs($1) }), Double(abs(worst)) > max(1000, 4 * range) {
            logger?.warning(
                "a mean of \(worst) (\(p.meanSource ?? "--mean")) is far outside the pixels' range (0–\(Int(range.rounded()))): is that meant?"
            )
        }
    }
}

extension Preprocessing.ChannelOrder: ExpressibleByArgument {}

/// Loads a model and its preprocessing from the command-line options: the one entry
/// point for every command that runs a model.
func loadModel(
    _ model: ModelOptions, _ preprocessing: PreprocessingOptions, requireWeights: Bool = true,
    logger: Logger? = nil
) throws -> (model: LoadedModel, preprocessing: Preprocessing) {
    let loaded = try ModelLoader.load(model.source(requireWeights: requireWeights), logger: logger)
    let pre = try preprocessing.resolve(loaded, logger: logger)
    return (loaded, pre)
}
