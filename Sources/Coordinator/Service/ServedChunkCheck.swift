import Foundation
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraWire

/// Checks the chunks an upload job's served `.npy` is read from against the job's receipts (size and
/// CRC-32, `ReceiptJournal`) before any of their bytes go out, each chunk once per coordinator run, for
/// jobs that ended before this coordinator started (their store sat on disk while it was down; a job
/// that ended in this run was written by it, and its last receipts may still be uncommitted). A
/// finished job's chunks were served unchecked (security audit: two jobs' swapped stores gave one user
/// the other's map as "done"; four overwritten bytes came out as NaN). Every receipt is committed
/// before a job's "done" is recorded, so a chunk without one is damage (ops audit: one lost journal line
/// let a damaged chunk out) and is not served either. Runs on the fetch queue, not the loop: a tile
/// row is read once more on its first download.
final class ServedChunkCheck: Sendable {
    private struct Job {
        var receipts: [String: TileReceipt.Chunk]
        var checked: Set<TileIndex> = []
    }
    private let jobs = Locked<[UInt64: Job]>([:])

    /// Throws, naming the chunk, when a chunk holding bytes `offset ..< offset + count` of `view` does
    /// not match its receipt. A job that journalled no receipts (an earlier release) is not checked; one whose
    /// record says it did (0.3.0 on, `JobRecord.placement`) and has none readable is not served (ops audit:
    /// deleting receipts.log, or one bad byte in it, turned the check off and a damaged chunk went out).
    func check(job id: UInt64, directory: String, view: NPYStoreView, offset: Int, count: Int) throws {
        let layout = view.store.layout
        var receipts = jobs.withLock { $0[id]?.receipts }
        if receipts == nil {
            var all: [String: TileReceipt.Chunk] = [:]
            for entry in ReceiptJournal.entries(in: directory) {
                for chunk in entry.chunks ?? [] { all[chunk.key] = chunk }
            }
            if all.isEmpty, let data = FileManager.default.contents(atPath: directory + "/" + JobRecord.fileName),
                let record = try? JobRecord(text: String(decoding: data, as: UTF8.self)), record.placement != nil
            {
                throw ClusterError(
                    "job \(id)'s \(ReceiptJournal.fileName) is missing or holds no readable receipt: its map cannot "
                        + "be checked, and is not served (the store is damaged)")
            }
            receipts = all
            jobs.withLock { if $0[id] == nil { $0[id] = Job(receipts: all) } }
        }
        guard let receipts, !receipts.isEmpty, count > 0 else { return }
        // The map rows the bytes lie in (all rows when they span a class plane's end).
        let rowBytes = layout.width * 4, plane = layout.height * rowBytes
        let header = view.size - layout.classes * plane
        let first = max(0, offset - header), last = max(0, offset + count - 1 - header)
        var rows = 0..<layout.height
        if last - first < plane, first / plane == last / plane {
            rows = (first % plane) / rowBytes..<((last % plane) / rowBytes + 1)
        }
        let side = layout.tileSize
        let columns = (layout.width + side - 1) / side
        for tileRow in (rows.lowerBound / side)...((rows.upperBound - 1) / side) {
            for column in 0..<columns {
                let tile = TileIndex(row: tileRow, column: column)
                if jobs.withLock({ $0[id]?.checked.contains(tile) == true }) { continue }
                let key = layout.chunkKey(tile, level: 0)
                guard let receipt = receipts[key] else {
                    throw ClusterError(
                        "job \(id)'s map chunk \(key) has no receipt in \(ReceiptJournal.fileName): it cannot be "
                            + "checked, and is not served (the store is damaged)")
                }
                let path = view.store.chunkPath(tile, level: 0)
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw ClusterError("job \(id)'s map chunk \(key) cannot be read: the store is damaged")
                }
                let crc = data.withUnsafeBytes { CRC32.update(0, $0) }
                guard data.count == receipt.size, crc == receipt.crc32 else {
                    throw ClusterError(
                        "job \(id)'s map chunk \(key) does not match its receipt (\(data.count) bytes, CRC-32 "
                            + String(format: "%08x", crc) + " for \(receipt.size), "
                            + String(format: "%08x", receipt.crc32) + "): the store is damaged")
                }
                jobs.withLock { _ = $0[id]?.checked.insert(tile) }
            }
        }
    }

    /// Forgets a job (its folder was removed).
    func forget(_ id: UInt64) { jobs.withLock { _ = $0.removeValue(forKey: id) } }
}
