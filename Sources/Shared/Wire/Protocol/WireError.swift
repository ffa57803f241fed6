/// Why a received message was rejected. Decoding never traps: every malformed input
/// ends here, with a reason meant for the log (`"task: pixel frame has 12 bytes, header declares 48"`).
public struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
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

    public var kind: Kind
    public var reason: String

    public init(_ kind: Kind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    public var description: String { "\(kind.rawValue): \(reason)" }
}

/// Upper bounds a decoder enforces before trusting any declared size. The defaults
/// suit Tessera's tiles; tighten them per endpoint (e.g. a client endpoint needs large
/// files but no tasks).
public struct WireLimits: Sendable, Equatable {
    /// Frames per message (after the routing envelope).
    public var maxFrames: Int = 8
    /// Bytes per message, all frames together.
    public var maxTotalBytes: Int = 1 << 30
    /// Output pixels (height × width) of a task or result, and input pixels of a task.
    public var maxPixelsPerTask: Int = 1 << 26
    /// Input channels (and preprocessing mean values).
    public var maxChannels: Int = 16
    /// Output classes of a result.
    public var maxClasses: Int = 4096
    /// Bytes of any one string.
    public var maxStringBytes: Int = 4096
    /// Entries of any list (goodbye's tasks, a status's file names).
    public var maxListCount: Int = 1 << 16
    /// Bytes of a task's opaque engine options frame.
    public var maxOptionsBytes: Int = 64 * 1024
    /// Tile size of a job.
    public var maxTileSize: Int = 1 << 15
    /// Largest shift displacement component (must be below the net's total stride).
    public var maxDisplacement: Int = 256

    public init() {}

    /// The defaults above.
    public static let `default` = WireLimits()
}
