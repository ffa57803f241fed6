#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Unix socket file of an `ipc://PATH` endpoint. libzmq deletes whatever is at PATH before it binds and leaves
/// the socket file after it closes (paths audit 41 F12). So a second coordinator given the first's `ipc://` path took
/// the endpoint from the running one without a word, and a path naming a regular file deleted the file. `bind`
/// refuses both (`checkFree`), and a closing socket removes the files it made (`removeIfUnchanged`).
struct IPCSocketFile {
    let path: String
    let device: UInt64
    let inode: UInt64

    /// The file path of an `ipc://` endpoint that names one: not `ipc://*` (libzmq picks a name) nor Linux's
    /// abstract `ipc://@name`; nil for other transports.
    static func path(of endpoint: String) -> String? {
        guard endpoint.hasPrefix("ipc://") else { return nil }
        let path = String(endpoint.dropFirst("ipc://".count))
        return path.isEmpty || path.hasPrefix("*") || path.hasPrefix("@") ? nil : path
    }

    /// Throws `ZMQError` (with `context`) when binding `path` would delete what is there: a file that is not a
    /// socket (`EEXIST`), or a socket a running process listens on (`EADDRINUSE`). A socket nobody listens on is
    /// one a stopped process left: libzmq replaces it.
    static func checkFree(_ path: String, context: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }  // nothing there (or unreachable: bind says why)
        var error = ZMQError(rawValue: EEXIST)
        error.context = context
        guard info.st_mode & S_IFMT == S_IFSOCK else { throw error }
        if listening(path) {
            error = ZMQError.addressInUse
            error.context = context
            throw error
        }
    }

    /// Whether a process accepts connections on the Unix socket `path`.
    private static func listening(_ path: String) -> Bool {
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return false }  // bind reports the over-long path
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        // Refused (or gone): nobody listens. Accepted, or a full backlog (EAGAIN): someone does.
        return connected == 0 || errno == EAGAIN
    }

    /// The socket file at `path` now, if it is one.
    init?(at path: String) {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return nil }
        self.path = path
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }

    /// Removes the file if it is still this socket (not one another process bound since).
    func removeIfUnchanged() {
        guard let now = IPCSocketFile(at: path), now.device == device, now.inode == inode else { return }
        unlink(path)
    }
}

/// The socket files a `ZMQSocket` bound (see `IPCSocketFile`). Used from the socket's thread only.
final class BoundSocketFiles: @unchecked Sendable {
    var files: [IPCSocketFile] = []
}
