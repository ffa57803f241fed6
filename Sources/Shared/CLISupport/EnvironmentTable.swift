import ArgumentParser
import Foundation

/// One option that can come from the environment.
package struct EnvironmentOption: Sendable, Equatable, CustomStringConvertible {
    /// The subcommand (nil: the root command).
    package var subcommand: String?
    /// The long name without dashes (`worker-endpoint`).
    package var flag: String
    /// The variable (`TESSERA_WORKER_ENDPOINT`).
    package var variable: String
    /// false: a Bool flag (`1`/`true` sets it, `0`/`false` leaves it off).
    package var takesValue: Bool
    /// Listed by `--help` (false for hidden options).
    package var isShown: Bool
    /// The flag's inversion (`no-wait` of `--wait/--no-wait`), if any.
    package var inversion: String?
    /// The values an enumeration option accepts (empty: any text the option parses).
    package var values: [String] = []
    /// A repeatable option (`--shared-root`): its variable holds its values separated by `:`, as `PATH` does
    /// (operator audit F16: one variable could give only one).
    package var repeats = false

    package var description: String { "\(subcommand.map { "\($0) " } ?? "")--\(flag) ← \(variable)" }
}

/// A variable whose value cannot be used.
package struct EnvironmentError: Error, CustomStringConvertible {
    package var description: String
}

/// Every option of a command tree and its variable, read from ArgumentParser's own
/// description of the commands (`_dumpHelp()`), so a new flag gets its variable
/// without anyone writing code for it.
package struct EnvironmentTable: Sendable {
    package let scheme: EnvironmentScheme
    /// Options per subcommand (key nil: the root command).
    package let options: [String?: [EnvironmentOption]]
    /// The subcommand names (empty for a binary without subcommands).
    package let subcommands: [String]

    /// Why the option table could not be read (nil when it was): `apply` then refuses
    /// to run with variables of this binary set, rather than ignore them silently.
    package let failure: String?

    package init<Root: ParsableCommand>(_ root: Root.Type, scheme: EnvironmentScheme) {
        self.init(dumpedHelp: root._dumpHelp(), scheme: scheme)
    }

    /// The table from ArgumentParser's JSON description of the commands.
    package init(dumpedHelp json: String, scheme: EnvironmentScheme) {
        self.scheme = scheme
        var info: DumpedCommand?
        do {
            info = try JSONDecoder().decode(DumpedTool.self, from: Data(json.utf8)).command
            failure = nil
        } catch {
            failure = "\(error)"
        }
        var options: [String?: [EnvironmentOption]] = [:]
        var subcommands: [String] = []
        func collect(_ command: DumpedCommand, as name: String?) {
            options[name] = (command.arguments ?? []).compactMap { argument in
                guard argument.kind != "positional" else { return nil }
                let longs = (argument.names ?? []).filter { $0.kind == "long" }.map(\.name)
                guard let flag = longs.first, scheme.isSetting(flag) else { return nil }
                return EnvironmentOption(
                    subcommand: name, flag: flag,
                    variable: scheme.variable(subcommand: name, flag: flag),
                    takesValue: argument.kind == "option", isShown: argument.shouldDisplay,
                    inversion: longs.dropFirst().first { $0 == "no-" + flag },
                    values: argument.allValues ?? [], repeats: argument.isRepeating ?? false)
            }
        }
        if let info {
            collect(info, as: nil)
            for sub in info.subcommands ?? [] where sub.commandName != "help" {
                subcommands.append(sub.commandName)
                collect(sub, as: sub.commandName)
            }
        }
        self.options = options
        self.subcommands = subcommands
    }

    /// Every option of every (sub)command.
    package var all: [EnvironmentOption] {
        ([nil] + subcommands.map(Optional.some)).flatMap { options[$0] ?? [] }
    }

    /// The subcommand `arguments` name (nil: the root command); `help SUB` counts as SUB.
    package func subcommand(in arguments: [String]) -> String? {
        var words = arguments.prefix { $0 != "--" }.filter { !$0.hasPrefix("-") }
        if words.first == "help" { words.removeFirst() }
        guard let first = words.first, subcommands.contains(first) else { return nil }
        return first
    }

    /// The result of `apply`.
    package struct Applied {
        package var arguments: [String]
        package var subcommand: String?
        /// The variables that supplied a flag.
        package var used: [EnvironmentOption]
    }

    /// `arguments` with the options the command line lacks added from `environment`,
    /// right after the subcommand (before any positional argument or `--`). The command
    /// line wins. Empty variables count as unset. Bool flags take 1, 0, true or false.
    package func apply(_ arguments: [String], environment: [String: String]) throws -> Applied {
        let sub = subcommand(in: arguments)
        // A help request prints the help whatever the environment holds.
        if arguments.first == "help" || arguments.contains("--help") || arguments.contains("-h") {
            return Applied(arguments: arguments, subcommand: sub, used: [])
        }
        if let failure {
            let prefixes = [scheme.prefix] + scheme.scopes.map(\.prefix)
            if let set = environment.keys.sorted().first(where: { key in
                prefixes.contains { key.hasPrefix($0) } && !(environment[key] ?? "").isEmpty
            }) {
                throw EnvironmentError(
                    description:
                        "\(set) is set, but \(scheme.binary) cannot read its own option table (\(failure)), so no "
                        + "TESSERA_ variable can be applied: pass the settings as flags, or unset the variables")
            }
        }
        let given = Set(
            arguments.prefix { $0 != "--" }.compactMap { token -> String? in
                guard token.hasPrefix("--") else { return nil }
                return String(token.dropFirst(2).split(separator: "=", maxSplits: 1).first ?? "")
            })
        var added: [String] = []
        var used: [EnvironmentOption] = []
        for option in options[sub] ?? [] {
            guard !given.contains(option.flag), !(option.inversion.map(given.contains) ?? false),
                let raw = environment[option.variable], !raw.isEmpty
            else { continue }
            if option.takesValue {
                // `--flag=value`: a value starting with "-" stays a value.
                let values = option.repeats ? raw.split(separator: ":").map(String.init) : [raw]
                added += values.map { "--\(option.flag)=\($0)" }
            } else {
                switch raw.lowercased() {
                case "1", "true": added.append("--\(option.flag)")
                case "0", "false": if let inversion = option.inversion { added.append("--\(inversion)") }
                default:
                    throw EnvironmentError(
                        description: "\(option.variable)=\(raw): expected 1, 0, true or false (for --\(option.flag))")
                }
            }
            used.append(option)
        }
        var result = arguments
        let insertAt = sub.flatMap { s in arguments.firstIndex(of: s).map { $0 + 1 } } ?? 0
        result.insert(contentsOf: added, at: insertAt)
        return Applied(arguments: result, subcommand: sub, used: used)
    }
}

// MARK: ArgumentParser's dump (only the fields used here)

struct DumpedTool: Decodable { var command: DumpedCommand }

struct DumpedCommand: Decodable {
    var commandName: String
    var subcommands: [DumpedCommand]?
    var arguments: [DumpedArgument]?
}

struct DumpedArgument: Decodable {
    struct Name: Decodable { var kind: String; var name: String }
    var kind: String
    var names: [Name]?
    var shouldDisplay: Bool
    var allValues: [String]?
    var isRepeating: Bool?
}
