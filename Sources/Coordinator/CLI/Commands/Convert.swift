import ArgumentParser
import CLISupport
import Foundation
import TesseraCore
import TesseraModel

/// `tessera-coordinator convert`: writes the fully convolutional prototxt + caffemodel,
/// what the original hand-editing and Python script produced. With `--weights-npy` the
/// weights come from NumPy `.npy` files (a net trained outside Caffe), and with
/// `--keep-classifier` the patch classifier itself is written (InnerProduct layers, P×P input).
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Write the fully convolutional version of a patch classifier (prototxt + caffemodel, or ONNX).",
        discussion: """
            A net trained outside Caffe: give its deploy prototxt with --model and its weights with \
            --weights-npy DIR, one float32 .npy file per blob named <layer>.<blobIndex>.npy (Convolution \
            (out, in, kh, kw) and bias (out,); InnerProduct (out, in) and bias (out,)). Add --keep-classifier \
            to write the patch classifier as it is (input P×P) instead of its fully convolutional form.
            """
    )

    @OptionGroup var model: ModelOptions

    /// What `convert` writes.
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case caffe, onnx
    }

    @Option(
        name: .customLong("format"),
        help: ArgumentHelp(
            "caffe: a prototxt and a caffemodel; onnx: one ONNX file (opset 17, height and width dynamic "
                + "unless --input-size is given), e.g. to check the net in onnxruntime. Default: onnx for an "
                + "--out-model ending in .onnx, else caffe."))
    var formatOption: Format?

    /// The format written: `--format`, else the `--out-model` extension's (user review: `--out-model x.onnx`
    /// wrote a prototxt into x.onnx).
    var format: Format { formatOption ?? (outModel.lowercased().hasSuffix(".onnx") ? .onnx : .caffe) }

    @Option(
        name: .long,
        help: ArgumentHelp("Where to write the fully convolutional prototxt (or .onnx file).", valueName: "file"))
    var outModel: String

    @Option(name: .long, help: ArgumentHelp("Where to write its weights (caffe format).", valueName: "caffemodel"))
    var outWeights: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Input size of the written net (default: a 2000×2000 image padded by "
                + "the patch size: 2000 + 2·⌊P/2⌋).", valueName: "N"))
    var inputSize: Int?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Read the weights from this folder of .npy files, one per blob, named "
                + "<layer>.<blobIndex>.npy (instead of --weights).", valueName: "dir"))
    var weightsNpy: String?

    @Flag(
        name: .long,
        help: ArgumentHelp(
            "Write the patch classifier as it is (InnerProduct layers, P×P input), "
                + "not its fully convolutional form."))
    var keepClassifier = false

    func validate() throws {
        if let n = inputSize, n <= 0 || n > 1 << 20 { throw ValidationError("--input-size must be between 1 and 2^20") }
        switch format {
        case .caffe where outWeights == nil:
            throw ValidationError("give --out-weights: the caffe format writes a prototxt and a caffemodel")
        case .onnx where outWeights != nil:
            throw ValidationError("--out-weights is for the caffe format: an ONNX file holds its weights")
        default: break
        }
        // One file for both outputs lost the prototxt, and an output naming an input replaced it, each with
        // "wrote …" and exit 0 (paths audit 41 F2).
        if let outWeights, Self.samePath(outModel, outWeights) {
            throw ValidationError("--out-model and --out-weights are the same file, \(outWeights): give two names")
        }
        for (option, output) in [("--out-model", Optional(outModel)), ("--out-weights", outWeights)] {
            for (given, input) in [("--model", model.model), ("--weights", model.weights)] {
                if let output, let input, Self.samePath(output, input) {
                    throw ValidationError(
                        "\(option) \(output) is the \(given) file: convert writes new files; give another name")
                }
            }
        }
        if keepClassifier, inputSize != nil {
            throw ValidationError("--input-size does not apply to --keep-classifier (its input is the patch size)")
        }
        if weightsNpy != nil {
            guard model.weights == nil else { throw ValidationError("give --weights or --weights-npy, not both") }
            guard model.model != nil else {
                throw ValidationError("--weights-npy needs the deploy prototxt: give --model")
            }
        } else {
            // An ONNX model holds its weights.
            guard model.weights != nil || model.model.map({ ONNXFiles.isONNX(nil, name: $0) }) == true else {
                throw ValidationError("convert needs the trained weights: give --weights (or --weights-npy)")
            }
        }
    }

    func run() throws {
        do {
            var loaded = try ModelLoader.load(model.source(requireWeights: weightsNpy == nil))
            let p = loaded.patchSize
            if let dir = weightsNpy {
                loaded.classifier = try loaded.classifier.fillingBlobs(fromNPYDirectory: dir)
                loaded.net = try loaded.classifier.fullyConvolutional(patch: p)
                loaded.net.patchSize = p
            }
            let written = keepClassifier ? loaded.classifier : loaded.net
            let n = keepClassifier ? max(p.h, p.w) : inputSize ?? (2000 + 2 * (p.h / 2))
            guard n >= p.h, n >= p.w else {
                throw ModelError("--input-size \(n) is smaller than the patch size \(p)")
            }
            // Both destinations first: a bad --out-weights left the prototxt written alone (paths audit 41 F8).
            try Self.checkDestination(outModel, example: format == .onnx ? "fcn.onnx" : "fcn.prototxt")
            if let outWeights { try Self.checkDestination(outWeights, example: "fcn.caffemodel") }
            let input = keepClassifier ? p : Size2(square: n)
            let (_, shapes) = try written.shapes(input: input)
            if format == .onnx {
                let bytes = try ONNXWriter.write(written, input: keepClassifier || inputSize != nil ? input : nil)
                try Self.write(Data(bytes), to: outModel)
                print(
                    "wrote \(outModel)\(keepClassifier ? " (the patch classifier)" : ""): input "
                        + (keepClassifier || inputSize != nil ? "\(input.h)×\(input.w)" : "any height × width ≥ \(p)")
                        + " (receptive field \(loaded.geometry.receptiveField), stride \(loaded.geometry.stride))")
                return
            }
            let (text, data) = try CaffeWriter.write(written, input: input)
            try Self.write(Data(text.utf8), to: outModel)
            try Self.write(data, to: outWeights!)
            let out = shapes.last.map { keepClassifier ? "\($0.count)-value" : "\($0.h)×\($0.w)" } ?? "?"
            print(
                "wrote \(outModel) and \(outWeights!)\(keepClassifier ? " (the patch classifier)" : ""): "
                    + "input \(input.h)×\(input.w) gives a \(out) output "
                    + "(receptive field \(loaded.geometry.receptiveField), stride \(loaded.geometry.stride))")
            if !loaded.geometry.isExact {
                print("note: not exact: " + loaded.geometry.inexactReasons.joined(separator: "; "))
            }
        } catch let e as ModelError {
            throw ModelCommandError(e)
        }
    }
}

