import ArgumentParser
import CLISupport

/// `tessera-coordinator info`: what this build links and which BLAS kernel it uses.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print library versions and the BLAS kernel chosen for this CPU."
    )

    func run() throws {
        for line in try SystemInfo.lines() { print(line) }
    }
}
