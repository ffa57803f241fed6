import Foundation
import TesseraCore

/// Lends handles that are not thread-safe (libtiff's) to one thread at a time, opening new ones on demand up
/// to `limit`, so that several threads decode in parallel instead of queueing on one lock.
final class HandlePool<Handle>: @unchecked Sendable {
    private let condition = NSCondition()
    private var idle: [Handle] = []
    private var opened = 0
    private let limit: Int
    private let open: () throws -> Handle

    init(limit: Int, first: Handle? = nil, open: @escaping () throws -> Handle) {
        self.limit = max(1, limit)
        self.open = open
        if let first {
            idle.append(first)
            opened = 1
        }
    }

    func withHandle<T>(_ body: (Handle) throws -> T) throws -> T {
        let handle = try checkOut()
        defer { checkIn(handle) }
        return try body(handle)
    }

    private func checkOut() throws -> Handle {
        condition.lock()
        while idle.isEmpty && opened >= limit { condition.wait() }
        if let handle = idle.popLast() {
            condition.unlock()
            return handle
        }
        opened += 1
        condition.unlock()
        do {
            return try open()
        } catch {
            condition.lock()
            opened -= 1
            condition.signal()
            condition.unlock()
            throw error
        }
    }

    private func checkIn(_ handle: Handle) {
        condition.lock()
        idle.append(handle)
        condition.signal()
        condition.unlock()
    }
}
