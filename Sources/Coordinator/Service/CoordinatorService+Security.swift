import Foundation
import Logging
import TesseraCluster
import TesseraWire

/// Socket authentication of the coordinator (docs/ARCHITECTURE.md §9).
///
/// Both ROUTERs always get a ZAP domain and a ZAP handler runs in the context:
/// - without CURVE (`configuration.curve == nil`) the handler allows every peer: that
///   alone makes libzmq refuse ZMTP 1.0 framing, so random bytes never reach the app;
/// - with CURVE the sockets are CURVE servers and the handler lets in only the public
///   keys of the authorized-keys folder (re-read every 2 s) and the coordinator's own;
///   every refusal is logged (rate-limited) with the peer's address and key;
/// - roles: with `--worker-keys` only those keys pass on the worker endpoint; with
///   `--admin-keys` those keys pass on the client endpoint as `admin/NAME`, and may
///   see, cancel and fetch every job (`CoordinatorLoop.notYours`).
///
/// It fails closed: if the ZAP handler stops answering, the service stops (its
/// endpoints close, `failure` says why) rather than run on with libzmq letting
/// every CURVE client in.
extension CoordinatorService {
    /// The ZAP domains of the two endpoints: the handler tells workers from clients by them.
    static let workerDomain = "tessera-workers"
    static let clientDomain = "tessera-clients"

    /// The User-Id of an admin key: a key's name is a file name, which cannot hold a
    /// "/", so no ordinary key can pass for an admin.
    static let adminPrefix = "admin/"
    static func adminUserID(_ name: String) -> String { adminPrefix + name }
    static func isAdmin(_ userID: String?) -> Bool { userID?.hasPrefix(adminPrefix) ?? false }

    /// Starts the ZAP handler for this service's context. Call before binding.
    func startAuthentication() throws -> ZAPHandler {
        let policy: ZAPPolicy
        if let curve = configuration.curve {
            let logger = self.logger
            if let warning = Self.keyFolderWarning(curve.authorizedKeysDirectory) {
                logger.warning("authorized-keys: \(warning)", metadata: ["folder": "\(curve.authorizedKeysDirectory)"])
            }
            let onSkip: @Sendable (ZMQKeyFileError) -> Void = { error in
                logger.warning(
                    "keys: cannot use a key file or folder",
                    metadata: ["path": "\(error.path)", "reason": "\(error.reason)"])
            }
            let clients = AuthorizedKeysPolicy(curve, onSkip: onSkip)
            // Roles: with --worker-keys, only those keys join as workers (not even the
            // coordinator's own key), and they are not clients.
            let workers = curve.workerKeysDirectory.map {
                AuthorizedKeysPolicy(curve, directory: $0, includingOwnKey: false, onSkip: onSkip)
            }
            if let dir = curve.workerKeysDirectory, let warning = Self.keyFolderWarning(dir) {
                logger.warning("worker-keys: \(warning)", metadata: ["folder": "\(dir)"])
            }
            // Admin keys: client endpoint only, never the coordinator's own key implicitly.
            let admins = curve.adminKeysDirectory.map {
                AuthorizedKeysPolicy(curve, directory: $0, includingOwnKey: false, onSkip: onSkip)
            }
            if let dir = curve.adminKeysDirectory, let warning = Self.keyFolderWarning(dir) {
                logger.warning("admin-keys: \(warning)", metadata: ["folder": "\(dir)"])
            }
            // Read now, so that broken key files are reported at the start, not at the first handshake (CURVE audit
            // 30 F11).
            _ = (clients.current(), workers?.current(), admins?.current())
            // Checked at every handshake too (`decide`): such a key is refused in both roles. At the start it was a
            // fatal error, so a crash restart after the key was added while serving kept the coordinator down
            // (CURVE audit 30 F05).
            if let workers, let admins {
                for (key, name) in workers.current() where admins.name(of: key) != nil {
                    logger.error(
                        "keys: \(Self.bothRoles(name))", metadata: ["folder": "\(curve.adminKeysDirectory ?? "")"])
                }
            }
            policy = ZAPPolicy { request in
                Self.decide(request, clients: clients, workers: workers, admins: admins)
            }
            keyStillAuthorized.withLock {
                $0 = { userID, key, workerEndpoint in
                    Self.stillAuthorized(
                        userID, key: key, workerEndpoint: workerEndpoint, clients: clients, workers: workers,
                        admins: admins)
                }
            }
        } else {
            policy = .allowAll
        }
        // Refusals are logged on the handler's thread, and counted by kind
        // (tessera_refusals_total{reason="auth-…"}: operators alert on key misuse).
        var log = RateLimitedLog(logger: logger)
        log.onEvent = { CoordinatorMetrics.refused($0) }
        let refusals = Locked(log)
        let logger = self.logger
        do {
            return try ZAPHandler(
                context: context, policy: policy,
                onRefusal: { request, reason in
                    // Rate-limited per kind of refusal: the reason names the peer's key, so a flood of fresh
                    // keys had a log line and a limiter entry each (security audit: 20 000 lines, memory
                    // never released).
                    refusals.withLock {
                        $0.warning(
                            Self.refusalKind(reason), "refused a connection (ZAP)",
                            metadata: [
                                "address": "\(request.address)", "mechanism": "\(request.mechanism)",
                                "reason": "\(reason)",
                            ])
                    }
                },
                onFailure: { [weak self] error in
                    logger.critical(
                        "the authentication (ZAP) handler failed: stopping, so that no connection is let in unchecked",
                        metadata: ["error": "\(error)"])
                    self?.fail(ClusterError("the authentication (ZAP) handler failed: \(error)"))
                })
        } catch {
            throw ClusterError("cannot start the authentication (ZAP) handler: \(error)")
        }
    }

