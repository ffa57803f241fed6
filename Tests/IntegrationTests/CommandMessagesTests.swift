import Foundation
import Testing

@testable import TestSupport

/// What the commands say where audit 44 (docs against behaviour) found them saying something else than
/// what happened: each message names the real cause and the fix that applies.
@Suite("Command messages name what happened", .serialized)
struct CommandMessagesTests {
    static let demo = TestPaths.packageRoot.appendingPathComponent("models/demo").path
    static let demoModel = ["--model", demo + "/deploy.prototxt", "--weights", demo + "/nuclei32.caffemodel"]

    static func command(
        _ group: ProcessGroup, _ arguments: [String], log: String, environment: [String: String] = [:]
    ) throws -> (Int32, String) {
        let p = try group.start("tessera-coordinator", arguments, log: log, environment: environment)
        return (group.wait(p, timeout: 120) ?? -1, group.log(log))
    }

    @Test("inspect with --mean: the mean-file note says what stands for it, not to give it")
    func meanFileNote() throws {
        let group = try ProcessGroup("messages-mean")
        defer { group.stop() }
        let prototxt = group.directory + "/v1.prototxt"
        try Data(
            """
            layers { name: "data" type: DATA top: "data" top: "label" transform_param { mean_value: 1 mean_value: 2 mean_value: 3 }
                     data_param { source: "x" batch_size: 4 crop_size: 6 mean_file: "m.binaryproto" } }
            layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
                     convolution_param { num_output: 2 kernel_size: 6 } }
            layers { name: "prob" type: SOFTMAX bottom: "conv1" top: "prob" }
            """.utf8
        ).write(to: URL(fileURLWithPath: prototxt))
        let (s0, plain) = try Self.command(group, ["inspect", "--model", prototxt], log: "plain")
        #expect(s0 == 0 && plain.contains("give that file with --mean-file"), "\(plain)")
        let (s1, given) = try Self.command(group, ["inspect", "--model", prototxt, "--mean", "1,2,3"], log: "given")
        #expect(s1 == 0 && !given.contains("give that file with --mean-file"), "\(given)")
        #expect(given.contains("m.binaryproto (mean_file): --mean 1,2,3 stands for it"), "\(given)")
    }

    @Test("inspect-image --mode naive names the image its rate was measured on, in a unit that shows it")
    func naiveRate() throws {
        let group = try ProcessGroup("messages-naive")
        defer { group.stop() }
        let image = group.directory + "/small.png"
        try ClusterFixture.writeImage(to: image, height: 64, width: 64)
        let (s, l) = try Self.command(
            group, ["inspect-image", image] + Self.demoModel + ["--mode", "naive", "--threads", "1"], log: "naive")
        #expect(s == 0 && l.contains("measured on one 32² image"), "\(l)")
        #expect(!l.contains(" 0.0 Mpx/s"), "\(l)")
    }

    @Test("run --in-process says --workers is not used; export of a file says it is no map store")
    func ignoredAndMisnamed() throws {
        let group = try ProcessGroup("messages-run")
        defer { group.stop() }
        let image = group.directory + "/small.png"
        try ClusterFixture.writeImage(to: image, height: 48, width: 48)
        let (s0, l0) = try Self.command(
            group,
            ["run"] + Self.demoModel + [
                "--in-process", "--workers", "3", "--outputs", "npy", "--out",
                group.directory + "/o", image,
            ], log: "run")
        #expect(s0 == 0 && l0.contains("--workers and --worker-binary are not used: --in-process"), "\(l0)")
        let (s1, l1) = try Self.command(
            group, ["export", image, "--outputs", "npy", "--out", group.directory + "/e"], log: "export")
        #expect(s1 != 0 && l1.contains("is a file, not a map store"), "\(l1)")
        // An upload job writes neither zarr nor TIFF: the way out offered is npy and prob only (checked before it
        // connects).
        let (s2, l2) = try Self.command(
            group,
            ["submit", "--coordinator", "tcp://127.0.0.1:9"] + Self.demoModel + [
                "--keep-classes", "1", "--wait", "--outputs", "npy,labels",
                "--out", group.directory + "/u", image,
            ], log: "submit")
        #expect(s2 != 0 && l2.contains("(choose --outputs among npy, prob)"), "\(l2)")
    }

    @Test("A TESSERA_BLAS_LIBRARY that does not load is named, with the advice to fix or unset it")
    func blasLibrary() throws {
        let group = try ProcessGroup("messages-blas")
        defer { group.stop() }
        let (s, l) = try Self.command(
            group, ["info"], log: "info", environment: ["TESSERA_BLAS_LIBRARY": "/nonexistent/libopenblas.so"])
        #expect(l.contains("TESSERA_BLAS_LIBRARY=/nonexistent/libopenblas.so") && l.contains("unset it"), "\(s): \(l)")
        #expect(!l.contains("or set TESSERA_BLAS_LIBRARY"), "\(l)")
        // A kernel name OpenBLAS does not know is ignored by it: the report says so instead of crediting the name.
        let (s2, l2) = try Self.command(group, ["info"], log: "core", environment: ["TESSERA_BLAS_CORETYPE": "Bogus"])
        #expect(
            s2 == 0 && l2.contains("TESSERA_BLAS_CORETYPE=Bogus, which this OpenBLAS does not have: it chose"),
            "\(l2)")
    }
}
