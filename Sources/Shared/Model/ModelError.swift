import TesseraCore

/// An error in a model: what kind of problem (callers match on `kind`), which file
/// and layer, and what is wrong, in words a user can act on. Library messages name
/// no command-line flag: the CLI adds the flag that fixes a kind (see `CLISupport`).
package struct ModelError: Error, CustomStringConvertible, Equatable, Sendable {
    package enum Kind: String, Sendable, Equatable, CaseIterable {
        /// A file that cannot be read, or is not what it should be (binary vs text, truncated, corrupt).
        case unreadable
        /// A prototxt that does not parse.
        case syntax
        /// A layer, field or shape Tessera does not run.
        case unsupported
        /// No weights where weights are needed, or weights that do not fit their layer.
        case weights
        /// Shapes that do not fit (an input too small, an output too large).
        case shape
        /// The patch size is unknown or out of range.
        case patchSize
        /// The fully convolutional net is not exactly the classifier (padding, partial pooling windows).
        case inexact
        /// Preprocessing that does not fit the net or the image (mean, channels, values).
        case preprocessing
        /// Anything else wrong with the definition.
        case invalid
    }

    package var kind: Kind
    package var file: String?
    package var layer: String?
    package var message: String

    package init(_ kind: Kind, file: String? = nil, layer: String? = nil, _ message: String) {
        self.kind = kind
        self.file = file
        self.layer = layer
        self.message = message
    }

    /// An `.invalid` error.
    package init(file: String? = nil, layer: String? = nil, _ message: String) {
        self.init(.invalid, file: file, layer: layer, message)
    }

    /// Control characters from the file (a node's op type, a layer's name) become '?' (hostile-input audit 27:
    /// they were printed raw to the terminal).
    package var description: String {
        var s = ""
        if let file { s += "\(file): " }
        if let layer { s += layer.isEmpty ? "a layer without a name: " : "layer '\(layer)': " }
        return (s + message).printable(keepingLines: true)
    }

    /// The same error attributed to a file.
    package func inFile(_ file: String) -> ModelError {
        var e = self
        if e.file == nil { e.file = file }
        return e
    }
}
