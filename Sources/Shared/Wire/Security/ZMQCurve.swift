import CZeroMQ
import Foundation

/// A 32-byte Curve25519 key, public or secret, shown as 40 Z85 characters.
package struct ZMQCurveKey: Hashable, Sendable, ZMQOptionValue, CustomStringConvertible {
    /// The raw 32 bytes.
    package let bytes: [UInt8]

    /// Wraps 32 raw bytes; nil for any other length.
    package init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    /// Decodes a 40-character Z85 key (surrounding whitespace ignored); nil if invalid.
    package init?(z85: String) {
        let text = z85.trimmingCharacters(in: .whitespacesAndNewlines)
        let utf8 = Array(text.utf8)
        let alphabet = Array(
            "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8)
        guard utf8.count == 40, utf8.allSatisfy(alphabet.contains) else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        let ok = out.withUnsafeMutableBufferPointer { zmq_z85_decode($0.baseAddress, text) != nil }
        guard ok else { return nil }
        self.bytes = out
    }

    /// The 40-character Z85 text.
    package var z85: String {
        var text = [CChar](repeating: 0, count: 41)
        _ = bytes.withUnsafeBufferPointer { zmq_z85_encode(&text, $0.baseAddress, 32) }
        return String(decoding: text.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Only the Z85 form (do not log secret keys).
    package var description: String { z85 }

    package func withOptionBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes(body)
    }
    package init(optionBytes: UnsafeRawBufferPointer) {
        self.bytes = optionBytes.count == 32 ? Array(optionBytes) : [UInt8](repeating: 0, count: 32)
    }
    package static var optionBufferSize: Int { 32 }
}

/// A CURVE long-term key pair.
package struct ZMQCurveKeyPair: Hashable, Sendable {
    package var publicKey: ZMQCurveKey
    package var secretKey: ZMQCurveKey

    package init(publicKey: ZMQCurveKey, secretKey: ZMQCurveKey) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }
}

/// Errors reading or writing key files.
package struct ZMQKeyFileError: Error, CustomStringConvertible, Sendable {
    package var path: String
    package var reason: String
    package var description: String { "\(path): \(reason)" }
}

/// CurveZMQ helpers: key generation, key files, and socket setup.
///
/// Key files are small text files in the spirit of czmq's certificates:
///
///     # Tessera CURVE public key
///     public-key = "<40 Z85 characters>"
///
/// `NAME.pub` holds the public key (share it, put it in the coordinator's
/// authorized-keys folder); `NAME.key` holds both keys and is created with mode 0600.
/// A file holding just the 40 Z85 characters is also read as a public key.
package enum ZMQCurve {
    /// Whether this libzmq has CURVE (`zmq_has("curve")`).
    package static var isAvailable: Bool { ZMQContext.has("curve") }

    /// A fresh key pair (`zmq_curve_keypair`).
    package static func keypair() throws -> ZMQCurveKeyPair {
        var publicText = [CChar](repeating: 0, count: 41)
        var secretText = [CChar](repeating: 0, count: 41)
        try ZMQCall.check { zmq_curve_keypair(&publicText, &secretText) }
        func key(_ text: [CChar]) -> ZMQCurveKey {
            ZMQCurveKey(z85: String(decoding: text.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self))!
        }
        return ZMQCurveKeyPair(publicKey: key(publicText), secretKey: key(secretText))
    }

    /// Writes `NAME.pub` (mode 0644) and `NAME.key` (mode 0600) into `directory`.
    /// Unless `replace`, an existing file of either name is an error and nothing is
    /// written; with `replace`, each file is written aside and renamed over the old one.
    /// Returns the two paths.
    @discardableResult
    package static func writeKeyFiles(
        _ pair: ZMQCurveKeyPair, name: String, directory: String,
        replace: Bool = false
    ) throws
        -> (publicPath: String, secretPath: String)
    {
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
            throw ZMQKeyFileError(path: name, reason: "invalid key name")
        }
        let base = (directory as NSString).appendingPathComponent(name)
        let publicPath = base + ".pub", secretPath = base + ".key"
        let publicText = "# Tessera CURVE public key '\(name)'\npublic-key = \"\(pair.publicKey.z85)\"\n"
        let secretText =
            "# Tessera CURVE secret key '\(name)': keep private\n"
            + "public-key = \"\(pair.publicKey.z85)\"\nsecret-key = \"\(pair.secretKey.z85)\"\n"
        if !replace {
            for path in [secretPath, publicPath] where access(path, F_OK) == 0 {
                throw ZMQKeyFileError(path: path, reason: "already exists")
            }
        }
        for (path, text, mode) in [(secretPath, secretText, mode_t(0o600)), (publicPath, publicText, mode_t(0o644))] {
            if replace {
                let temp = "\(path).tmp-\(getpid())"
                unlink(temp)
                try createFile(temp, contents: text, mode: mode)
                guard rename(temp, path) == 0 else {
                    let reason = String(cString: strerror(errno))
                    unlink(temp)
                    throw ZMQKeyFileError(path: path, reason: reason)
                }
            } else {
                try createFile(path, contents: text, mode: mode)
            }
        }
        return (publicPath, secretPath)
    }

    /// Reads the public key of a `.pub` or `.key` file.
    package static func readPublicKey(path: String) throws -> ZMQCurveKey {
        try publicKey(path: path, try readFields(path: path))
    }

    private static func publicKey(path: String, _ fields: [String: String]) throws -> ZMQCurveKey {
        guard let text = fields["public-key"], let key = ZMQCurveKey(z85: text) else {
            throw ZMQKeyFileError(path: path, reason: "no valid public-key")
        }
        return key
    }

    /// Reads the key pair of a `.key` file, whose public key must be its secret key's.
    package static func readKeyPair(path: String) throws -> ZMQCurveKeyPair {
        let fields = try readFields(path: path)
        guard let p = fields["public-key"].flatMap(ZMQCurveKey.init(z85:)),
            let s = fields["secret-key"].flatMap(ZMQCurveKey.init(z85:))
        else { throw ZMQKeyFileError(path: path, reason: "needs valid public-key and secret-key") }
        // A damaged or hand-edited pair was accepted, and every handshake then failed blaming the server's key
        // (CURVE audit 30 F02).
        guard publicKey(of: s) == p else {
            throw ZMQKeyFileError(
                path: path,
                reason: "its secret-key does not match its public-key (the file is damaged or was edited): make a "
                    + "new pair with keygen")
        }
        return ZMQCurveKeyPair(publicKey: p, secretKey: s)
    }

    /// The public key of `secret` (`zmq_curve_public`); nil if libzmq cannot derive it.
    static func publicKey(of secret: ZMQCurveKey) -> ZMQCurveKey? {
        var publicText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicText, secret.z85) == 0 else { return nil }
        return ZMQCurveKey(z85: String(decoding: publicText.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// Loads every `*.pub` and `*.key` file in `directory` as an allow-list entry: public key → key name (file
    /// name without extension), used as the ZAP User-Id. Unreadable or invalid files are reported through `onSkip`
    /// and skipped, and so are (CURVE audit 30):
    /// - files holding a secret key (a copied `NAME.key`): they were let in silently, and a secret has no place in a
    ///   folder others may read (F08);
    /// - a key listed under two names: the name sorting last became its identity, silently, and with it another
    ///   key's jobs (F01). Both files are skipped, so the key gets in under no name until one is removed.
    ///
    /// `cache`: what an earlier load read, by file; a file whose `KeyFolderCache.Stamp` is unchanged is not read again
    /// (CURVE audit 30 F12: a folder of 20 000 keys was read whole every 2 s, and `status` took 0.4–0.6 s).
    package static func loadAuthorizedKeys(
        directory: String, cache: inout KeyFolderCache,
        onSkip: (ZMQKeyFileError) -> Void = { _ in }
    ) throws -> [ZMQCurveKey: String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        var files: [ZMQCurveKey: [String]] = [:]
        var read = KeyFolderCache()
        for file in names where file.hasSuffix(".pub") || file.hasSuffix(".key") {
            let path = (directory as NSString).appendingPathComponent(file)
            // "anonymous" is what a connection without CURVE is called: jobs under it are
            // everyone's, so no key may take that name.
            if (file as NSString).deletingPathExtension == "anonymous" {
                onSkip(
                    ZMQKeyFileError(
                        path: path, reason: "the name anonymous is reserved (it means no CURVE): rename the key"))
                continue
            }
            if let problem = keyNameProblem(String(file.dropLast(4))) {  // ".pub"/".key" off (NSString keeps ".pub")
                onSkip(ZMQKeyFileError(path: path, reason: problem))
                continue
            }
            let stamp = KeyFolderCache.Stamp(path: path)
            let outcome: Result<ZMQCurveKey, ZMQKeyFileError>
            if let stamp, let earlier = cache.files[file], earlier.stamp == stamp {
                outcome = earlier.outcome
            } else {
                outcome = Result { try publicKeyOfListedFile(path) }.mapError {
                    $0 as? ZMQKeyFileError ?? ZMQKeyFileError(path: path, reason: "\($0)")
                }
            }
            if let stamp { read.files[file] = (stamp, outcome) }
            switch outcome {
            case .success(let key): files[key, default: []].append(file)
            case .failure(let error): onSkip(error)
            }
        }
        cache = read
        var keys: [ZMQCurveKey: String] = [:]
        for (key, held) in files {
            guard held.count == 1 else {
                for file in held {
                    onSkip(
                        ZMQKeyFileError(
                            path: (directory as NSString).appendingPathComponent(file),
                            reason: "the same public key as \(held.filter { $0 != file }.joined(separator: ", ")): a "
                                + "key has one name (its identity, the owner of its jobs); it is refused until one "
                                + "of the files is removed"))
                }
                continue
            }
            keys[key] = String(held[0].dropLast(4))
        }
        return keys
    }

    /// Makes `socket` a CURVE server with `pair` (set before `bind`). Clients are
    /// authenticated only if a `ZAPHandler` runs in the same context and `zapDomain`
    /// is set: without a handler libzmq accepts any client key.
    package static func configureServer(
        _ socket: borrowing ZMQSocket, pair: ZMQCurveKeyPair,
        zapDomain: String = "tessera"
    ) throws {
        try socket.set(.curveServer, true)
        try socket.set(.curveSecretKey, pair.secretKey)
        try socket.set(.zapDomain, zapDomain)
    }

    /// Makes `socket` a CURVE client of the server with `serverKey` (set before `connect`).
    package static func configureClient(
        _ socket: borrowing ZMQSocket, pair: ZMQCurveKeyPair,
        serverKey: ZMQCurveKey
    ) throws {
        try socket.set(.curveServerKey, serverKey)
        try socket.set(.curvePublicKey, pair.publicKey)
        try socket.set(.curveSecretKey, pair.secretKey)
    }

    /// Why a key folder's file stem cannot be a key's name (its identity in logs, `status` and job records), or nil.
    /// `keygen` makes names of letters, digits, '.', '_' and '-'; a copied file may be named otherwise, and names
    /// such as `alice@lab` stay accepted, but not an empty one or one with a space or a control character (paths
    /// audit 41 F11: a newline in a name split `status` lines and log records).
    package static func keyNameProblem(_ stem: String) -> String? {
        if stem.isEmpty { return "the file has no name before .pub/.key: a key's name is its identity" }
        let unsafe = CharacterSet.controlCharacters.union(.whitespacesAndNewlines).union(.illegalCharacters)
        if stem.unicodeScalars.contains(where: unsafe.contains) {
            return "the name holds a space or a control character: rename the file (keygen's names use letters, "
                + "digits, '.', '_' and '-')"
        }
        return nil
    }

    /// `loadAuthorizedKeys` without a cache (every file read).
    package static func loadAuthorizedKeys(
        directory: String, onSkip: (ZMQKeyFileError) -> Void = { _ in }
    ) throws -> [ZMQCurveKey: String] {
        var cache = KeyFolderCache()
        return try loadAuthorizedKeys(directory: directory, cache: &cache, onSkip: onSkip)
    }

    /// The public key a file of a key folder lists; throws for a secret key, which has no place there.
    private static func publicKeyOfListedFile(_ path: String) throws -> ZMQCurveKey {
        let fields = try readFields(path: path)
        guard fields["secret-key"] == nil else {
            throw ZMQKeyFileError(
                path: path,
                reason: "it holds a secret key: only public keys (NAME.pub) belong in this folder; keep "
                    + "NAME.key private (and make a new pair if others could read it here)")
        }
        return try publicKey(path: path, fields)
    }

    // MARK: Files

    private static func readFields(path: String) throws -> [String: String] {
        // Each cause in words (CURVE audit 30 F11: a folder, a dangling link, a large file and a missing one all read
        // "unreadable or not UTF-8").
        var info = stat()
        guard stat(path, &info) == 0 else {
            let dangling = lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
            throw ZMQKeyFileError(
                path: path, reason: dangling ? "a symbolic link to nothing" : String(cString: strerror(errno)))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw ZMQKeyFileError(
                path: path, reason: (info.st_mode & S_IFMT) == S_IFDIR ? "a folder, not a key file" : "not a file")
        }
        guard info.st_size <= 64 * 1024 else {
            throw ZMQKeyFileError(path: path, reason: "\(info.st_size) bytes: a key file holds under 1 KB")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ZMQKeyFileError(path: path, reason: String(cString: strerror(errno)))
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ZMQKeyFileError(path: path, reason: "not a text file (not UTF-8)")
        }
        var fields: [String: String] = [:]
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            // A bare key first: the Z85 alphabet itself contains "=".
            if line.count == 40, ZMQCurveKey(z85: line) != nil {
                if fields["public-key"] == nil { fields["public-key"] = line }
                continue
            }
            if let eq = line.firstIndex(of: "=") {
                let name = line[..<eq].trimmingCharacters(in: .whitespaces)
                var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                    value = String(value.dropFirst().dropLast())
                }
                fields[name] = value
            }
        }
        return fields
    }

    private static func createFile(_ path: String, contents: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw ZMQKeyFileError(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        // The umask may have narrowed `mode`; make it exact.
        _ = fchmod(fd, mode)
        let bytes = Array(contents.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ZMQKeyFileError(path: path, reason: String(cString: strerror(errno)))
            }
            written += n
        }
        guard fsync(fd) == 0 else { throw ZMQKeyFileError(path: path, reason: String(cString: strerror(errno))) }
    }
}

/// What `ZMQCurve.loadAuthorizedKeys` read from each file of a key folder, with the file's identity and times
/// when it was read.
package struct KeyFolderCache: Sendable {
    /// A file as `stat` (through links) sees it: another file, or any write or rename, changes it.
    package struct Stamp: Equatable, Sendable {
        var device: UInt64, inode: UInt64, size: Int64
        var modified: Int, modifiedNanoseconds: Int, changed: Int, changedNanoseconds: Int

        /// Nil: the file cannot be `stat`ed (it is then read, and the reason reported, every time).
        init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            modified = info.st_mtim.tv_sec
            modifiedNanoseconds = info.st_mtim.tv_nsec
            changed = info.st_ctim.tv_sec
            changedNanoseconds = info.st_ctim.tv_nsec
        }
    }

    var files: [String: (stamp: Stamp, outcome: Result<ZMQCurveKey, ZMQKeyFileError>)] = [:]

    package init() {}
}
