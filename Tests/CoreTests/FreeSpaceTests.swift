import Foundation
import Testing

@testable import TesseraCore

/// Where decoded images may go: a folder on a file system held in memory counts as memory.
@Suite("Free space")
struct FreeSpaceTests {
    /// Review 34 N1: a tmpfs TMPDIR took a decode that memory would have refused. Checked against coreutils'
    /// `stat -f` (statfs's f_type) on the folders this machine has.
    @Test("isMemoryBacked agrees with stat -f on this machine's folders")
    func memoryBacked() throws {
        let folders = [
            "/", "/dev/shm", "/proc", "/sys", NSTemporaryDirectory(), FileManager.default.currentDirectoryPath,
        ]
        var checked = 0
        for folder in folders where FileManager.default.fileExists(atPath: folder) {
            let stat = Process()
            stat.executableURL = URL(fileURLWithPath: "/usr/bin/stat")
            stat.arguments = ["-f", "-c", "%T", folder]
            let pipe = Pipe()
            stat.standardOutput = pipe
            try stat.run()
            stat.waitUntilExit()
            let type = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            guard stat.terminationStatus == 0 else { continue }
            #expect(isMemoryBacked(folder) == (type == "tmpfs" || type == "ramfs"), "\(folder): \(type)")
            checked += 1
        }
        #expect(checked >= 3)
        #expect(!isMemoryBacked("/nonexistent/folder"))
    }
}
