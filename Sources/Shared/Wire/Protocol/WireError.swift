/// Why a received message was rejected. Decoding never traps: every malformed input
/// ends here, with a reason meant for the log (`"task: pixel frame has 12 bytes, header declares 48"`).
package struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    package enum Kind: String, Sendable, CaseIterable {
        /// Frame 0 does not start with "TSR".
        case badMagic
        /// A protocol version this build does not speak.
        case unsupportedVersion
        /// An unknown message type byte.
        case unknownType
        /// Flag bits that are not defined for this message type.
        case badFlags
        /// A header shorter than its fields.
        case truncated
        /// Bytes left over after the last field.
        case trailingBytes
        /// Too many or too few frames for the message type.
        case frameCount
        /// A frame's size disagrees with the size the header declares.
        case sizeMismatch
        /// A count, size or product above `WireLimits` (or overflowing).
        case limitExceeded
        /// A value out of its domain (zero size, NaN, unknown enum, bad digest…).
        case invalidValue
        /// A string that is not UTF-8, contains NUL, or is not a plain file name.
        case invalidString
    }

    package var kind: Kind
    package var reason: String
    /// The task (job, task, attempt) a rejected `task` or `tileTask` was for, when its
    /// ids could be read: the worker reports it failed, so it is not left running.
    package var task: (jobID: UInt64, taskID: UInt64, attempt: UInt32)?

    package static func == (a: WireError, b: WireError) -> Bool {
        a.kind == b.kind && a.reason == b.reason && a.task?.jobID == b.task?.jobID
            && a.task?.taskID == b.task?.taskID && a.task?.attempt == b.task?.attempt
    }

    package init(_ kind: Kind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    package var description: String { "\(kind.rawValue): \(reason)" }
}

/// Upper bounds a decoder enforces before trusting any declared size. The defaults
/// suit Tessera's tiles; tighten them per endpoint (e.g. a client endpoint needs large
/// files but no tasks).
package struct WireLimits: Sendable, Equatable {
    /// Frames per message (after the routing envelope).
    package var maxFrames: Int = 8
    /// Bytes per message, all frames together.
    package var maxTotalBytes: Int = 1 << 30
    /// Output pixels (height × width) of a task or result, and input pixels of a task.
    package var maxPixelsPerTask: Int = 1 << 26
    /// Input channels (and preprocessing mean values).
    package var maxChannels: Int = 16
    /// Output classes of a result.
    package var maxClasses: Int = 4096
    /// Bytes of any one string.
    package var maxStringBytes: Int = 4096
    /// Entries of any list (goodbye's tasks, a status's file names).
    package var maxListCount: Int = 1 << 16
    /// Bytes of a task's opaque engine options frame.
    package var maxOptionsBytes: Int = 64 * 1024
    /// Tile size of a job.
    package var maxTileSize: Int = 1 << 15
    /// Largest shift displacement component (must be below the net's total stride).
    package var maxDisplacement: Int = 256

    package init() {}

    /// The defaults above.
    package static let `default` = WireLimits()
}
