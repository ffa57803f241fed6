import Foundation

/// State that several threads share, reachable only while holding its lock.
///
/// The sockets' threads (the coordinator's loop, a worker's socket and compute
/// threads, the ZAP handler) share a few values each; keeping every such value in
/// one of these makes "read or written only under the lock" a property of the type
/// instead of a convention, so the classes that own one need no `@unchecked Sendable`.
/// It waits on a condition too (`wait(until:then:)`), for a thread that sleeps until
/// another one hands it work.
package final class Locked<State: Sendable>: @unchecked Sendable {
    // Safe: `state` is private and touched only between `condition.lock()` and
    // `condition.unlock()` below, and State is Sendable, so what a caller copies out
    // of it may cross threads.
    private let condition = NSCondition()
    private var state: State

    package init(_ state: State) {
        self.state = state
    }

    /// Runs `body` on the state, holding the lock.
    package func withLock<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
        condition.lock()
        defer { condition.unlock() }
        return try body(&state)
    }

    /// Runs `body` on the state, holding the lock, then wakes every thread waiting in
    /// `wait(until:then:)` to look at the state again.
    package func withLockWakingWaiters<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
        condition.lock()
        defer {
            condition.broadcast()
            condition.unlock()
        }
        return try body(&state)
    }

    /// Sleeps until `ready` holds or `seconds` have passed; returns whether it holds.
    package func wait(until ready: (State) -> Bool, seconds: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(seconds)
        while !ready(state) {
            if !condition.wait(until: deadline) { return ready(state) }
        }
        return true
    }

    /// Sleeps until `ready` holds (checked under the lock, which is released while
    /// sleeping), then runs `body` on the state before releasing the lock.
    package func wait<Result>(
        until ready: (State) -> Bool,
        then body: (inout State) throws -> Result
    ) rethrows -> Result {
        condition.lock()
        defer { condition.unlock() }
        while !ready(state) { condition.wait() }
        return try body(&state)
    }
}
