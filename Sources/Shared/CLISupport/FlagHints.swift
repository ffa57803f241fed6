import TesseraModel

/// Library errors name no flag; the CLI adds the one that fixes them.
package enum FlagHints {
    /// The error with a hint line naming the flag, or the error itself.
    static func annotate(_ error: Error) -> Error {
        guard let e = error as? ModelError, let hint = hint(e) else { return error }
        return Hinted(error: e, hint: hint)
    }

    package static func hint(_ e: ModelError) -> String? {
        switch e.kind {
        case .inexact: return "--allow-padding computes the approximate map anyway; --mode naive the exact one (slower)"
        case .patchSize: return "give the classifier's patch size with --patch-size P"
        case .weights where e.message.hasPrefix("no weights"): return "give the trained .caffemodel with --weights"
        default: return nil
        }
    }

    struct Hinted: Error, CustomStringConvertible {
        let error: ModelError
        let hint: String
        var description: String { "\(error)\nhint: \(hint)" }
    }
}
