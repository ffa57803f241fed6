import CZeroMQ

/// The single choke point for libzmq calls that can fail with `errno`.
///
/// Every wrapper goes through `ZMQCall.check` / `ZMQCall.handle`: `EINTR` is retried
/// here and nowhere else, and every failure becomes a `ZMQError` carrying the code.
/// Keeping the calls in one place is what lets a later change add fault injection
/// for tests (force `EAGAIN`/`ETERM`) without touching the callers.
enum ZMQCall {
    /// Runs `body` (a C call returning `-1` on failure) and retries on `EINTR`.
    /// Returns the non-negative result.
    @discardableResult
    @inline(__always)
    static func check(_ body: () -> CInt) throws -> CInt {
        while true {
            let result = body()
            if result >= 0 { return result }
            let error = ZMQError.current
            if error == .interrupted { continue }
            throw error
        }
    }

    /// Same as `check` for calls that return a pointer (`NULL` on failure).
    @inline(__always)
    static func handle(_ body: () -> UnsafeMutableRawPointer?) throws -> UnsafeMutableRawPointer {
        while true {
            if let pointer = body() { return pointer }
            let error = ZMQError.current
            if error == .interrupted { continue }
            throw error
        }
    }

    /// For calls that may only fail because of a programming error (closing a
    /// socket twice, an invalid message): the failure is a bug, not a condition.
    @inline(__always)
    static func mustSucceed(_ what: StaticString, _ body: () -> CInt) {
        while true {
            let result = body()
            if result >= 0 { return }
            let error = ZMQError.current
            if error == .interrupted { continue }
            preconditionFailure("\(what) failed: \(error)")
        }
    }
}
