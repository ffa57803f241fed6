import ArgumentParser
import CLISupport
import Foundation
import Testing

@testable import Coordinator
@testable import TesseraWire
@testable import Worker

/// Command-line values that look like flags.
@Suite("Option values: negative numbers")
struct OptionParsingTests {
    static let base = ["--model", "m.prototxt", "--out", "o", "a.png"]

    @Test(
        "Negative numbers are values of --mean, --raw-scale and --scale (run, submit, inspect)",
        arguments: [
            ["run"], ["submit"], ["inspect"],
        ])
    func negativeNumbers(_ command: [String]) throws {
        let base = command == ["inspect"] ? ["--model", "m.prototxt"] : Self.base
        let parsed = try TesseraCoordinator.parseAsRoot(
            command + base + ["--mean", "-1e30,5,5", "--raw-scale", "-1", "--scale", "-0.5"])
        let pre: PreprocessingOptions
        switch parsed {
        case let c as Run: pre = c.preprocessing
        case let c as Submit: pre = c.preprocessing
        case let c as Inspect: pre = c.preprocessing
        default:
            Issue.record("parsed as \(type(of: parsed))")
            return
        }
        #expect(try pre.parsedMean() == [-1e30, 5, 5])
        #expect(pre.rawScale == -1 && pre.scale == -0.5)
    }

    @Test("A single negative mean and the = form still parse; a missing value is still an error")
    func edgeCases() throws {
        let one = try TesseraCoordinator.parseAsRoot(["run"] + Self.base + ["--mean", "-104"]) as? Run
        #expect(try one?.preprocessing.parsedMean() == [-104])
        let eq = try TesseraCoordinator.parseAsRoot(["run"] + Self.base + ["--scale=-2"]) as? Run
        #expect(eq?.preprocessing.scale == -2)
        #expect(throws: (any Error).self) { try TesseraCoordinator.parseAsRoot(["run"] + Self.base + ["--mean"]) }
    }

    /// `--level -1` said "Missing value for '--level <N>'" (ArgumentParser took -1 for a flag).
    @Test("Negative --level, --mpp and --keep-classes get the option's own message")
    func negativeSlideOptions() throws {
        for (args, expected) in [
            (["--level", "-1"], "--level must be 0 or more"), (["--mpp", "-2"], "--mpp must be a positive number"),
            (["--keep-classes", "-1"], "give class numbers like 1 or 0,2"),
        ] {
            do {
                _ = try TesseraCoordinator.parseAsRoot(["run"] + Self.base + args)
                Issue.record("\(args) was accepted")
            } catch {
                let message = TesseraCoordinator.message(for: error)
                #expect(message.contains(expected), "\(args): \(message)")
            }
        }
    }
}

extension OptionParsingTests {
    /// Found by a user audit: `--check -5` said the value was missing.
    @Test("A negative --check is a bad value, named as such")
    func negativeCheck() throws {
        do {
            _ = try TesseraCoordinator.parseAsRoot(["run"] + Self.base + ["--check", "-5"])
            Issue.record("--check -5 was accepted")
        } catch {
            let text = TesseraCoordinator.fullMessage(for: error)
            #expect(text.contains("--check must be between 0 and 1000000"), "\(text)")
        }
    }
}

extension OptionParsingTests {
    /// Found by an operator audit: a job with no worker left read "running" and nothing more.
    @Test("status says when no worker is connected to run queued tasks")
    func statusWithoutWorkers() {
        let waiting = Status.describe(Wire.JobStatus(jobID: 3, state: .running, tasksQueued: 5, workers: 0))
        #expect(waiting.contains("no worker is connected"), "\(waiting)")
        let served = Status.describe(Wire.JobStatus(jobID: 3, state: .running, tasksQueued: 5, workers: 2))
        #expect(!served.contains("no worker"), "\(served)")
        let done = Status.describe(Wire.JobStatus(jobID: 3, state: .done, tasksDone: 5, workers: 0))
        #expect(!done.contains("no worker"), "\(done)")
        // Docs/CLI audit 36 F9: an ended job's average rate was in --json only.
        let ended = Status.describe(
            job: Wire.JobSummary(
                id: 8, state: .done, tasks: 16, done: 16, tasksPerSecond: 52.778, pixelsPerSecond: 864_710,
                submitted: 1_796_000_000, ended: 1_796_000_001),
            outputs: [])
        #expect(ended.contains("average throughput: 52.78 tasks/s, 0.865 Mpx/s"), "\(ended)")
        let restarted = Status.describe(job: Wire.JobSummary(id: 9, state: .done, tasks: 1, done: 1), outputs: [])
        #expect(!restarted.contains("throughput"), "\(restarted)")
    }
}

