import Foundation
import TesseraCore
import TesseraModel

/// The memory of one forward pass's intermediate activations: one allocation, each
/// activation at an offset `ActivationPlan` chose so that two activations alive at the
/// same time never share memory. Freed when the pass's last view of it goes.
///
/// Why not one allocation per activation: with the large-buffer tuning (`MemoryTuning`)
/// glibc never returns freed activations to the system and cannot always reuse them, so
/// the heap grows past what is alive. Measured on the seed's dense pass over a 1283×1283
/// input: the fc6 output (401 MiB) found no hole big enough among the freed 210 MiB
/// activations before it and went on top of them; the process peaked at 931 MiB with
/// 599 MiB of activations alive. With the plan the activations take at most what two
/// consecutive layers need (608 MiB there), reused from the heap by the next pass.
///
/// A pass that needs more than `limitBytes`, or whose allocation fails (an address-space
/// limit), throws `.outOfMemory` before computing anything: a tile too large for a worker
/// fails its task with the sizes, instead of the worker being killed by the kernel's OOM
/// killer (or aborting) on every attempt.
package final class ActivationArena: @unchecked Sendable {
    let base: UnsafeMutablePointer<Float>

    /// The most one pass's activations may take in this process: the machine's memory
    /// (`SystemMemory.limit`: RAM, or the cgroup's limit) unless set lower at start-up
    /// (`tessera-worker --max-memory-mib`). Set before any pass runs.
    nonisolated(unsafe) package static var limitBytes = SystemMemory.limit
    /// Where `limitBytes` comes from, for the error message.
    nonisolated(unsafe) package static var limitText = "the machine's memory, or --max-memory-mib"

    init(count: Int, input: Shape) throws {
        let bytes = max(1, count) * MemoryLayout<Float>.size
        let limit = Self.limitBytes
        guard bytes <= limit else {
            throw EngineError(
                .outOfMemory,
                "a \(input.h)×\(input.w) input needs \(SystemMemory.text(bytes)) for its activations, more than this "
                    + "process's limit of \(SystemMemory.text(limit)) (\(Self.limitText)): "
                    + "use a smaller --tile (or --memory-budget)")
        }
        guard let memory = malloc(bytes) else {
            throw EngineError(
                .outOfMemory,
                "cannot allocate \(SystemMemory.text(bytes)) for the activations of a \(input.h)×\(input.w) input "
                    + "(an address-space limit?): use a smaller --tile (or --memory-budget)")
        }
        base = memory.bindMemory(to: Float.self, capacity: max(1, count))
    }

    deinit { free(base) }

}

/// Offsets in one arena for buffers with known lifetimes (the steps at which each is
/// allocated and last used): buffers whose lifetimes overlap get disjoint ranges.
/// Greedy by size, largest first, each at the lowest offset where it fits beside the
/// buffers already placed that it overlaps in time: for a chain of layers this is the
/// largest sum of two consecutive activations.
package enum ActivationPlan {
    package struct Buffer: Equatable, Sendable {
        /// Floats.
        package var count: Int
        /// The step that writes it and the last step that reads it (inclusive).
        package var first: Int
        package var last: Int

        package init(count: Int, first: Int, last: Int) {
            self.count = count
            self.first = first
            self.last = last
        }

        func overlaps(_ other: Buffer) -> Bool { first <= other.last && other.first <= last }
    }

    /// Offsets are multiples of 16 floats (64 bytes: a cache line, an AVX-512 vector).
    static let alignment = 16

    /// Each buffer's offset in floats, and the arena's size.
    package static func offsets(_ buffers: [Buffer]) -> (offsets: [Int], count: Int) {
        func rounded(_ n: Int) -> Int { (max(1, n) + alignment - 1) / alignment * alignment }
        let order = buffers.indices.sorted {
            (buffers[$0].count, buffers[$1].first) > (buffers[$1].count, buffers[$0].first)
        }
        var offsets = [Int](repeating: 0, count: buffers.count)
        var placed: [Int] = []
        var total = 0
        for i in order {
            let size = rounded(buffers[i].count)
            // The ranges taken, during this buffer's lifetime, in address order.
            let taken = placed.filter { buffers[$0].overlaps(buffers[i]) }
                .map { (offsets[$0], offsets[$0] + rounded(buffers[$0].count)) }.sorted { $0.0 < $1.0 }
            var offset = 0
            for (lo, hi) in taken {
                if offset + size <= lo { break }
                offset = max(offset, hi)
            }
            offsets[i] = offset
            placed.append(i)
            total = max(total, offset + size)
        }
        return (offsets, total)
    }
}
