import Foundation

/// What retention reads and writes in the store: the size and end time of each job's
/// folder, and the highest id removed (`DIR/removed-up-to`), so that a restart never
/// hands out the id of a removed job again.
extension JobStore {
    /// One job folder: its bytes and, for an ended job, when its end was recorded.
    struct FolderUsage: Sendable {
        var bytes: Int64
        var ended: Date?
        /// When `bytes` was counted.
        var measured = Date()
    }

    /// How long after a job's end its folder may still change (its last outputs, a removal under way): a count
    /// made later is reused.
    static let settledSeconds: TimeInterval = 120

    var removedMarkPath: String { root + "/removed-up-to" }

    /// The highest job id removed by retention (0 if none).
    func highestRemovedID() -> UInt64 {
        guard let data = FileManager.default.contents(atPath: removedMarkPath),
            let text = String(data: data, encoding: .utf8)
        else { return 0 }
        return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// Removes a job's folder, after recording its id as removed.
    func removeJob(_ id: UInt64) throws {
        try markRemoved(id)
        // (A cancelled upload has no folder left.)
        guard FileManager.default.fileExists(atPath: directory(id)) else { return }
        try FileManager.default.removeItem(atPath: directory(id))
    }

    /// Records `id` as removed, so that no later job gets it (a cancelled or abandoned upload's folder goes at
    /// once: its id was handed to the next submission after a restart, another key's, ops audit).
    func markRemoved(_ id: UInt64) throws {
        if id > highestRemovedID() {
            try DurableFile.write(Array("\(id)\n".utf8), to: removedMarkPath)
        }
    }

    /// Unix seconds the job's folder was last written (its newest entry), 0 if unknown: the age of a job that
    /// ended without recording it (failed at resume: retention dated it "now" at every check, ops audit).
    func lastWritten(_ id: UInt64) -> Double {
        let dir = directory(id)
        var newest = 0.0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            guard let info = Self.status(dir + "/" + name) else { continue }
            newest = max(newest, Self.modified(info))
        }
        return newest
    }

    /// Every job folder's usage (files counted by their allocated size, links not followed). An ended job's
    /// count in `previous`, made well after its end, is reused: the folder no longer changes, and walking every
    /// ended job's map chunks twice a minute cost an idle coordinator with 20 000 of them a third of a core.
    func usage(reusing previous: [UInt64: FolderUsage] = [:]) -> [UInt64: FolderUsage] {
        var out: [UInt64: FolderUsage] = [:]
        for id in jobIDs() {
            func modified(_ name: String) -> Date? {
                Self.status(directory(id) + "/" + name).map { Date(timeIntervalSince1970: Self.modified($0)) }
            }
            // An ending written into the reserved slot (state.txt could not be written) counts too.
            let ended =
                modified(JobEnding.fileName)
                ?? ((try? readEnding(id)) != nil ? modified(Self.endingSlot) : nil)
            if let ended, let old = previous[id], old.ended == ended,
                old.measured.timeIntervalSince(ended) > Self.settledSeconds
            {
                out[id] = old
                continue
            }
            out[id] = FolderUsage(bytes: Self.bytes(under: directory(id)), ended: ended, measured: Date())
        }
        return out
    }

    static func bytes(under path: String) -> Int64 {
        guard let info = status(path) else { return 0 }
        var total = Int64(info.st_blocks) * 512
        guard info.st_mode & S_IFMT == S_IFDIR,
            let names = try? FileManager.default.contentsOfDirectory(atPath: path)
        else { return total }
        for name in names { total += bytes(under: path + "/" + name) }
        return total
    }
}