extension OptionParsingTests {
    /// User review F11: similar mistakes exited 1 or 64. A command line wrong in itself is a usage error (64, with
    /// the usage); an option that does not fit the model is an error of what the command works on (1, tested in
    /// SlideMapTests and EarlyChecksTests).
    @Test("A malformed --keep-classes and an unknown --device are usage errors (exit status 64), for the worker too")
    func usageErrorsExit64() {
        for args in [["--keep-classes", "1,1"], ["--device", "gpu7"], ["--bit-depth", "12"]] {
            do {
                _ = try TesseraCoordinator.parseAsRoot(["run"] + Self.base + args)
                Issue.record("\(args) was accepted")
            } catch {
                #expect(TesseraCoordinator.exitCode(for: error) == .validationFailure, "\(args): \(error)")
            }
        }
        // A TIFF given to an upload job is the image's matter: 1 (verification audit 32 N4: it exited 64).
        let tiff = FileManager.default.temporaryDirectory.appendingPathComponent("upload-\(UUID().uuidString).tif").path
        defer { try? FileManager.default.removeItem(atPath: tiff) }
        _ = FileManager.default.createFile(
            atPath: tiff, contents: Data([0x49, 0x49, 0x2A, 0x00] + [UInt8](repeating: 0, count: 60)))
        do {
            _ = try TesseraCoordinator.parseAsRoot(["submit", "--model", "m.prototxt", "--out", "o", tiff])
            Issue.record("a TIFF upload was accepted")
        } catch {
            #expect(TesseraCoordinator.exitCode(for: error) == .failure, "\(error)")
            #expect(TesseraCoordinator.message(for: error).contains("is not a PNG"), "\(error)")
        }
        do {
            _ = try TesseraWorker.parseAsRoot(["--coordinator", "tcp://127.0.0.1:5555", "--device", "gpu7"])
            Issue.record("the worker accepted --device gpu7")
        } catch {
            #expect(TesseraWorker.exitCode(for: error) == .validationFailure, "\(error)")
        }
    }
}

extension OptionParsingTests {
    /// Docs/CLI audit 36 F1: libzmq took a port above 65535 modulo 65536 (99999 bound 34463), silently.
    @Test("Endpoints: a port out of range, a missing port or * to connect to are usage errors; good forms parse")
    func endpointSyntax() throws {
        let refused: [[String]] = [
            ["serve", "--worker-endpoint", "tcp://127.0.0.1:99999"],
            ["serve", "--client-endpoint", "tcp://127.0.0.1:0"],
            ["serve", "--client-endpoint", "tcp://127.0.0.1"],
            ["status", "--coordinator", "tcp://127.0.0.1:*"],
            ["status", "--coordinator", "tcp://127.0.0.1:70000"],
            ["status", "--coordinator", "http://127.0.0.1:5556"],
        ]
        for args in refused {
            do {
                _ = try TesseraCoordinator.parseAsRoot(args)
                Issue.record("\(args) was accepted")
            } catch {
                #expect(TesseraCoordinator.exitCode(for: error) == .validationFailure, "\(args): \(error)")
                #expect(TesseraCoordinator.message(for: error).contains(args[2]), "\(args): \(error)")
            }
        }
        do {
            _ = try TesseraWorker.parseAsRoot(["--coordinator", "tcp://127.0.0.1:65536"])
            Issue.record("the worker accepted port 65536")
        } catch {
            #expect(TesseraWorker.exitCode(for: error) == .validationFailure, "\(error)")
        }
        _ = try TesseraCoordinator.parseAsRoot(["serve", "--worker-endpoint", "tcp://*:5555"])
        _ = try TesseraCoordinator.parseAsRoot(["serve", "--client-endpoint", "tcp://[::1]:65535"])
        _ = try TesseraCoordinator.parseAsRoot(["status", "--coordinator", "tcp://eth0;10.0.0.1:5556"])
        _ = try TesseraWorker.parseAsRoot(["--coordinator", "ipc:///tmp/tessera.sock"])
    }

