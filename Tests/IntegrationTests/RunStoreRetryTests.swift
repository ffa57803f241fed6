import Foundation
import Testing

@testable import TestSupport

/// Audit 55 F2: with `--store`, the same command again is the same job (an interrupted one resumes), and a
/// failed one was returned as it was: after a full disk was freed, every later run of the command ended at once
/// with the first one's "No space left on device". A failed or cancelled job of the command is now followed by a
/// new one. A file-size limit (`ulimit -f`: the local workers' chunk writes fail with EFBIG; SIGXFSZ is
/// ignored, audit 55 F3) stands in for the full disk.
@Suite("run --store maps again after a failed run of the same command")
struct RunStoreRetryTests {
    @Test("a run that failed for want of space maps when run again, and a third run reuses the map")
    func failedRunMapsAgain() throws {
        let group = try ProcessGroup("run-store-retry")
        defer { group.stop() }
        let dir = group.directory
        let image = dir + "/img.png"
        try ClusterFixture.writeImage(to: image, height: 600, width: 600)
        let root = TestPaths.packageRoot.path
        let command = [
            ProcessGroup.binary("tessera-coordinator"), "run", "--model", root + "/models/demo/deploy.prototxt",
            "--weights", root + "/models/demo/nuclei32.caffemodel", "--mean", "134,151,171", "--scale", "0.015625",
            "--mode", "dense", "--tile", "256", "--workers", "1", "--threads", "1", "--store", dir + "/store",
            "--outputs", "npy", "--out", dir + "/out", image,
        ]
        func run(sizeLimitKiB: Int? = nil) throws -> (status: Int32, output: String) {
            let limit = sizeLimitKiB.map { "ulimit -f \($0); " } ?? ""
            return try runCommand(["bash", "-c", limit + "exec \"$@\"", "bash"] + command)
        }
        // A 256² float32 chunk of 2 classes is 512 KiB: over the limit; the weights (317 KiB), which the job's
        // record keeps, are not.
        let failed = try run(sizeLimitKiB: 400)
        #expect(failed.status != 0 && failed.output.contains("File too large"), "\(failed.output)")
        #expect(!failed.output.contains("signal 25"), "a worker was killed by SIGXFSZ: \(failed.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out/img.npy"))

        let again = try run()
        #expect(again.status == 0, "\(again.output)")
        #expect(
            again.output.contains("an earlier run of this command ended without a map: this run maps it with another job"),
            "\(again.output)")
        let map = try Data(contentsOf: URL(fileURLWithPath: dir + "/out/img.npy"))
        #expect(map.count == 128 + 2 * 600 * 600 * 4)

        // The job of the line is done now: no word of an earlier failure, and the same map.
        let third = try run()
        #expect(third.status == 0 && !third.output.contains("ended without a map"), "\(third.output)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/out/img.npy")) == map)
    }
}
