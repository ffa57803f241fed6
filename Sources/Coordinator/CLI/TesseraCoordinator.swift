import ArgumentParser
import CLISupport
import Logging
import TesseraCUDA
import TesseraEngine
import TesseraWire

@main
struct TesseraCoordinator: ParsableCommand {
    /// Memory settings first, before any thread allocates (see `MemoryTuning`).
    static func main() {
        MemoryTuning.keepLargeBuffers()
        CUDABackend.install()
        main(environment: .coordinator)
    }

    static let configuration = CommandConfiguration(
        commandName: "tessera-coordinator",
        abstract: "Exact full-resolution pixel-wise probability maps from a patch-classifier CNN.",
        discussion: """
            Tessera turns a trained patch classifier (Caffe or ONNX) into a fully convolutional net and \
            computes its map over large images: on this machine, or split into tile jobs for \
            stateless workers over ZeroMQ.

            Every option can also be set by an environment variable, listed with it by each \
            subcommand's --help (TESSERA_<OPTION>; the client commands' connection options are \
            TESSERA_CLIENT_…, keygen's TESSERA_KEYGEN_…, export's --image and --level \
            TESSERA_EXPORT_…, run's --store TESSERA_RUN_STORE, gpu-check's --device and --precision \
            TESSERA_GPU_CHECK_…). The command line wins.
            """,
        version: "tessera-coordinator \(TesseraVersion.description)",
        subcommands: [
            Run.self, Serve.self, Submit.self, Status.self, Cancel.self, Fetch.self,
            Info.self, Inspect.self, InspectImage.self, Convert.self, Export.self, Benchmark.self, Keygen.self,
            GPUCheck.self,
        ]
    )
}