    /// Docs/CLI audit 36 F5 and F8: `benchmark --size 0` trapped (exit 132); `--tile -5` was a "missing value".
    @Test("benchmark's and run's numbers out of range, negative ones too, are usage errors naming the option")
    func benchmarkRanges() {
        let model = ["benchmark", "--model", "m.prototxt"]
        for (args, expected) in [
            (model + ["--size", "0"], "--size must be between 1 and 32768"),
            (model + ["--size", "-3"], "--size must be between 1 and 32768"),
            (model + ["--tile", "0"], "--tile must be between 1 and 32768"),
            (model + ["--threads", "0"], "--threads must be between 1 and 1024"),
            (model + ["--repeats", "0"], "--repeats must be between 1 and 1000"),
            (model + ["--naive-crop", "0"], "--naive-crop must be between 1 and 4096"),
            (model + ["--modes", ""], "unknown mode '' in --modes"),
            (model + ["--modes", "dense,turbo"], "unknown mode 'turbo' in --modes"),
            (["run"] + Self.base + ["--tile", "-5"], "--tile must be between 1 and 32768"),
            (["run"] + Self.base + ["--threads", "-1"], "--threads must be between 1 and 1024"),
            (["inspect-image", "a.png", "--threads", "0"], "--threads must be between 1 and 1024"),
        ] {
            do {
                _ = try TesseraCoordinator.parseAsRoot(args)
                Issue.record("\(args) was accepted")
            } catch {
                #expect(TesseraCoordinator.exitCode(for: error) == .validationFailure, "\(args): \(error)")
                #expect(TesseraCoordinator.message(for: error).contains(expected), "\(args): \(error)")
            }
        }
    }
}

extension OptionParsingTests {
    /// Docs/CLI audit 36 F10: the `status`/`fetch` commands `submit` prints went to the default coordinator.
    @Test("The follow-up commands submit prints name the coordinator and keys given, quoted for a shell")
    func followUpFlags() throws {
        #expect(try CoordinatorOption.parse([]).followUpFlags == "")
        let given = try CoordinatorOption.parse([
            "--coordinator", "tcp://10.0.0.5:5556", "--curve", "--curve-secret-key", "my keys/alice.key",
            "--curve-server-key", "c.pub",
        ])
        #expect(
            given.followUpFlags
                == " --coordinator tcp://10.0.0.5:5556 --curve --curve-secret-key 'my keys/alice.key' "
                + "--curve-server-key c.pub")
        #expect(
            shellQuoted("it's") == "'it'\\''s'" && shellQuoted("") == "''"
                && shellQuoted("a/b_c-1.png") == "a/b_c-1.png")
    }
}

extension OptionParsingTests {
    /// Docs/CLI audit 36 F11: a mistyped --shared-root was accepted without a word by serve and the worker.
    @Test("A --shared-root that is missing or a file is warned of; a folder is not")
    func sharedRootWarnings() {
        let tmp = NSTemporaryDirectory()
        let warnings = missingFolderWarnings(
            [tmp, "/nonexistent-\(getpid())", "/etc/hostname"], option: "--shared-root")
        #expect(warnings.count == 2, "\(warnings)")
        #expect(warnings.first?.contains("/nonexistent-\(getpid()) does not exist") == true, "\(warnings)")
        #expect(warnings.last?.contains("/etc/hostname is a file") == true, "\(warnings)")
        // Paths audit 41 F13: under a file, the file is the answer, not "does not exist (yet?)".
        let under = missingFolderWarnings(["/etc/hostname/", "/etc/hostname/x"], option: "--shared-root")
        #expect(under.allSatisfy { $0.contains("a file stands on its path") }, "\(under)")
    }
}
