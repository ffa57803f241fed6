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
        #expect(now.changed != nil && recorded.changed == now.changed, "\(now)")
        // Review 31 F5: an NFS share mounted again gives its files another st_dev (the server keeps the rest).
        let remounted = FileIdentity(
            device: now.device &+ 7, inode: now.inode, size: now.size, seconds: now.seconds,
            nanoseconds: now.nanoseconds, changed: now.changed)
        #expect(remounted != now && remounted.isSameFile(as: now))
        // Review 34 F3: on another device, a file of the same inode number, size and modification time made at
        // another moment (a fresh file system numbers its inodes alike) is another file.
        let other = try #require(now.changed)
        let swapped = FileIdentity(
            device: now.device &+ 7, inode: now.inode, size: now.size, seconds: now.seconds,
            nanoseconds: now.nanoseconds, changed: .init(seconds: other.seconds + 1, nanoseconds: other.nanoseconds))
        #expect(!swapped.isSameFile(as: now))
        // On the same device the change time is not compared (a chmod changes it), nor in equality.
        let chmodded = FileIdentity(
            device: now.device, inode: now.inode, size: now.size, seconds: now.seconds,
            nanoseconds: now.nanoseconds, changed: .init(seconds: other.seconds + 1, nanoseconds: 0))
        #expect(chmodded.isSameFile(as: now) && chmodded == now)
        // Recorded before the change time was (10 words): a device change alone is taken for a remount.
        let old = try #require(
            FileIdentity(
                recorded: "device \(now.device &+ 7), inode \(now.inode), \(now.size) bytes, modified at "
                    + "\(now.seconds).\(String(format: "%09d", now.nanoseconds)) s"))
        #expect(old.changed == nil && old.isSameFile(as: now))
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
        #expect(
            FileIdentity(recorded: "device 1, inode 2, 3 bytes, modified at 4.000000005 s, changed at 6.000000007 s")?
                .changed == .init(seconds: 6, nanoseconds: 7))
        #expect(FileIdentity(recorded: "device 1, inode 2, 3 bytes, modified at 4.000000005 s, changed at 6 s") == nil)
    }
}
