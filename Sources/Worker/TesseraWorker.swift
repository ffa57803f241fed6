import ArgumentParser
import Logging
import Shared

@main
struct TesseraWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tessera-worker",
        abstract: "A stateless Tessera worker: takes tile tasks from a coordinator and runs the engine."
    )

    func run() throws {
        for line in try SystemInfo.lines() { print(line) }
    }
}