    /// The metric label of a ZAP refusal: its reason without the key.
    static func refusalKind(_ reason: String) -> String {
        if reason.hasPrefix("unlisted public key") { return "auth-unlisted-key" }
        if reason.contains(" may not ") { return "auth-role" }
        return "auth-other"
    }

    /// Who may connect where. Roles are exclusive: an admin key never joins as a worker,
    /// and with `--worker-keys` a worker key is never a client (nor an admin) and only
    /// worker keys join as workers. Refusals say which role the key has.
    static func decide(
        _ request: ZAPRequest, clients: AuthorizedKeysPolicy, workers: AuthorizedKeysPolicy?,
        admins: AuthorizedKeysPolicy?
    ) -> ZAPDecision {
        guard request.mechanism == "CURVE", let key = request.curvePublicKey else {
            return clients.policy.decide(request)  // refused, with the reason
        }
        let admin = admins?.name(of: key)
        let worker = workers?.name(of: key)
        if let worker, admin != nil { return .deny(reason: bothRoles(worker)) }
        if let conflict = identityConflict(key, clients: clients, admins: admins) { return .deny(reason: conflict) }
        if request.domain == workerDomain {
            if let admin { return .deny(reason: "admin key \(admin) may not join as a worker") }
            guard let workers else { return clients.policy.decide(request) }
            if let worker { return .allow(userID: worker) }
            if let client = clients.name(of: key) {
                return .deny(reason: "client key \(client) may not join as a worker (not in --worker-keys)")
            }
            return workers.policy.decide(request)
        }
        if let worker { return .deny(reason: "worker key \(worker) may not connect as a client") }
        if let admin { return .allow(userID: adminUserID(admin)) }
        return clients.policy.decide(request)
    }

    /// Why a key in both the worker and the admin folder is refused.
    static func bothRoles(_ name: String) -> String {
        "the key \(name) is in both --worker-keys and --admin-keys: refused in both roles (a worker key sits on every "
            + "worker machine, so it may not be an admin); keep it in one role's folder"
    }

