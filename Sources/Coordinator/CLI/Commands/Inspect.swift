import ArgumentParser
import CLISupport
import Foundation
import Logging
import TesseraModel

/// `tessera-coordinator inspect`: what Tessera makes of a Caffe model.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's layers, geometry (receptive field, stride, exactness), cost and preprocessing.",
        discussion: """
            Without --weights, a prototxt is inspected for shapes only. The layer table is at patch \
            size, after net surgery (InnerProduct layers become convolutions).
            """
    )

    @OptionGroup var model: ModelOptions
    @OptionGroup var preprocessing: PreprocessingOptions

    @Flag(name: .long, help: "Print one JSON object instead of the table.")
    var json = false

    func run() throws {
        do {
            let (loaded, pre) = try loadModel(model, preprocessing, requireWeights: false)
            var report = try ModelReport(model: loaded, preprocessing: pre)
            if let given = preprocessing.meanFile.map({ "--mean-file \($0)" })
                ?? preprocessing.mean.map({ "--mean \($0)" })
            {
                // Its mean is given: the note names what stands for the net's mean image (audit 44 D4: it still said
                // "give that file with --mean-file" after --mean-file was given).
                let prefix = "the data layer subtracted the mean image "
                report.notes = report.notes.map { note in
                    guard note.hasPrefix(prefix), let cut = note.range(of: " (mean_file)") else { return note }
                    return String(note[..<cut.upperBound]) + ": " + given + " stands for it"
                }
            }
            print(json ? try report.json() : report.text(preprocessing: pre))
        } catch let e as ModelError {
            throw ModelCommandError(e)
        }
    }
}

/// A model error as the command line shows it: the message, and the `hint:` line
/// naming the flag that fixes it (as `run` prints it), exit code 1.
struct ModelCommandError: Error, CustomStringConvertible {
    var error: ModelError
    init(_ error: ModelError) { self.error = error }
    var description: String { error.description + (FlagHints.hint(error).map { "\nhint: \($0)" } ?? "") }
}
