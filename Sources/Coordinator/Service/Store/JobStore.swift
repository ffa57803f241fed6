import Foundation
import TesseraCluster
import TesseraCore

/// The coordinator's job store on disk (`--store DIR`):
///
///     DIR/jobs/<id>/job.txt             JobRecord (written last at submission)
///     DIR/jobs/<id>/deploy.prototxt     model files, as uploaded
///     DIR/jobs/<id>/weights.caffemodel
///     DIR/jobs/<id>/image.png           the image, as uploaded
///     DIR/jobs/<id>/image.raw           upload jobs: the image decoded (tasks read their regions here)
///     DIR/jobs/<id>/map.chunks/         upload jobs: the map, one raw chunk per map tile (`UploadMap`)
///     DIR/jobs/<id>/receipts.log        the written tiles' receipts (`ReceiptJournal`), group-committed
///     DIR/jobs/<id>/state.txt           JobEnding, once the job is done, failed or cancelled
///     DIR/jobs/<id>/ending.slot         4 KiB reserved at submission: the ending goes here, in
///                                       place, when state.txt cannot be written (a full disk)
///     DIR/jobs/<id>/out/                outputs (unless the job named its own folder)
///
/// Every file but the map's chunks and image.raw is written with `DurableFile` (temp,
/// fsync, rename, fsync folder). Chunks are written atomically but not fsynced one by
/// one: a resume keeps only those matching their committed receipts.
struct JobStore {
    let root: String

    /// A job's model files (its definition, its weights), in its folder while it may be resumed.
    static let modelFiles = ["deploy.prototxt", "weights.caffemodel"]

    var jobsDirectory: String { root + "/jobs" }
    func directory(_ id: UInt64) -> String { "\(jobsDirectory)/\(id)" }

    /// Job ids present in the store, ascending (other names are ignored).
    func jobIDs() -> [UInt64] {
        ((try? FileManager.default.contentsOfDirectory(atPath: jobsDirectory)) ?? []).compactMap { UInt64($0) }.sorted()
    }