    /// Why `key` has no single identity across the client folders (`--authorized-keys`, `--admin-keys`), or nil: a
    /// job's owner is a name, whichever folder held it (`CoordinatorLoop.submitted(by:owner:)`), so a name must be
    /// one key's, and a key must have one name (verification audit 32 N3: a user's key listed under another name in
    /// the admin folder became that admin, silently).
    static func identityConflict(
        _ key: ZMQCurveKey, clients: AuthorizedKeysPolicy, admins: AuthorizedKeysPolicy?
    ) -> String? {
        guard let admins else { return nil }
        let (user, admin) = (clients.name(of: key), admins.name(of: key))
        if let user, let admin, user != admin {
            return "the key is \(user) in --authorized-keys and \(admin) in --admin-keys: a key has one name (the "
                + "owner of its jobs); it is refused until one file is removed or renamed"
        }
        for (name, other) in [(user, admins), (admin, clients)] {
            if let name, let holder = other.key(named: name), holder != key {
                return "the name \(name) is held by another key in the other client folder (--authorized-keys, "
                    + "--admin-keys): a name is one key's (the owner of its jobs); it is refused until one is renamed"
            }
        }
        return nil
    }

    /// Whether the key a connection was let in with (its User-Id: the key's name, `admin/NAME` for an
    /// admin) is still in its role's folder: revoking a key (deleting its `.pub`) also ends what its
    /// open connections may do (operator audit: a revoked worker kept receiving tasks, a revoked
    /// client finished its download). With the connection's `key` (the ZAP handler's metadata), the name
    /// must still belong to that key: a key replaced under the same name (a rotation after a leak) ends the
    /// old key's connections too (ops audit: they kept working).
    static func stillAuthorized(
        _ userID: String, key: String?, workerEndpoint: Bool, clients: AuthorizedKeysPolicy,
        workers: AuthorizedKeysPolicy?, admins: AuthorizedKeysPolicy?
    ) -> Bool {
        func holds(_ policy: AuthorizedKeysPolicy?, _ name: String) -> Bool {
            guard let keys = policy?.current() else { return false }
            guard let key, let curve = ZMQCurveKey(z85: key) else { return keys.values.contains(name) }
            // A key that gained a conflicting role or name since it connected is refused as at a handshake.
            if workers?.name(of: curve) != nil, admins?.name(of: curve) != nil { return false }
            if !workerEndpoint, identityConflict(curve, clients: clients, admins: admins) != nil { return false }
            return keys[curve] == name
        }
        if workerEndpoint { return holds(workers ?? clients, userID) }
        if isAdmin(userID) { return holds(admins, String(userID.dropFirst(adminPrefix.count))) }
        return holds(clients, userID)
    }

    /// Why the authorized-keys folder is unsafe, or nil: whoever can write in it can
    /// let any key in, so a folder writable by its group or by everyone is reported.
    /// A read-only mount is safe whatever its mode (Kubernetes mounts a Secret volume
    /// read-only with mode 1777).
    static func keyFolderWarning(_ directory: String) -> String? {
        var info = stat()
        guard stat(directory, &info) == 0, info.st_mode & 0o022 != 0 else { return nil }
        var mount = statvfs()
        let readOnly = statvfs(directory, &mount) == 0 && mount.f_flag & UInt(ST_RDONLY) != 0
        // A Kubernetes Secret volume: a read-only tmpfs of mode 1777 that nobody writes.
        if readOnly && info.st_mode & S_ISVTX != 0 { return nil }
        let who = info.st_mode & 0o002 != 0 ? "everyone" : "its group"
        return "the folder is writable by \(who) (mode 0\(String(info.st_mode & 0o777, radix: 8))"
            + (readOnly ? ", read-only here: check the folder it is mounted from" : "") + "): "
            + "anyone who can write in it can authorize a key; make it writable by its owner only (chmod 755 or 700)"
    }

    /// Applies the authentication settings to a ROUTER before it binds.
    func secure(_ socket: borrowing ZMQSocket, domain: String) throws {
        if let curve = configuration.curve {
            try ZMQCurve.configureServer(socket, pair: curve.keyPair, zapDomain: domain)
        } else {
            try socket.set(.zapDomain, domain)
        }
    }
}
