import Foundation
import TesseraCluster
import TesseraCore

/// The coordinator's job store on disk (`--store DIR`):
///
///     DIR/jobs/<id>/job.txt             JobRecord (written last at submission)
///     DIR/jobs/<id>/deploy.prototxt     model files, as uploaded
///     DIR/jobs/<id>/weights.caffemodel
///     DIR/jobs/<id>/image.png           the image, as uploaded
///     DIR/jobs/<id>/tiles/<task>.tile   completed tiles (TileFile), removed once the job is done
///     DIR/jobs/<id>/state.txt           JobEnding, once the job is done, failed or cancelled
///     DIR/jobs/<id>/out/                outputs (unless the job named its own folder)
///
/// Every file is written with `DurableFile` (temp, fsync, rename, fsync folder).
struct JobStore {
    let root: String

    var jobsDirectory: String { root + "/jobs" }
    func directory(_ id: UInt64) -> String { "\(jobsDirectory)/\(id)" }
    func tilesDirectory(_ id: UInt64) -> String { directory(id) + "/tiles" }
    func tilePath(_ id: UInt64, _ index: Int) -> String { "\(tilesDirectory(id))/\(index).tile" }

    /// Job ids present in the store, ascending (other names are ignored).
    func jobIDs() -> [UInt64] {
        ((try? FileManager.default.contentsOfDirectory(atPath: jobsDirectory)) ?? []).compactMap { UInt64($0) }.sorted()
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

    func writeEnding(_ ending: JobEnding, _ id: UInt64) throws {
        try DurableFile.write(Array(ending.encoded().utf8), to: directory(id) + "/" + JobEnding.fileName)
    }

    func readEnding(_ id: UInt64) throws -> JobEnding? {
        let path = directory(id) + "/" + JobEnding.fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
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

    /// A stored file's bytes, or an error naming it.
    func read(_ id: UInt64, _ name: String) throws -> [UInt8]? {
        let path = directory(id) + "/" + name
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw ClusterError("\(path): unreadable") }
        return [UInt8](data)
    }

    func writeTile(_ tile: TileFile, job id: UInt64) throws {
        try DurableFile.write(tile.encoded(), to: tilePath(id, tile.index))
    }

    /// Task indices with a tile file, and the names in `tiles/` that are not tiles
    /// (interrupted writes `.N.tile.tmp-*`, strays).
    func tileFiles(_ id: UInt64) -> (indices: Set<Int>, others: [String]) {
        var indices = Set<Int>()
        var others: [String] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tilesDirectory(id))) ?? [] {
            if name.hasSuffix(".tile"), let i = Int(name.dropLast(5)), i >= 0 {
                indices.insert(i)
            } else {
                others.append(name)
            }
        }
        return (indices, others)
    }
}
