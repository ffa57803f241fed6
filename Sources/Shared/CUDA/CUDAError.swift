/// An error from the CUDA backend: a missing library or device, or a failed call
/// (named, with the library's own error text). `kind` is what callers match on.
package struct CUDAError: Error, CustomStringConvertible, Sendable {
    package enum Kind: String, Sendable, Equatable, CaseIterable {
        /// A library (driver, NVRTC, cuDNN, cuBLAS) or one of its symbols could not be loaded.
        case library
        /// No such device, or the device cannot be used.
        case device
        /// A call into a CUDA library failed.
        case call
        /// The device has no memory left for an allocation.
        case outOfMemory
    }

    package let kind: Kind
    package let description: String

    /// A failed call.
    package init(_ description: String) { self.init(.call, description) }

    package init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}
