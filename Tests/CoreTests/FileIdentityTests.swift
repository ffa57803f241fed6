import Foundation
import Testing

@testable import TesseraCore

/// How a shared image is told apart from one replaced or rewritten while its job ran.
@Suite("File identity")
struct FileIdentityTests {
    @Test("A recorded identity reads back; another device number alone is the same file, any other change is not")
    func recordedAndCompared() throws {
        let path = NSTemporaryDirectory() + "identity-\(getpid()).bin"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        let now = try #require(FileIdentity(path: path))
        let recorded = try #require(FileIdentity(recorded: now.description))
        #expect(recorded == now && recorded.isSameFile(as: now))
        // Review 31 F5: an NFS share mounted again gives its files another st_dev.
        let remounted = FileIdentity(
            device: now.device &+ 7, inode: now.inode, size: now.size, seconds: now.seconds,
            nanoseconds: now.nanoseconds)
        #expect(remounted != now && remounted.isSameFile(as: now))
        for other in [
            FileIdentity(
                device: now.device, inode: now.inode &+ 1, size: now.size, seconds: now.seconds,
                nanoseconds: now.nanoseconds),
            FileIdentity(
                device: now.device, inode: now.inode, size: now.size + 1, seconds: now.seconds,
                nanoseconds: now.nanoseconds),
            FileIdentity(
                device: now.device, inode: now.inode, size: now.size, seconds: now.seconds,
                nanoseconds: (now.nanoseconds + 1) % 1_000_000_000),
        ] {
            #expect(!other.isSameFile(as: now), "\(other)")
        }
        // Rewritten in place (same inode, another size and time): not the same file.
        usleep(10_000)
        try Data([1, 2, 3, 4]).write(to: URL(fileURLWithPath: path))
        #expect(FileIdentity(path: path).map { !$0.isSameFile(as: now) } == true)
        #expect(FileIdentity(recorded: "device 1, inode 2") == nil && FileIdentity(recorded: "") == nil)
        #expect(
            FileIdentity(recorded: "device 1, inode 2, 3 bytes, modified at 4.000000005 s")
                == FileIdentity(device: 1, inode: 2, size: 3, seconds: 4, nanoseconds: 5))
    }
}
