import ArgumentParser
import Foundation
import Shared

/// `tessera-coordinator convert`: writes the fully convolutional prototxt + caffemodel,
/// what the original hand-editing and Python script produced.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the fully convolutional version of a Caffe patch classifier (prototxt + caffemodel)."
    )

    @OptionGroup var model: ModelOptions

    @Option(name: .long, help: ArgumentHelp("Where to write the fully convolutional prototxt.", valueName: "prototxt"))
    var outModel: String

    @Option(name: .long, help: ArgumentHelp("Where to write its weights.", valueName: "caffemodel"))
    var outWeights: String

    @Option(name: .long, help: ArgumentHelp("Input size of the written net (default: a 2000×2000 image padded by "
                                            + "the patch size: 2000 + 2·⌊P/2⌋).", valueName: "N"))
    var inputSize: Int?

    func validate() throws {
        if let n = inputSize, n <= 0 || n > 1 << 20 { throw ValidationError("--input-size must be between 1 and 2^20") }
        guard model.weights != nil else { throw ValidationError("convert needs the trained weights: give --weights") }
    }

    func run() throws {
        do {
            let loaded = try ModelLoader.load(model.source(requireWeights: true))
            let p = loaded.patchSize
            let n = inputSize ?? (2000 + 2 * (p.h / 2))
            guard n >= p.h, n >= p.w else {
                throw ModelError("--input-size \(n) is smaller than the patch size \(p)")
            }
            let input = Size2(square: n)
            let (_, shapes) = try loaded.net.shapes(input: input)
            let (text, data) = try CaffeWriter.write(loaded.net, input: input)
            do {
                try text.write(toFile: outModel, atomically: true, encoding: .utf8)
                try data.write(to: URL(fileURLWithPath: outWeights), options: .atomic)
            } catch {
                throw ModelError("cannot write the output: \(error.localizedDescription)")
            }
            let out = shapes.last.map { "\($0.h)×\($0.w)" } ?? "?"
            print("wrote \(outModel) and \(outWeights): input \(n)×\(n) gives a \(out) output "
                + "(receptive field \(loaded.geometry.receptiveField), stride \(loaded.geometry.stride))")
            if !loaded.geometry.isExact {
                print("note: not exact: " + loaded.geometry.inexactReasons.joined(separator: "; "))
            }
        } catch let e as ModelError {
            throw ModelCommandError(e)
        }
    }
}
