import ArgumentParser
import CLISupport
import Foundation
import Testing

@testable import Coordinator
@testable import TestSupport
@testable import Worker

/// Every option of both binaries can come from its environment variable: the test
/// walks ArgumentParser's own list of each subcommand's options (so a new flag is
/// covered without anyone adding it here), sets the variable, parses the real
/// command and compares the result with the same value given as a flag.
@Suite("Options from TESSERA_* environment variables")
struct EnvironmentVariableTests {
    struct Binary {
        var name: String
        var table: EnvironmentTable
        var parse: ([String]) throws -> ParsableCommand
    }

    static let binaries = [
        Binary(
            name: "tessera-coordinator", table: EnvironmentTable(TesseraCoordinator.self, scheme: .coordinator),
            parse: { try TesseraCoordinator.parseAsRoot($0) }),
        Binary(
            name: "tessera-worker", table: EnvironmentTable(TesseraWorker.self, scheme: .worker),
            parse: { try TesseraWorker.parseAsRoot($0) }),
    ]

    /// Arguments that make each subcommand parse: (flag, value) pairs and positionals.
    /// Options of a CURVE group need each other, so the whole group is in the baseline.
    static let baselines: [String: (options: [(String, String?)], positionals: [String])] = [
        "serve": ([("curve", nil), ("curve-secret-key", "c.key"), ("authorized-keys", "auth")], []),
        "submit": (
            [
                ("model", "m.prototxt"), ("out", "o"), ("curve", nil), ("curve-secret-key", "u.key"),
                ("curve-server-key", "c.pub"),
            ], ["a.png"]
        ),
        "status": ([("curve", nil), ("curve-secret-key", "u.key"), ("curve-server-key", "c.pub")], []),
        "cancel": ([("curve", nil), ("curve-secret-key", "u.key"), ("curve-server-key", "c.pub")], ["1"]),
        "fetch": ([("out", "o"), ("curve", nil), ("curve-secret-key", "u.key"), ("curve-server-key", "c.pub")], ["1"]),
        "run": ([("model", "m.prototxt"), ("out", "o")], ["a.png"]),
        "inspect": ([("model", "m.prototxt")], []),
        "inspect-image": ([], ["slide.svs"]),
        "export": ([("out", "o")], ["m.zarr"]),
        "convert": (
            [
                ("model", "m.prototxt"), ("weights", "w.caffemodel"), ("out-model", "f.prototxt"),
                ("out-weights", "f.caffemodel"),
            ], []
        ),
        "benchmark": ([("model", "m.prototxt")], []),
        "info": ([], []),
        "keygen": ([], ["alice"]),
        "gpu-check": ([], []),
        "": ([("curve", nil), ("curve-secret-key", "w.key"), ("curve-server-key", "c.pub")], []),
    ]
    /// Options that exclude a baseline option (`--weights-npy` replaces `--weights`; `--format onnx` writes
    /// no weights file).
    static let exclusions: [String: Set<String>] = [
        "convert weights-npy": ["weights"], "convert format": ["out-weights"],
    ]

    /// Values tried in order until one is accepted and differs from the default.
    static let samples = [
        "3", "17", "debug", "fast", "rgb", "prob", "16", "0.5", "1,2,3", "cuda:1", "tf32", "onnx", "64", "7d", "50G",
        "tcp://127.0.0.1:7000",
    ]

    static func dump(_ command: ParsableCommand) -> String {
        var text = ""
        Swift.dump(command, to: &text)
        return text
    }

    static func arguments(_ sub: String?, without flag: String) -> [String]? {
        guard let base = baselines[sub ?? ""] else { return nil }
        let skip = exclusions["\(sub ?? "") \(flag)"] ?? []
        var args = sub.map { [$0] } ?? []
        for (f, v) in base.options where f != flag && !skip.contains(f) { args += ["--\(f)"] + (v.map { [$0] } ?? []) }
        return args + base.positionals
    }

