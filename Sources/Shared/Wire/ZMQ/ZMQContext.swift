import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A libzmq context: the I/O threads and the `inproc://` namespace its sockets share.
///
/// Every `ZMQSocket` keeps a strong reference to its context, so the context's
/// `deinit` (which calls `zmq_ctx_term`) runs only after the last socket has been
/// closed, and never blocks on a live socket. Sockets get a bounded `ZMQ_LINGER`
/// when created, so termination never waits forever on unsent messages.
///
/// To stop threads that are blocked in `receive` on this context's sockets, call
/// `shutdown()`: their calls throw `ZMQError.terminated`, they close their sockets,
/// and the context can then terminate.
///
/// A context is thread-safe (unlike its sockets).
package final class ZMQContext: @unchecked Sendable {
    // Unchecked because `handle` is a raw pointer: libzmq documents a context as safe
    // to use from any thread, and `handle` never changes after `init`.
    /// The version of libzmq this program runs with.
    package static var libraryVersion: String {
        var major: CInt = 0, minor: CInt = 0, patch: CInt = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    let handle: UnsafeMutableRawPointer

    /// Creates a context. `ioThreads` is libzmq's I/O thread count (1 is plenty
    /// below ~1 GB/s).
    package init(ioThreads: Int = 1) throws {
        handle = try ZMQCall.handle { zmq_ctx_new() }
        if ioThreads != 1 {
            try ZMQCall.check { zmq_ctx_set(handle, ZMQ_IO_THREADS, CInt(clamping: ioThreads)) }
        }
    }

    /// Makes every blocking call on this context's sockets return `ZMQError.terminated`
    /// (`zmq_ctx_shutdown`). Idempotent. Sockets must still be closed afterwards.
    package func shutdown() {
        _ = zmq_ctx_shutdown(handle)
    }

    deinit {
        // All sockets hold a reference to self, so none is open here; retry EINTR.
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    /// The linked libzmq version, e.g. (4, 3, 4).
    package static var version: (major: Int, minor: Int, patch: Int) {
        var major: CInt = 0, minor: CInt = 0, patch: CInt = 0
        zmq_version(&major, &minor, &patch)
        return (Int(major), Int(minor), Int(patch))
    }

    /// Whether libzmq was built with a capability (`"curve"`, `"ipc"`, `"draft"`…).
    package static func has(_ capability: String) -> Bool {
        zmq_has(capability) != 0
    }
}
