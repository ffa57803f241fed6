import ArgumentParser
import Logging
import Shared

@main
struct TesseraCoordinator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tessera-coordinator",
        abstract: "Exact full-resolution pixel-wise probability maps from a patch-classifier CNN.",
        discussion: """
            Tessera turns a trained Caffe patch classifier into a fully convolutional net and \
            computes its map over large images: on this machine, or split into tile jobs for \
            stateless workers over ZeroMQ.
            """,
        subcommands: [Run.self, Info.self, Inspect.self, Convert.self, Benchmark.self]
    )
}
