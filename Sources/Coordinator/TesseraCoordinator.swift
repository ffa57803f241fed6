import ArgumentParser
import Logging
import Shared

@main
struct TesseraCoordinator: ParsableCommand {
    /// Memory settings first, before any thread allocates (see `MemoryTuning`).
    static func main() {
        MemoryTuning.keepLargeBuffers()
        main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "tessera-coordinator",
        abstract: "Exact full-resolution pixel-wise probability maps from a patch-classifier CNN.",
        discussion: """
            Tessera turns a trained Caffe patch classifier into a fully convolutional net and \
            computes its map over large images: on this machine, or split into tile jobs for \
            stateless workers over ZeroMQ.
            """,
        subcommands: [Run.self, Serve.self, Submit.self, Status.self, Cancel.self, Fetch.self,
                      Info.self, Inspect.self, Convert.self, Benchmark.self]
    )
}