extension Convert {
    /// Whether `a` and `b` name one file: the same file when both exist (links, `./`), else the same
    /// absolute path.
    static func samePath(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        if stat(a, &sa) == 0, stat(b, &sb) == 0 { return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino }
        return URL(fileURLWithPath: a).standardizedFileURL.path == URL(fileURLWithPath: b).standardizedFileURL.path
    }

    /// Throws what writing a file at `path` would meet, before anything is written: a folder there (or a
    /// name ending in "/", which wrote a file of the folder's name), or a file where a folder of it goes.
    static func checkDestination(_ path: String, example: String) throws {
        // Said in words (user review: "NSCocoaErrorDomain error 512" for a folder, "a file with the same name
        // already exists" for a path under a file).
        var isFolder: ObjCBool = false
        if path.hasSuffix("/")
            || (FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue)
        {
            let folder = path.hasSuffix("/") ? String(path.dropLast()) : path
            throw ModelError(file: path, "a folder: give the file to write (e.g. \(folder)/\(example))")
        }
        if !parentPath(path).isEmpty, case let why = OutputFlags.whyNotCreatable(path),
            why.hasSuffix("is a file, not a folder")
        {
            throw ModelError(file: path, "cannot write it: \(why)")
        }
    }

    /// Writes `data` to `path` atomically, making its folder as `run --out` does; an error names the path.
    static func write(_ data: Data, to path: String) throws {
        let folder = parentPath(path)
        do {
            if !folder.isEmpty {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            }
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ModelError(file: path, "cannot write it: \(systemErrorText(error))")
        }
    }
}
