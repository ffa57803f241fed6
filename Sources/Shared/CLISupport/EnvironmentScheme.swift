import Foundation

/// How a binary's options are named in the environment: `--worker-endpoint` of
/// `tessera-coordinator serve` is `TESSERA_WORKER_ENDPOINT`.
///
/// The rule is `prefix` + the long flag name in capitals with `-` → `_`, except where
/// a `Scope` gives some flags of some subcommands another prefix: the same variable
/// must never mean two different things to programs that may share an environment
/// (a systemd environment file, a container's variables seen by its health check).
package struct EnvironmentScheme: Sendable {
    /// Flags of some subcommands that take a different prefix.
    package struct Scope: Sendable {
        /// Subcommand names (nil: the root command, for binaries without subcommands).
        package var subcommands: Set<String>
        /// Long flag names; nil: all of the subcommands' flags.
        package var flags: Set<String>?
        package var prefix: String
    }

    package var binary: String
    package var prefix: String
    package var scopes: [Scope]
    /// Flags that are actions rather than settings: never read from the environment.
    package var actions: Set<String>

    /// Every `tessera-coordinator` subcommand: `TESSERA_<FLAG>`, except
    /// - the client connection of `submit`, `status`, `cancel`, `fetch`:
    ///   `TESSERA_CLIENT_COORDINATOR`, `TESSERA_CLIENT_RECONNECT_TIMEOUT`, `TESSERA_CLIENT_CURVE`, `TESSERA_CLIENT_CURVE_SECRET_KEY`,
    ///   `TESSERA_CLIENT_CURVE_SERVER_KEY` (serve's `TESSERA_CURVE_SECRET_KEY` is the
    ///   coordinator's own key; a client's is the user's);
    /// - `keygen`: `TESSERA_KEYGEN_OUT`, `TESSERA_KEYGEN_FORCE` (its `--out` is a key
    ///   folder, not the outputs folder of `run`/`submit`/`fetch`);
    /// - `export`'s `--image` and `--level`: `TESSERA_EXPORT_IMAGE`, `TESSERA_EXPORT_LEVEL` (its
    ///   `--image` is the mapped file, `run`'s an image number; a `TESSERA_LEVEL` meant for `run` would
    ///   override the level the map records);
    /// - `gpu-check`'s `--device` and `--precision`: `TESSERA_GPU_CHECK_DEVICE`, `TESSERA_GPU_CHECK_PRECISION`;
    /// - `run`'s `--store`: `TESSERA_RUN_STORE` (`TESSERA_STORE` is `serve`'s store, locked while it serves: in
    ///   the coordinator's container or a systemd environment, `run` took it and was refused; user review F13).
    package static let coordinator = EnvironmentScheme(
        binary: "tessera-coordinator", prefix: "TESSERA_",
        scopes: [
            Scope(
                subcommands: ["submit", "status", "cancel", "fetch"],
                flags: ["coordinator", "reconnect-timeout", "curve", "curve-secret-key", "curve-server-key"],
                prefix: "TESSERA_CLIENT_"),
            Scope(subcommands: ["keygen"], flags: nil, prefix: "TESSERA_KEYGEN_"),
            Scope(subcommands: ["export"], flags: ["image", "level"], prefix: "TESSERA_EXPORT_"),
            Scope(subcommands: ["run"], flags: ["store"], prefix: "TESSERA_RUN_"),
            // Its --device defaults to cuda: a TESSERA_DEVICE=cpu exported for `run` made it refuse (audit 40 N10).
            Scope(subcommands: ["gpu-check"], flags: ["device", "precision"], prefix: "TESSERA_GPU_CHECK_"),
        ],
        actions: [])

    /// `tessera-worker`: `TESSERA_WORKER_<FLAG>` (its `--coordinator` is the worker
    /// endpoint, its `--threads` are per task: they must not be read by the coordinator's
    /// commands). `--info` prints a report and exits: not a setting.
    package static let worker = EnvironmentScheme(
        binary: "tessera-worker", prefix: "TESSERA_WORKER_", scopes: [],
        actions: ["info"])

    /// ArgumentParser's own flags.
    static let builtIn: Set<String> = ["help", "version", "experimental-dump-help"]

    /// The variable for `--flag` of `subcommand` (nil: the root command).
    package func variable(subcommand: String?, flag: String) -> String {
        var p = prefix
        if let sub = subcommand,
            let scope = scopes.first(where: { $0.subcommands.contains(sub) && ($0.flags?.contains(flag) ?? true) })
        {
            p = scope.prefix
        }
        return p + flag.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// Whether `--flag` is read from the environment.
    package func isSetting(_ flag: String) -> Bool { !Self.builtIn.contains(flag) && !actions.contains(flag) }
}
