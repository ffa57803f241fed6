/// An error from the CUDA backend: a missing library or device, or a failed call
/// (named, with the library's own error text). `kind` is what callers match on.
public struct CUDAError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// A library (driver, NVRTC, cuDNN, cuBLAS) or one of its symbols could not be loaded.
        case library
        /// No such device, or the device cannot be used.
        case device
        /// A call into a CUDA library failed.
        case call
    }

    public let kind: Kind
    public let description: String

    /// A failed call.
    public init(_ description: String) { self.init(.call, description) }

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}
