import Foundation
import TesseraCore

/// What a CURVE server (the coordinator) needs: its own key pair and the folder of
/// public keys allowed in (one `NAME.pub` per worker or user; the name becomes the
/// connection's User-Id). The coordinator's own public key is always allowed, so a
/// health check can use the coordinator's key file as a client key.
package struct CurveServerSecurity: Sendable, Equatable {
    package var keyPair: ZMQCurveKeyPair
    package var authorizedKeysDirectory: String
    /// Roles: with a worker-keys folder, the keys of `authorizedKeysDirectory` are
    /// clients only and only these may join as workers; nil: every listed key may be either.
    package var workerKeysDirectory: String?
    /// Admin keys: let in on the client endpoint, and allowed every job (not only
    /// their own); nil: no admin.
    package var adminKeysDirectory: String?

    package init(
        keyPair: ZMQCurveKeyPair, authorizedKeysDirectory: String, workerKeysDirectory: String? = nil,
        adminKeysDirectory: String? = nil
    ) {
        self.keyPair = keyPair
        self.authorizedKeysDirectory = authorizedKeysDirectory
        self.workerKeysDirectory = workerKeysDirectory
        self.adminKeysDirectory = adminKeysDirectory
    }
}

/// What a CURVE client (worker or user) needs: its own key pair and the server's public key.
package struct CurveClientSecurity: Sendable, Equatable {
    package var keyPair: ZMQCurveKeyPair
    package var serverKey: ZMQCurveKey

    package init(keyPair: ZMQCurveKeyPair, serverKey: ZMQCurveKey) {
        self.keyPair = keyPair
        self.serverKey = serverKey
    }
}

extension CurveClientSecurity {
    /// Reads the client's key pair (`NAME.key`) and the server's public key (`.pub`,
    /// or the server's `.key`, whose public half is used). Errors name the file.
    package static func load(secretKeyFile: String, serverKeyFile: String) throws -> CurveClientSecurity {
        try CurveClientSecurity(
            keyPair: CurveKeyFiles.readSecret(secretKeyFile),
            serverKey: ZMQCurve.readPublicKey(path: serverKeyFile))
    }
}

extension CurveServerSecurity {
    /// Reads the server's key pair and checks the key folders: each must exist, and the
    /// folder of the keys that compute must list one valid key (empty, nobody could
    /// compute): the authorized-keys folder, or the worker-keys folder with roles. With
    /// roles, the authorized-keys and admin-keys folders may be empty (no users or admins yet).
    package static func load(
        secretKeyFile: String, authorizedKeysDirectory: String, workerKeysDirectory: String? = nil,
        adminKeysDirectory: String? = nil
    ) throws -> CurveServerSecurity {
        let pair = try CurveKeyFiles.readSecret(secretKeyFile)
        let folders: [(String?, String, Bool)] = [
            (authorizedKeysDirectory, "authorized-keys", workerKeysDirectory == nil),
            (workerKeysDirectory, "worker-keys", true), (adminKeysDirectory, "admin-keys", false),
        ]
        for case let (folder?, name, needsKey) in folders {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue
            else { throw ZMQKeyFileError(path: folder, reason: "not a folder (\(name): public keys)") }
            let keys = try ZMQCurve.loadAuthorizedKeys(directory: folder)
            guard !needsKey || !keys.isEmpty else {
                throw ZMQKeyFileError(
                    path: folder,
                    reason: "no valid *.pub key in the \(name) folder: "
                        + (name == "worker-keys" ? "no worker could join" : "nobody could connect"))
            }
        }
        return CurveServerSecurity(
            keyPair: pair, authorizedKeysDirectory: authorizedKeysDirectory, workerKeysDirectory: workerKeysDirectory,
            adminKeysDirectory: adminKeysDirectory)
    }
}

/// Key-file checks shared by servers and clients.
enum CurveKeyFiles {
    /// Reads a `.key` file, refusing one that other users can read or write.
    static func readSecret(_ path: String) throws -> ZMQCurveKeyPair {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ZMQKeyFileError(path: path, reason: String(cString: strerror(errno)))
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw ZMQKeyFileError(path: path, reason: "not a regular file") }
        // A public key given as the secret one (keygen writes NAME.pub next to NAME.key): say so,
        // rather than asking for a chmod that would not help.
        if path.hasSuffix(".pub"), let text = try? String(contentsOfFile: path, encoding: .utf8),
            !text.contains("secret-key")
        {
            throw ZMQKeyFileError(
                path: path, reason: "this is a public key (NAME.pub): give the secret one, NAME.key, made with it")
        }
        guard info.st_mode & 0o007 == 0 else {
            throw ZMQKeyFileError(
                path: path,
                reason: String(
                    format: "secret key file is accessible by other users (mode %o): chmod 600 it",
                    info.st_mode & 0o777))
        }
        return try ZMQCurve.readKeyPair(path: path)
    }
}

