import Foundation
import TesseraImage

/// A job's receipt journal (`jobs/<id>/receipts.log`): one line per map tile whose
/// chunks are written, `INDEX KEY:SIZE:CRC32HEX …` (one field per pyramid level),
/// appended in groups with one fsync per group (`CoordinatorLoop.commitReceipts`).
/// A resume trusts a line only after checking its chunks against it
/// (`MapStore.verify`), so a chunk lost or torn after its line was committed costs
/// recomputing that tile, never a wrong map. Shared-storage jobs journal the
/// receipts their workers send; upload jobs the receipts of the coordinator's own
/// chunk writes.
enum ReceiptJournal {
    static let fileName = "receipts.log"

    /// One journal line (without the newline).
    static func line(_ index: Int, _ chunks: [TileReceipt.Chunk]) -> String {
        ([String(index)] + chunks.map { "\($0.key):\($0.size):\(String($0.crc32, radix: 16))" })
            .joined(separator: " ")
    }

    /// The entries of the journal in `directory` (none if it does not exist), in
    /// order; a torn or malformed line gives `nil` chunks for its index, or is skipped
    /// when even the index is unreadable.
    static func entries(in directory: String) -> [(index: Int, chunks: [TileReceipt.Chunk]?)] {
        // Decoded line by line in effect: a byte that is not UTF-8 spoils its line only (ops audit: one 0xff byte
        // made the whole journal read as empty).
        let data = FileManager.default.contents(atPath: directory + "/" + fileName) ?? Data()
        let text = String(decoding: data, as: UTF8.self)
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard let index = Int(fields.first ?? ""), index >= 0 else { return nil }
            var chunks: [TileReceipt.Chunk] = []
            for field in fields.dropFirst() {
                let parts = field.split(separator: ":")
                guard parts.count == 3, let size = Int(parts[1]), let crc = UInt32(parts[2], radix: 16) else {
                    return (index, nil)
                }
                chunks.append(TileReceipt.Chunk(key: String(parts[0]), size: size, crc32: crc))
            }
            return (index, chunks.isEmpty ? nil : chunks)
        }
    }

    /// Why the journal in `directory` lost receipts, or nil: more than its last line (a kill mid-append) does not
    /// read (a damaged byte, an overwritten block). Those tiles are computed again; the ops audit found a
    /// journal spoilt this way redone in silence.
    static func damage(in directory: String, store: MapStore? = nil) -> String? {
        guard let data = FileManager.default.contents(atPath: directory + "/" + fileName), !data.isEmpty else {
            // No journal, but tiles in the store: it was lost (verification of the ops fixes: silent).
            if let store, !store.presentTiles().isEmpty {
                return "\(fileName) is missing or empty, though the map store holds tiles: they are computed again"
            }
            return nil
        }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").count
        let readable = entries(in: directory).filter { $0.chunks != nil }.count
        guard lines - readable > 1 || (readable == 0 && lines > 0) else { return nil }
        return "\(lines - readable) of \(lines) lines of \(fileName) do not read (damaged): their tiles are "
            + "computed again"
    }
}
