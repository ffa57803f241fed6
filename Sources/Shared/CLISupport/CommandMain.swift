import ArgumentParser
import Foundation
import TesseraCore

extension ParsableCommand {
    /// `main()` with the environment: options missing from the command line are taken
    /// from their variables (`EnvironmentTable.apply`), and `--help` lists the variables.
    package static func main(
        environment scheme: EnvironmentScheme,
        arguments: [String] = Array(CommandLine.arguments.dropFirst()),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Never {
        // Each line out as it is printed, also into a file or a pipe (a log collector, or a
        // `timeout` that stops the command keeps everything printed before).
        setvbuf(stdout, nil, _IOLBF, 0)
        // Maps of many small tiles have many chunk files (audit 52: `run` lost a finished map's .npy to the
        // default soft limit of 1024 open files); the hard limit is the machine's.
        ResourceUsage.raiseOpenFileLimit()
        // A file-size limit (`ulimit -f`, systemd's LimitFSIZE=) then fails the write with EFBIG, which every write
        // path reports (naming the file) or falls back from, instead of killing the process without a word (audit
        // 55 F3: workers and `run` died of SIGXFSZ, "killed by signal 25").
        signal(SIGXFSZ, SIG_IGN)
        let table = EnvironmentTable(Self.self, scheme: scheme)
        let applied: EnvironmentTable.Applied
        do {
            applied = try table.apply(arguments, environment: environment)
        } catch {
            // The message and where the subcommand's help is, not the top-level usage (user review:
            // TESSERA_IN_PROCESS=yes was followed by "Usage: tessera-coordinator <subcommand>").
            let sub = arguments.first.flatMap { a in
                Self.configuration.subcommands.contains { $0._commandName == a } ? a : nil
            }
            let name = [Self.configuration.commandName, sub].compactMap { $0 }.joined(separator: " ")
            FileHandle.standardError.write(Data("Error: \(error)\n  See '\(name) --help'.\n".utf8))
            exit(withError: ExitCode.validationFailure)
        }
        var parsed = false
        do {
            var command = try parseAsRoot(applied.arguments)
            parsed = true
            try command.run()
        } catch {
            // A help request (ArgumentParser reports it as an error that exits 0).
            let text = exitCode(for: error) == .success ? fullMessage(for: error) : ""
            if !text.isEmpty {
                // (--version's text is one line; help screens get each option's variable.)
                let plain = text.hasPrefix("{") || !text.contains("\n")
                print(plain ? text : table.annotateHelp(text, subcommand: applied.subcommand))
                exit(withError: ExitCode.success)
            }
            if !applied.used.isEmpty {
                let list = applied.used.map { "\($0.variable) → --\($0.flag)" }.joined(separator: ", ")
                FileHandle.standardError.write(Data("note: from the environment: \(list)\n".utf8))
            }
            // A ValidationError from a command's run() got the top-level usage after it (user audit: export's
            // "the overlay needs --image" was followed by "Usage: tessera-coordinator <subcommand>"): the
            // message alone, and where the command's help is.
            if parsed, let validation = error as? ValidationError {
                let name = [Self.configuration.commandName, applied.subcommand].compactMap { $0 }
                    .joined(separator: " ")
                FileHandle.standardError.write(Data("Error: \(validation.message)\n  See '\(name) --help'.\n".utf8))
                exit(withError: ExitCode.validationFailure)
            }
            exit(withError: FlagHints.annotate(error))
        }
        exit(withError: ExitCode.success)
    }
}
