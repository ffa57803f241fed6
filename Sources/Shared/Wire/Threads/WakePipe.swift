import Foundation

/// Wakes a thread waiting in `ZMQPoller.poll` from any other thread: a socket pair whose read
/// end is polled beside the sockets (`ZMQPoller.add(fd:)`). Threads that hand the loop
/// something (a stored upload part, a prepared job, a read for a download) `signal()`
/// so it is answered now rather than at the poll's timeout; the loop `drain()`s it
/// when it fires. Both ends are non-blocking: a signal on a full buffer is already pending.
package final class WakePipe: Sendable {
    package let readDescriptor: Int32
    private let writeDescriptor: Int32

    package init() throws {
        var fds: [Int32] = [-1, -1]
        // A socket pair rather than a pipe: both flags at creation (Swift does not see
        // pipe2), so a process started by another thread meanwhile inherits neither end.
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw ZMQError(rawValue: errno) }
        (readDescriptor, writeDescriptor) = (fds[0], fds[1])
    }

    deinit {
        close(readDescriptor)
        close(writeDescriptor)
    }

    /// Wakes the polling thread (any thread, any number of times).
    package func signal() {
        var byte: UInt8 = 1
        _ = write(writeDescriptor, &byte, 1)
    }

    /// Empties the pipe (the polling thread, after it fired).
    package func drain() {
        var buffer = [UInt8](repeating: 0, count: 256)
        while buffer.withUnsafeMutableBytes({ read(readDescriptor, $0.baseAddress, $0.count) }) > 0 {}
    }
}
