/// The release both binaries report (`--version`, `info`, their start-up log lines):
/// coordinator, workers and clients must speak the same wire protocol
/// (`WireMessage.version`), which changes only with a release.
package enum TesseraVersion {
    package static let release = "0.3.9"
    /// "0.3.9 (wire protocol 8)".
    package static var description: String { "\(release) (wire protocol \(WireMessage.version))" }
}