    /// The first symbolic link among job `id`'s folder, its entries and the folders of its map's chunks,
    /// or nil. Appends and chunk writes would follow one out of the store (security audit: a linked
    /// receipts.log and map.chunks were written through), so such a job is not resumed.
    func symbolicLink(in id: UInt64) -> String? {
        func isLink(_ path: String) -> Bool { Self.status(path).map { $0.st_mode & S_IFMT == S_IFLNK } ?? false }
        let dir = directory(id)
        if isLink(dir) { return dir }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where isLink(dir + "/" + name) {
            return dir + "/" + name
        }
        // The chunks' folders (levels and tile rows: a few hundred); chunk files are replaced by rename.
        var folders = [dir + "/map.chunks"]
        while let folder = folders.popLast() {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] {
                let path = folder + "/" + name
                let type = Self.status(path).map { $0.st_mode & S_IFMT }
                if type == S_IFLNK { return path }
                if type == S_IFDIR { folders.append(path) }
            }
        }
        return nil
    }

    func writeRecord(_ record: JobRecord, _ id: UInt64) throws {
        try DurableFile.write(Array(record.encoded().utf8), to: directory(id) + "/" + JobRecord.fileName)
    }

    /// The record, nil if the entry has none (a submission interrupted before it was whole).
    func readRecord(_ id: UInt64) throws -> JobRecord? {
        let path = directory(id) + "/" + JobRecord.fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else {
            throw ClusterError("\(path): unreadable")
        }
        do {
            return try JobRecord(text: text)
        } catch {
            throw ClusterError("\(path): \(error)")
        }
    }

    static let endingSlot = "ending.slot"
    static let endingSlotSize = 4096

    /// Reserves the job's ending slot (written and fsynced now, so its blocks exist
    /// when the disk is full later). Call before the record: a whole entry has one.
    func reserveEndingSlot(_ id: UInt64) throws {
        try DurableFile.write(
            [UInt8](repeating: 0, count: Self.endingSlotSize), to: directory(id) + "/" + Self.endingSlot)
    }

    /// Records how the job ended: `state.txt` (temp, fsync, rename); if that cannot be
    /// written (a full disk), in place into the reserved slot, so that a job reported
    /// failed or cancelled stays so after a restart. Throws if neither works.
    func writeEnding(_ ending: JobEnding, _ id: UInt64) throws {
        do {
            try DurableFile.write(Array(ending.encoded().utf8), to: directory(id) + "/" + JobEnding.fileName)
        } catch {
            do {
                try writeEndingInSlot(ending, id)
            } catch let slotError {
                throw ClusterError("\(error); and in its reserved slot: \(slotError)")
            }
        }
    }

    private func writeEndingInSlot(_ ending: JobEnding, _ id: UInt64) throws {
        var e = ending
        var bytes = Array(e.encoded().utf8)
        while bytes.count >= Self.endingSlotSize && !e.message.isEmpty {
            e.message = String(e.message.prefix(e.message.count / 2)) + "…"
            bytes = Array(e.encoded().utf8)
        }
        guard bytes.count < Self.endingSlotSize else { throw ClusterError("the ending does not fit its slot") }
        bytes += [UInt8](repeating: 0, count: Self.endingSlotSize - bytes.count)
        let path = directory(id) + "/" + Self.endingSlot
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ClusterError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, 0) }
        guard written == bytes.count, fsync(fd) == 0 else {
            throw ClusterError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// How the job ended: `state.txt`, else what its slot holds; nil while unfinished.
    func readEnding(_ id: UInt64) throws -> JobEnding? {
        let path = directory(id) + "/" + JobEnding.fileName
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
            else {
                throw ClusterError("\(path): unreadable")
            }
            do {
                return try JobEnding(text: text)
            } catch {
                throw ClusterError("\(path): \(error)")
            }
        }
        let slot = directory(id) + "/" + Self.endingSlot
        // A folder named state.txt stands where the ending could not be written: the slot then holds it.
        // With an empty slot the job did not end that way: the store is damaged (security audit: the job was
        // resumed as unfinished and failed for an unrelated reason).
        let damaged = isDirectory.boolValue ? ClusterError("\(path) is a folder, and \(slot) holds no ending") : nil
        guard let data = FileManager.default.contents(atPath: slot) else {
            if let damaged { throw damaged }
            return nil
        }
        let used = data.prefix { $0 != 0 }
        guard !used.isEmpty else {
            if let damaged { throw damaged }
            return nil
        }
        do {
            return try JobEnding(text: String(decoding: used, as: UTF8.self))
        } catch {
            throw ClusterError("\(slot): \(error)")
        }
    }

    /// When the job was submitted and ended, in Unix seconds (0: not known or not
    /// ended): the times its record and its ending were last written. Both are written
    /// once (the record at submission, last of the entry; the ending when it ended), so
    /// the store needs no field of its own for them and keeps its format.
    func times(_ id: UInt64) -> (submitted: Double, ended: Double) {
        func modified(_ name: String) -> Double { Self.status(directory(id) + "/" + name).map(Self.modified) ?? 0 }
        let ended = modified(JobEnding.fileName)
        return (modified(JobRecord.fileName), ended > 0 ? ended : modified(Self.endingSlot))
    }

    /// `lstat` of `path` (a link is not followed), or nil if it cannot be read. Not Foundation's
    /// `attributesOfItem`, which looks the owner and group up in /etc/passwd and /etc/group at every call: a
    /// coordinator reading back a store of 20 000 ended jobs read each 32 000 times and answered after 31 s.
    static func status(_ path: String) -> stat? {
        var info = stat()
        return lstat(path, &info) == 0 ? info : nil
    }

    /// A file's modification time, in Unix seconds.
    static func modified(_ info: stat) -> Double { Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9 }

    /// A stored file's bytes, or an error naming it.
    func read(_ id: UInt64, _ name: String) throws -> [UInt8]? {
        let path = directory(id) + "/" + name
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw ClusterError("\(path): unreadable") }
        return [UInt8](data)
    }
}
