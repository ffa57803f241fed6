/// The engine could not compute: a bad device or tile request, a task whose input
/// does not fit, or a net that gives no output. `kind` is what callers match on.
package struct EngineError: Error, CustomStringConvertible, Equatable, Sendable {
    package enum Kind: String, Sendable, Equatable, CaseIterable {
        /// A `--device` text that names no device.
        case invalidDevice = "invalid device"
        /// A GPU was asked for in a program without a GPU backend.
        case noGPUBackend = "no GPU backend"
        /// A tile size or task that cannot be computed (non-positive, input of the wrong size).
        case invalidTask = "invalid task"
        /// The net's outputs do not cover what a task asked for.
        case netOutput = "net output"
        /// A pass needs more memory than the process may use (`ActivationArena.limitBytes`) or can get.
        case outOfMemory = "out of memory"
    }

    package let kind: Kind
    package let message: String

    package init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    package var description: String { message }
}
