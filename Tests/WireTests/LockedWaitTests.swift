import Foundation
import Testing

@testable import TesseraWire

/// `Locked.wait(until:seconds:)`: a worker's compute thread waits for a task at most 30 s, then drops its decoded
/// PNGs (memory audit 50 F3).
@Suite("Locked: a bounded wait")
struct LockedWaitTests {
    @Test("It returns false once the time is up, and true as soon as another thread makes the condition hold")
    func boundedWait() {
        let state = Locked<Int>(0)
        let start = Date()
        #expect(!state.wait(until: { $0 > 0 }, seconds: 0.2))
        #expect(Date().timeIntervalSince(start) >= 0.19)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { state.withLockWakingWaiters { $0 = 1 } }
        #expect(state.wait(until: { $0 > 0 }, seconds: 30))
        #expect(state.wait(until: { $0 > 0 }, seconds: 0))
    }
}