/// The ZAP policy of a CURVE coordinator: the keys of `directory` (never older than
/// `reloadSeconds` when a handshake or message asks, so adding or deleting a `.pub` file takes
/// effect without a restart) plus the server's own public key.
package final class AuthorizedKeysPolicy: Sendable {
    /// The allow-list as last read, shared by every handshake that asks for it.
    private struct Loaded: Sendable {
        var keys: [ZMQCurveKey: String] = [:] {
            didSet { byName = Dictionary(keys.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a }) }
        }
        /// `keys` by name (a name is one file's, so one key's).
        var byName: [String: ZMQCurveKey] = [:]
        var loadedAt = -Double.infinity
        /// Broken files already reported.
        var reported: Set<String> = []
        /// Whether the folder could not be read at the last reload (reported once).
        var unreadable = false
        /// The files as last read: only changed ones are read again.
        var cache = KeyFolderCache()
        /// A reload runs in the background.
        var reloading = false
        /// Counts the lists installed (a background reload installs its list only over the one it started from).
        var generation = 0
    }

    private let directory: String
    /// The server's own public key, allowed as "coordinator" (nil: not added).
    private let ownKey: ZMQCurveKey?
    private let reloadSeconds: Double
    private let loaded = Locked(Loaded())
    private let onSkip: @Sendable (ZMQKeyFileError) -> Void

    /// The keys of `directory` (default: the authorized-keys folder), and the server's
    /// own key unless `includingOwnKey` is false.
    package init(
        _ security: CurveServerSecurity, directory: String? = nil, includingOwnKey: Bool = true,
        reloadSeconds: Double = 2, onSkip: @escaping @Sendable (ZMQKeyFileError) -> Void
    ) {
        self.directory = directory ?? security.authorizedKeysDirectory
        ownKey = includingOwnKey ? security.keyPair.publicKey : nil
        self.reloadSeconds = reloadSeconds
        self.onSkip = onSkip
    }

    /// The current allow-list, never older than `reloadSeconds`: a call that finds it older reads the folder
    /// itself, one that finds it older than half that starts reading it again in the background and returns it as
    /// it is. So a coordinator with traffic (workers' heartbeats, clients) keeps it fresh off its threads (CURVE audit
    /// 30 F12: the folder was read whole by whichever handshake or message found the list stale, 0.4–0.6 s per
    /// `status` at 20 000 keys), and only changed files are read again (`KeyFolderCache`). The previous list is kept
    /// if the folder cannot be read.
    package func current() -> [ZMQCurveKey: String] {
        let (keys, refresh) = loaded.withLock { loaded -> ([ZMQCurveKey: String]?, Bool) in
            let age = monotonicSeconds() - loaded.loadedAt
            if age >= reloadSeconds { return (nil, false) }
            guard age >= reloadSeconds / 2, !loaded.reloading else { return (loaded.keys, false) }
            loaded.reloading = true
            return (loaded.keys, true)
        }
        if let keys {
            if refresh { DispatchQueue.global(qos: .utility).async { self.refreshInBackground() } }
            return keys
        }
        return loaded.withLock { loaded in
            if monotonicSeconds() - loaded.loadedAt >= reloadSeconds {
                reload(into: &loaded)
                loaded.generation += 1
            }
            return loaded.keys
        }
    }

    /// Reads the folder outside the lock, then installs the list unless a reload in a caller did meanwhile.
    private func refreshInBackground() {
        var fresh = loaded.withLock { $0 }
        reload(into: &fresh)
        loaded.withLock { loaded in
            loaded.reloading = false
            guard loaded.generation == fresh.generation else { return }
            fresh.reloading = false
            fresh.generation += 1
            loaded = fresh
        }
    }

    /// Reads the folder into `loaded`: its keys (the previous ones if the folder cannot be read), and each broken
    /// file reported once.
    private func reload(into loaded: inout Loaded) {
        let started = monotonicSeconds()
        var skipped: [ZMQKeyFileError] = []
        do {
            var fresh = try ZMQCurve.loadAuthorizedKeys(
                directory: directory, cache: &loaded.cache, onSkip: { skipped.append($0) })
            if let ownKey {
                // The coordinator's own key (its health check's) is "coordinator": another key of that
                // name shared its identity, and each saw the other's jobs (CURVE audit 30 F09).
                for (key, name) in fresh where name == Self.ownName && key != ownKey {
                    fresh[key] = nil
                    skipped.append(
                        ZMQKeyFileError(
                            path: "\(directory)/\(Self.ownName).pub",
                            reason: "the name \(Self.ownName) is this coordinator's own key's: rename the key"))
                }
                fresh[ownKey] = fresh[ownKey] ?? Self.ownName
            }
            loaded.keys = fresh
            loaded.unreadable = false
        } catch {
            // A removed folder or an unmounted secret must not pass unnoticed (nor revoke silently).
            if !loaded.unreadable {
                skipped.append(
                    ZMQKeyFileError(
                        path: directory,
                        reason: "cannot read the folder (\(error)): the \(loaded.keys.count) key(s) read last "
                            + "stay in force until it can be read again"))
            }
            loaded.unreadable = true
        }
        // Report each broken file once, not at every reload.
        for error in skipped where !loaded.reported.contains(error.path) { onSkip(error) }
        loaded.reported = Set(skipped.map(\.path))
        loaded.loadedAt = started
    }

    /// The name the server's own key has.
    package static let ownName = "coordinator"

    /// The name of `key` in the current list, or nil.
    package func name(of key: ZMQCurveKey) -> String? { current()[key] }

    /// The key named `name` in the current list, or nil (a lookup, not a scan: it is asked per message).
    package func key(named name: String) -> ZMQCurveKey? {
        _ = current()
        return loaded.withLock { $0.byName[name] }
    }

    package var policy: ZAPPolicy {
        ZAPPolicy { [self] request in ZAPPolicy.allowList(current()).decide(request) }
    }
}
