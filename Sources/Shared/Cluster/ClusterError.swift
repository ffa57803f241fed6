/// A failure in the cluster code, with a message for the user or the log. `kind`
/// is what callers match on (retry when unreachable, report a refusal, …).
package struct ClusterError: Error, CustomStringConvertible, Equatable, Sendable {
    package enum Kind: String, Sendable, Equatable, CaseIterable {
        /// A job option or setting that does not parse or is not allowed.
        case invalidOption
        /// The coordinator did not answer in time, or could not be reached.
        case unreachable
        /// The coordinator answered with an error (the request was refused).
        case refused
        /// A reply or message that does not follow the protocol.
        case protocolViolation
        /// A job ended failed or cancelled.
        case jobFailed
        /// The job store or an output file could not be read or written.
        case storage
        /// Anything else.
        case other
    }

    package let kind: Kind
    package let description: String

    package init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }

    /// An `.other` error.
    package init(_ description: String) { self.init(.other, description) }
}
