import ArgumentParser
import Foundation
import TesseraCluster
import TesseraCore
import TesseraWire

/// `tessera-coordinator keygen NAME`: a CURVE key pair for the coordinator, a worker or a user.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub (public).",
        discussion: """
            Give the coordinator its own pair (serve --curve --curve-secret-key coordinator.key) and \
            every worker or user theirs (--curve --curve-secret-key NAME.key --curve-server-key \
            coordinator.pub). Copy each NAME.pub that may connect into the coordinator's \
            --authorized-keys folder; NAME is the identity the coordinator logs. Never copy a .key file \
            to another machine than the one it identifies.

            Example: tessera-coordinator keygen worker-gpu1 --out keys/
            """
    )

    @Argument(
        help: ArgumentHelp(
            "Key name: the files' stem and the identity the coordinator logs "
                + "(letters, digits, '.', '_', '-').", valueName: "name"))
    var name: String
    @Option(help: ArgumentHelp("Folder for the two files (created with mode 0700 when missing).", valueName: "dir"))
    var out = "."
    @Flag(help: "Replace existing files of the same name.") var force = false

    func validate() throws {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "._-"))
        guard !name.isEmpty, !name.hasPrefix("."), name.unicodeScalars.allSatisfy(allowed.contains) else {
            throw ValidationError("key name '\(name)': use letters, digits, '.', '_' and '-' (not starting with '.')")
        }
        guard name != "anonymous" else {
            throw ValidationError("key name 'anonymous' is reserved: it means a connection without CURVE")
        }
    }

    func run() throws {
        guard ZMQCurve.isAvailable else { throw ClusterError("this libzmq was built without CURVE") }
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) {
            // Each missing folder 0700, with the system's reason (paths audit 41 F9: Foundation's "The operation
            // could not be completed. (NSCocoaErrorDomain error 512.)" for a file on the path).
            var missing: [String] = []
            var folder = out
            while !FileManager.default.fileExists(atPath: folder) && folder != "/" && !folder.isEmpty {
                missing.append(folder)
                folder = parentPath(folder)
            }
            for folder in missing.reversed() where mkdir(folder, 0o700) != 0 && errno != EEXIST {
                throw ClusterError(
                    "--out \(out): cannot create the folder \(folder): \(String(cString: strerror(errno)))")
            }
        } else if !isDirectory.boolValue {
            throw ClusterError("--out \(out): not a folder")
        }
        let pair = try ZMQCurve.keypair()
        let paths: (publicPath: String, secretPath: String)
        do {
            paths = try ZMQCurve.writeKeyFiles(pair, name: name, directory: out, replace: force)
        } catch let error as ZMQKeyFileError where error.reason == "already exists" {
            throw ClusterError(
                "\(error.path) already exists: pass --force to replace it (and redistribute the new key)")
        } catch let error as ZMQKeyFileError {
            throw ClusterError("\(error)")
        }
        print("secret key: \(paths.secretPath) (keep it private)")
        print("public key: \(paths.publicPath) \(pair.publicKey.z85)")
    }
}
