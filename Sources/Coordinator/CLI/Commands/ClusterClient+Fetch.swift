import ArgumentParser
import CoordinatorService
import Foundation
import Logging
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraPlan
import TesseraWire

/// Downloading a job's outputs: the room checked first, then each file in pieces of adaptive size, written to
/// a temporary name and renamed once whole.
extension ClusterClient {
    /// The largest and the smallest piece a download asks for; a piece whose reply did
    /// not come within an attempt is asked for again at half the size, and later pieces
    /// keep that size (an 8 MiB piece takes 3.4 s at 20 Mbit/s).
    static let largestPiece = 8 << 20
    static let smallestPiece = 256 << 10

    /// Why a write into `directory` failed, in words: a full disk says how much is free.
    static func writeFailure(_ error: Error, _ directory: String) -> String {
        if let free = freeBytes(directory), free < 1 << 20 {
            return "no space left on the disk holding \(directory) (\(free) bytes free)"
        }
        return systemErrorText(error)
    }

    /// Refuses a download whose files cannot fit in `directory`'s free space, before any is written
    /// (user audit: a fetch onto a small disk wrote some outputs and failed at the next). Each
    /// file's size comes with its first byte.
    func checkSpace(job: UInt64, files: [String], into directory: String) throws {
        guard !files.isEmpty, let free = freeBytes(directory) else { return }
        var total: UInt64 = 0
        for name in files {
            guard
                case .fetchData(let chunk) = try request(
                    .fetchRequest(Wire.FetchRequest(jobID: job, fileName: name, offset: 0, maxBytes: 1)))
            else { throw ClusterError(.protocolViolation, "unexpected reply to a fetch request") }
            total += chunk.totalSize
        }
        guard total > free else { return }
        let (need, have) = (SystemMemory.text(Int(min(total, UInt64(Int.max)))), SystemMemory.text(Int(free)))
        throw ClusterError(
            .storage,
            "job \(job)'s outputs need \(need) and the disk holding \(directory) has \(have) free: nothing was "
                + "downloaded; free some space, or fetch into another folder (tessera-coordinator fetch \(job) --out DIR)"
        )
    }

    /// Downloads the job's output files into `directory` (pieces of up to 8 MiB, each file
    /// written atomically).
    func fetchOutputs(job: UInt64, files: [String], into folder: String) throws -> [String] {
        let directory = OutputOptions.folder(folder)
        var piece = Self.largestPiece
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // What a killed download of these files left (soak audit 31 F4: a 126 MB `.NAME.partial-PID` stayed beside
        // the complete file of the next fetch); a download still running elsewhere keeps its file.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where files.contains(where: { entry.hasPrefix(".\($0).partial-") }) {
            guard let pid = PartialOutputs.writerPID(entry), pid != getpid(), !PartialOutputs.isRunning(pid) else {
                continue
            }
            try? FileManager.default.removeItem(atPath: "\(directory)/\(entry)")
        }
        try checkSpace(job: job, files: files, into: directory)
        var written: [String] = []
        for name in files {
            let path = "\(directory)/\(name)"
            let temp = "\(directory)/.\(name).partial-\(getpid())"
            _ = FileManager.default.createFile(atPath: temp, contents: nil)
            guard let handle = FileHandle(forWritingAtPath: temp) else {
                throw ClusterError(.storage, "cannot write \(temp)")
            }
            var complete = false
            defer { if !complete { try? FileManager.default.removeItem(atPath: temp) } }
            var offset: UInt64 = 0
            while true {
                let asked = offset
                guard
                    case .fetchData(let chunk) = try request(
                        .fetchRequest(
                            Wire.FetchRequest(jobID: job, fileName: name, offset: asked, maxBytes: UInt32(piece))),
                        resend: {
                            guard case .fetchRequest(var r) = $0, piece > Self.smallestPiece else { return $0 }
                            piece /= 2
                            r.maxBytes = UInt32(piece)
                            return .fetchRequest(r)
                        },
                        answers: {
                            // A piece of an earlier attempt (it was slow, then answered twice) is dropped.
                            guard case .fetchData(let c) = $0 else { return true }
                            return c.offset == asked && c.fileName == name && c.jobID == job
                        })
                else {
                    throw ClusterError(.protocolViolation, "unexpected reply to a fetch request")
                }
                guard chunk.offset == offset else {
                    throw ClusterError(.protocolViolation, "fetch: chunk at \(chunk.offset), asked \(offset)")
                }
                do {
                    try handle.write(contentsOf: chunk.bytes)
                } catch {
                    // Foundation's text ("There isn't enough space.") names neither the file nor what to do.
                    let full = [ENOSPC, EDQUOT].contains(systemErrorCode(error) ?? 0)
                    throw ClusterError(
                        .storage,
                        "cannot write \(path) (at byte \(offset) of it): \(Self.writeFailure(error, directory)); the "
                            + "job's outputs stay on the coordinator: \(full ? "free some space" : "fix that") and run "
                            + "tessera-coordinator fetch \(job) --out \(directory)"
                    )
                }
                offset += UInt64(chunk.bytes.count)
                if chunk.isLast || chunk.bytes.isEmpty { break }
            }
            try handle.synchronize()
            try handle.close()
            guard rename(temp, path) == 0 else { throw ClusterError(.storage, "cannot rename \(temp) to \(path)") }
            complete = true
            written.append(path)
        }
        return written
    }
}
