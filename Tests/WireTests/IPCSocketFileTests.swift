import Foundation
import Testing

@testable import TesseraWire

/// `ipc://PATH` endpoints (paths audit 41 F12): libzmq deletes whatever is at PATH before it binds, so a second
/// coordinator on a running one's path took its endpoint without a word and a regular file there was deleted; and
/// the socket file stayed after a clean stop.
@Suite("ipc:// socket files")
struct IPCSocketFileTests {
    @Test(
        "a file that is not a socket is kept and refused; a live socket is refused; a stale one is replaced; closing removes the file"
    )
    func bindChecks() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ipc-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let context = try ZMQContext()

        let file = dir + "/data.txt"
        try "precious".write(toFile: file, atomically: true, encoding: .utf8)
        let first = try ZMQSocket(context, type: .router)
        #expect {
            try first.bind("ipc://" + file)
        } throws: { error in
            (error as? ZMQError)?.rawValue == EEXIST && "\(error)".contains("which listening would delete")
        }
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "precious")

        let path = dir + "/c.sock"
        try first.bind("ipc://" + path)
        let second = try ZMQSocket(context, type: .router)
        #expect {
            try second.bind("ipc://" + path)
        } throws: { error in
            (error as? ZMQError) == .addressInUse && "\(error)".contains("stop it, or pick another path")
        }
        // The first still serves its path.
        let client = try ZMQSocket(context, type: .dealer)
        try client.connect("ipc://" + path)
        try client.send([Array("hi".utf8)])
        #expect(try first.waitForMessage(timeoutMilliseconds: 5000))
        first.close()
        #expect(!FileManager.default.fileExists(atPath: path), "the socket file stayed after close")

        // A socket file nobody listens on (a killed process's) is replaced.
        let stale = dir + "/stale.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(stale.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0)
        close(fd)
        #expect(FileManager.default.fileExists(atPath: stale))
        try second.bind("ipc://" + stale)
        second.close()
        #expect(!FileManager.default.fileExists(atPath: stale))
    }
}