    @Test("Every option of every subcommand has a TESSERA_ variable that sets it, and the command line wins")
    func everyOptionWorks() throws {
        var checked = 0
        for binary in Self.binaries {
            let subs: [String?] = binary.table.subcommands.isEmpty ? [nil] : binary.table.subcommands.map { $0 }
            for sub in subs {
                let options = binary.table.options[sub] ?? []
                for option in options {
                    let label = "\(binary.name) \(sub ?? "") --\(option.flag)"
                    #expect(option.variable == binary.table.scheme.variable(subcommand: sub, flag: option.flag))
                    #expect(
                        option.variable.range(of: "^TESSERA_[A-Z0-9_]+$", options: .regularExpression) != nil,
                        "\(label)")
                    let args = try #require(
                        Self.arguments(sub, without: option.flag),
                        "no baseline arguments for `\(binary.name) \(sub ?? "")`: add them to the test")
                    let baseline = (try? binary.parse(args)).map(Self.dump)
                    let env = binary.table
                    func viaEnvironment(_ value: String, extra: [String] = []) throws -> String {
                        let applied = try env.apply(args + extra, environment: [option.variable: value])
                        return Self.dump(try binary.parse(applied.arguments))
                    }
                    if option.takesValue {
                        // The first sample the command accepts that is not the default.
                        var value: String?
                        var viaFlag = ""
                        for sample in option.values + Self.samples {
                            guard let parsed = try? binary.parse(args + ["--\(option.flag)", sample]) else { continue }
                            viaFlag = Self.dump(parsed)
                            if viaFlag != baseline { value = sample; break }
                        }
                        let v = try #require(value, "\(label): no sample value is accepted; extend `samples`")
                        #expect(
                            try viaEnvironment(v) == viaFlag, "\(label): \(option.variable)=\(v) differs from the flag")
                        // The command line wins over the environment.
                        let other = (option.values + Self.samples).first {
                            $0 != v && (try? binary.parse(args + ["--\(option.flag)", $0])) != nil
                        }
                        if let other {
                            #expect(
                                try viaEnvironment(other, extra: ["--\(option.flag)", v]) == viaFlag,
                                "\(label): the environment beat the command line")
                        }
                    } else {
                        let viaFlag = Self.dump(try binary.parse(args + ["--\(option.flag)"]))
                        for yes in ["1", "true", "TRUE"] {
                            #expect(try viaEnvironment(yes) == viaFlag, "\(label)=\(yes)")
                        }
                        if let baseline {
                            for no in ["0", "false"] { #expect(try viaEnvironment(no) == baseline, "\(label)=\(no)") }
                        }
                        #expect(throws: EnvironmentError.self, "\(label)=maybe") { _ = try viaEnvironment("maybe") }
                        do {
                            _ = try viaEnvironment("yes")
                        } catch let error as EnvironmentError {
                            #expect(error.description.contains(option.variable), "\(error)")
                        }
                    }
                    checked += 1
                }
            }
        }
        #expect(checked > 40, "only \(checked) options found")
    }

    @Test("An option table that cannot be read refuses TESSERA_ variables loudly instead of ignoring them")
    func unreadableTable() throws {
        for binary in Self.binaries {
            #expect(binary.table.failure == nil, "\(binary.name): \(binary.table.failure ?? "")")
        }
        let broken = EnvironmentTable(dumpedHelp: "{ not the help", scheme: .coordinator)
        #expect(broken.failure != nil)
        do {
            _ = try broken.apply(["serve"], environment: ["TESSERA_STORE": "/srv/store", "HOME": "/root"])
            Issue.record("a variable was ignored silently")
        } catch {
            #expect("\(error)".contains("TESSERA_STORE") && "\(error)".contains("option table"), "\(error)")
        }
        // Nothing of Tessera's set (or only empty): the command line is used as it is.
        let plain = try broken.apply(["serve", "--store", "/s"], environment: ["HOME": "/root", "TESSERA_CREDIT": ""])
        #expect(plain.arguments == ["serve", "--store", "/s"])
        let worker = EnvironmentTable(dumpedHelp: "", scheme: .worker)
        #expect(throws: EnvironmentError.self) { try worker.apply([], environment: ["TESSERA_WORKER_THREADS": "4"]) }
    }

    @Test("A variable means one thing: no name is shared between the binaries or between different flags")
    func namesAreDistinct() throws {
        var owner: [String: String] = [:]
        for binary in Self.binaries {
            for option in binary.table.all {
                let key = "\(binary.name) --\(option.flag)"
                if let previous = owner[option.variable] {
                    #expect(previous == key, "\(option.variable) is used by \(previous) and \(key)")
                }
                owner[option.variable] = key
            }
        }
        let coordinator = Self.binaries[0].table, worker = Self.binaries[1].table
        // The clashes the scheme exists for.
        #expect(worker.scheme.variable(subcommand: nil, flag: "coordinator") == "TESSERA_WORKER_COORDINATOR")
        #expect(coordinator.scheme.variable(subcommand: "status", flag: "coordinator") == "TESSERA_CLIENT_COORDINATOR")
        #expect(coordinator.scheme.variable(subcommand: "serve", flag: "worker-endpoint") == "TESSERA_WORKER_ENDPOINT")
        #expect(
            coordinator.scheme.variable(subcommand: "serve", flag: "curve-secret-key") == "TESSERA_CURVE_SECRET_KEY")
        #expect(
            coordinator.scheme.variable(subcommand: "submit", flag: "curve-secret-key")
                == "TESSERA_CLIENT_CURVE_SECRET_KEY")
        #expect(coordinator.scheme.variable(subcommand: "keygen", flag: "out") == "TESSERA_KEYGEN_OUT")
        // export --image is a path, run --image a number (user audit: TESSERA_IMAGE=2 broke export).
        #expect(coordinator.scheme.variable(subcommand: "export", flag: "image") == "TESSERA_EXPORT_IMAGE")
        #expect(coordinator.scheme.variable(subcommand: "run", flag: "image") == "TESSERA_IMAGE")
        // serve's store is locked while it serves: run in the same environment (the coordinator's container, a
        // systemd environment file) took it and was refused (user review F13).
        #expect(coordinator.scheme.variable(subcommand: "serve", flag: "store") == "TESSERA_STORE")
        #expect(coordinator.scheme.variable(subcommand: "run", flag: "store") == "TESSERA_RUN_STORE")
        // A repeatable option's variable gives several values, separated by ":" (operator audit F16).
        #expect(
            try coordinator.apply(["serve"], environment: ["TESSERA_SHARED_ROOT": "/data:/scratch"]).arguments == [
                "serve", "--shared-root=/data", "--shared-root=/scratch",
            ])
        #expect(
            try worker.apply([], environment: ["TESSERA_WORKER_SHARED_ROOT": "/data"]).arguments == [
                "--shared-root=/data"
            ])
        let run = ["run", "--model", "m.prototxt", "--out", "o", "a.png"]
        #expect(try coordinator.apply(run, environment: ["TESSERA_STORE": "/srv/store"]).arguments == run)
        #expect(
            try coordinator.apply(run, environment: ["TESSERA_RUN_STORE": "/tmp/r"]).arguments.contains(
                "--store=/tmp/r"))
        // Actions are not settings.
        #expect(!worker.all.contains { $0.flag == "info" || $0.flag == "help" })
    }

    @Test("Values starting with '-' stay values; empty variables are unset; help ignores the environment")
    func edgeCases() throws {
        let table = Self.binaries[0].table
        let applied = try table.apply(["serve"], environment: ["TESSERA_STORE": "-odd", "TESSERA_CREDIT": ""])
        #expect(applied.arguments == ["serve", "--store=-odd"])
        #expect(
            try table.apply(["serve", "--help"], environment: ["TESSERA_CURVE": "maybe"]).arguments == [
                "serve", "--help",
            ])
        // Inserted before positionals and `--`.
        let run = try table.apply(["run", "a.png"], environment: ["TESSERA_OUT": "o"])
        #expect(run.arguments == ["run", "--out=o", "a.png"])
    }

    /// User review: a bad variable's error was followed by the top-level usage, not the subcommand's help.
    @Test("A bad variable's error points at the subcommand's help")
    func badVariableNamesSubcommand() throws {
        // `/usr/bin/env NAME=VALUE binary …` sets the variable for the binary alone.
        let (code, text) = try runCommand([
            "TESSERA_IN_PROCESS=yes", ProcessGroup.binary("tessera-coordinator"), "run", "x.png",
        ])
        #expect(code != 0 && text.contains("TESSERA_IN_PROCESS=yes"), "\(text)")
        #expect(text.contains("See 'tessera-coordinator run --help'") && !text.contains("<subcommand>"), "\(text)")
    }

    @Test("--help of every subcommand lists each shown option's variable (the real binaries)")
    func helpListsVariables() throws {
        for binary in Self.binaries {
            let subs: [String?] = binary.table.subcommands.isEmpty ? [nil] : binary.table.subcommands.map { $0 }
            for sub in subs {
                let (status, help) = try DeployFiles.run(
                    ProcessGroup.binary(binary.name), (sub.map { [$0] } ?? []) + ["--help"])
                #expect(status == 0)
                for option in binary.table.options[sub] ?? [] where option.isShown {
                    #expect(
                        help.components(separatedBy: "(env: \(option.variable))").count == 2,
                        "\(binary.name) \(sub ?? "") --help should show \(option.variable) once:\n\(help)")
                }
                // Example commands in the overview stay as written.
                let overview = help.components(separatedBy: "USAGE:")[0]
                #expect(
                    !overview.contains("(env:"),
                    "\(binary.name) \(sub ?? ""): variable inside the overview:\n\(overview)")
                // An example command is not wrapped mid-line (a shell would cut it there): a
                // line of an indented example never runs on into an unindented one.
                let lines = overview.components(separatedBy: "\n")
                for (a, b) in zip(lines, lines.dropFirst()) where a.hasPrefix(" ") && !b.isEmpty {
                    let command = a.trimmingCharacters(in: .whitespaces)
                    guard command.hasPrefix("tessera-") || command.hasPrefix("--") else { continue }
                    #expect(b.hasPrefix(" "), "\(binary.name) \(sub ?? ""): example wrapped after '\(a)': '\(b)'")
                }
                if !(binary.table.options[sub] ?? []).isEmpty { #expect(help.contains("ENVIRONMENT:")) }
            }
        }
    }
}
