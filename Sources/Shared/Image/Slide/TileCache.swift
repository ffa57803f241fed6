import Foundation
import TesseraCore

/// A small least-recently-used cache of decoded tiles (or strips), bounded in bytes. Neighbouring regions
/// share tiles (an engine's tiles overlap by their halo), so keeping the last few avoids decoding them twice.
///
/// Thread-safe. A thread that needs a tile another thread is decoding waits for it rather than decoding it again
/// (threads working on neighbouring regions often want the same tile at the same moment).
final class TileCache: @unchecked Sendable {
    private struct Entry {
        var bytes: [UInt8]
        var lastUse: UInt64
    }

    private let condition = NSCondition()
    private var entries: [Int: Entry] = [:]
    private var loading: Set<Int> = []
    private var clock: UInt64 = 0
    private var used = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = max(0, capacity) }

    var byteCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return used
    }

    /// The cached bytes for `key`, or `load()`'s (then cached). If `load` throws, the error goes to this caller
    /// only; threads that were waiting for the same key then load it themselves.
    func value(for key: Int, load: () throws -> [UInt8]) throws -> [UInt8] {
        condition.lock()
        while true {
            if var entry = entries[key] {
                clock += 1
                entry.lastUse = clock
                entries[key] = entry
                condition.unlock()
                return entry.bytes
            }
            if !loading.contains(key) { break }
            condition.wait()
        }
        loading.insert(key)
        condition.unlock()
        let result = Result { try load() }
        condition.lock()
        loading.remove(key)
        if case .success(let bytes) = result { insert(key, bytes) }
        condition.broadcast()
        condition.unlock()
        return try result.get()
    }

    /// Adds an entry and evicts the least recently used ones beyond the capacity. Call with the lock held.
    private func insert(_ key: Int, _ bytes: [UInt8]) {
        guard bytes.count <= capacity else { return }
        clock += 1
        if let old = entries.updateValue(Entry(bytes: bytes, lastUse: clock), forKey: key) {
            used -= old.bytes.count
        }
        used += bytes.count
        // Tens to a few hundred entries: a linear scan for the oldest is cheaper than keeping a list.
        while used > capacity, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            used -= oldest.value.bytes.count
            entries[oldest.key] = nil
        }
    }
}
