import ArgumentParser
import Foundation
import TesseraWire

/// `--curve`, `--curve-secret-key`, `--curve-server-key`: CURVE for a program that
/// connects to the coordinator (a worker, or a client command).
package struct CurveClientOptions: ParsableArguments {
    @Flag(help: "Encrypt and authenticate with CurveZMQ (needs --curve-secret-key and --curve-server-key).")
    package var curve = false

    @Option(
        help: ArgumentHelp(
            "This program's key pair: a NAME.key file from `tessera-coordinator keygen` (mode 0600).",
            valueName: "file"))
    package var curveSecretKey: String?

    @Option(help: ArgumentHelp("The coordinator's public key: its NAME.pub file.", valueName: "file"))
    package var curveServerKey: String?

    package init() {}

    package func validate() throws {
        if curve {
            guard curveSecretKey != nil, curveServerKey != nil else {
                throw ValidationError("--curve needs --curve-secret-key FILE and --curve-server-key FILE")
            }
        } else if curveSecretKey != nil || curveServerKey != nil {
            throw ValidationError("--curve-secret-key and --curve-server-key are used only with --curve")
        }
    }

    /// The keys, read from their files (nil without `--curve`). Errors name the flag and file.
    package func security() throws -> CurveClientSecurity? {
        guard curve, let secret = curveSecretKey, let server = curveServerKey else { return nil }
        do {
            return try CurveClientSecurity.load(secretKeyFile: secret, serverKeyFile: server)
        } catch let error as ZMQKeyFileError {
            let flag = error.path == secret ? "--curve-secret-key" : "--curve-server-key"
            throw CommandError("\(flag) \(error)")
        }
    }
}

/// `--curve`, `--curve-secret-key`, `--authorized-keys`: CURVE for the coordinator.
package struct CurveServerOptions: ParsableArguments {
    @Flag(
        help: ArgumentHelp(
            "Require CurveZMQ: encrypt every connection and let in only listed keys (--authorized-keys, "
                + "--worker-keys, --admin-keys; the coordinator's own key is always a client)."))
    package var curve = false

    @Option(
        help: ArgumentHelp(
            "The coordinator's key pair: a NAME.key file from `keygen` (mode 0600).",
            valueName: "file"))
    package var curveSecretKey: String?

    @Option(
        help: ArgumentHelp(
            "Folder of the public keys allowed in: one NAME.pub per user (and per worker unless --worker-keys "
                + "is given), NAME being the identity logged (re-read every 2 s: delete a file to revoke a key).",
            valueName: "dir"))
    package var authorizedKeys: String?

    @Option(
        help: ArgumentHelp(
            "Roles: a folder of the public keys allowed to join as workers. With it, the keys of "
                + "--authorized-keys (and the coordinator's own) can only submit and query (each its own jobs), "
                + "and only these can compute; they are not clients. Without it, every authorized key may be "
                + "either.", valueName: "dir"))
    package var workerKeys: String?

    @Option(
        help: ArgumentHelp(
            "Admin keys: a folder of public keys allowed on the client endpoint that may see, cancel and "
                + "fetch every job, not only their own (each use on another key's job is logged). Never as "
                + "workers; a key in both --worker-keys and --admin-keys is refused.",
            valueName: "dir"))
    package var adminKeys: String?

    package init() {}

    package func validate() throws {
        if curve {
            guard curveSecretKey != nil, authorizedKeys != nil else {
                throw ValidationError("--curve needs --curve-secret-key FILE and --authorized-keys DIR")
            }
            // One path for the secret key and a folder of keys: the error named whichever was read first (paths
            // audit 41 F10).
            let secret = URL(fileURLWithPath: curveSecretKey ?? "").standardizedFileURL.path
            for (flag, folder) in [
                ("--authorized-keys", authorizedKeys), ("--worker-keys", workerKeys), ("--admin-keys", adminKeys),
            ] {
                if let folder, URL(fileURLWithPath: folder).standardizedFileURL.path == secret {
                    throw ValidationError(
                        "--curve-secret-key and \(flag) both name \(folder): the secret key is a file (NAME.key), "
                            + "\(flag) a folder of public keys (*.pub)")
                }
            }
        } else if curveSecretKey != nil || authorizedKeys != nil || workerKeys != nil || adminKeys != nil {
            throw ValidationError(
                "--curve-secret-key, --authorized-keys, --worker-keys and --admin-keys are used only with --curve")
        }
    }

    /// The keys (nil without `--curve`). Errors name the flag and file.
    package func security() throws -> CurveServerSecurity? {
        guard curve, let secret = curveSecretKey, let folder = authorizedKeys else { return nil }
        do {
            return try CurveServerSecurity.load(
                secretKeyFile: secret, authorizedKeysDirectory: folder, workerKeysDirectory: workerKeys,
                adminKeysDirectory: adminKeys)
        } catch let error as ZMQKeyFileError {
            let flag =
                error.path == secret
                ? "--curve-secret-key"
                : error.path == workerKeys
                    ? "--worker-keys" : error.path == adminKeys ? "--admin-keys" : "--authorized-keys"
            throw CommandError("\(flag) \(error)")
        } catch {
            throw CommandError("--authorized-keys \(folder): \(error)")
        }
    }
}

/// Whether binding or connecting `endpoint` stays on this machine.
package func isLoopback(_ endpoint: String) -> Bool {
    if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
    guard endpoint.hasPrefix("tcp://") else { return false }
    let host = endpoint.dropFirst(6).split(separator: ":").dropLast().joined(separator: ":")
    return host.hasPrefix("127.") || host == "localhost" || host == "[::1]" || host == "::1"
}
