import Foundation
import TesseraCluster
import TesseraCore
import TesseraImage
import TesseraWire

/// A computed shared-storage tile on its way to the map store.
struct PendingWrite: Sendable {
    let spec: Wire.TileTaskSpec
    let store: MapStore
    let tile: TileIndex
    /// classes × h × w values of the tile.
    let values: [Float]
    /// The session it was computed for (an outcome of an older one is dropped).
    let generation: Int
    let started: Double
}

/// The writer thread: encodes each computed shared-storage tile (its pyramid,
/// quantised and compressed) and writes its chunks, each atomically, while the
/// compute thread computes the next task; then posts the receipt and wakes the
/// socket thread. The device is not kept waiting on compression and file writes.
extension WorkerAgent {
    func writeLoop() {
        do {
            let wake = try ZMQSocket(context, type: .push)
            try wake.set(.maxMessageSize, 1024)
            try wake.connect(wakeEndpoint)
            writeLoop { try? wake.send([[1]], flags: .dontWait) }
        } catch {
            // Without it receipts still go out, at the socket thread's next turn (≤ 100 ms).
            logger.warning("the writer thread has no wake-up pipe", metadata: ["error": "\(error)"])
            writeLoop {}
        }
    }

    private func writeLoop(posted: () -> Void) {
        while true {
            let next = shared.wait(until: { $0.write != nil || $0.stopRequested }, then: { $0.write })
            guard let w = next else { return }
            let outcome: Outcome
            do {
                let receipt = try w.values.withUnsafeBufferPointer { try w.store.write(tile: w.tile, values: $0) }
                outcome = .receipt(TaskCodec.receipt(receipt, for: w.spec))
            } catch {
                outcome = .failure(
                    Wire.TaskFailure(
                        jobID: w.spec.jobID, taskID: w.spec.taskID, attempt: w.spec.attempt,
                        message: "writing the tile: \(error)"))
            }
            if case .failure = outcome {
                metrics.computed(ok: false, seconds: monotonicSeconds() - w.started)
            } else {
                metrics.computed(ok: true, seconds: monotonicSeconds() - w.started)
            }
            shared.withLockWakingWaiters { s in
                s.write = nil
                if w.generation == s.generation {
                    s.outbox.append(outcome)
                    if case .receipt = outcome { s.tasksDone += 1 }
                }
            }
            posted()
        }
    }
}
