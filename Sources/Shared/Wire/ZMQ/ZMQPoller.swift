import CZeroMQ

/// Poll events. The corresponding C constants are `ZMQ_POLLIN`, `ZMQ_POLLOUT`, `ZMQ_POLLERR`.
package struct ZMQPollEvents: OptionSet, Sendable {
    package let rawValue: Int16
    package init(rawValue: Int16) { self.rawValue = rawValue }
    /// A message can be received. The corresponding C constant is `ZMQ_POLLIN`.
    package static let readable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// A message can be sent without blocking. The corresponding C constant is `ZMQ_POLLOUT`.
    package static let writable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

/// Waits on several sockets at once (`zmq_poll`).
///
/// Build it where the sockets live, add each socket once, then poll in the loop:
///
///     var poller = ZMQPoller()
///     let workers = poller.add(workerRouter)
///     let clients = poller.add(clientRouter)
///     while running {
///         try poller.poll(timeoutMilliseconds: heartbeatInterval)
///         if poller.isReadable(workers) { … drain with receiveIfAvailable … }
///         if poller.isReadable(clients) { … }
///     }
///
/// The poller stores the sockets' handles, not the sockets: it must not be used after
/// any of its sockets has been closed or replaced (rebuild it then). A poller, like its
/// sockets, belongs to one thread.
package struct ZMQPoller {
    private var items: [zmq_pollitem_t] = []

    package init() {}

    /// Adds `socket`, waiting for `events`; returns its index for `isReadable`/`events(at:)`.
    @discardableResult
    package mutating func add(_ socket: borrowing ZMQSocket, events: ZMQPollEvents = .readable) -> Int {
        items.append(zmq_pollitem_t(socket: socket.handle, fd: 0, events: events.rawValue, revents: 0))
        return items.count - 1
    }

    /// Adds a file descriptor (a `WakePipe`'s read end), waiting for `events`; returns its index.
    @discardableResult
    package mutating func add(fileDescriptor fd: Int32, events: ZMQPollEvents = .readable) -> Int {
        items.append(zmq_pollitem_t(socket: nil, fd: fd, events: events.rawValue, revents: 0))
        return items.count - 1
    }

    /// Waits until an event or the timeout (ms; 0 = just check, -1 = forever). Returns
    /// how many sockets have events. `EINTR` is retried (with the full timeout again).
    @discardableResult
    package mutating func poll(timeoutMilliseconds: Int) throws -> Int {
        let count = items.count
        let timeout = CLong(clamping: timeoutMilliseconds)
        return Int(
            try items.withUnsafeMutableBufferPointer { buffer in
                try ZMQCall.check { zmq_poll(buffer.baseAddress, CInt(count), timeout) }
            })
    }

    /// The events that fired for the socket at `index` in the last `poll`.
    package func events(at index: Int) -> ZMQPollEvents { ZMQPollEvents(rawValue: items[index].revents) }

    /// Whether the socket at `index` had a message waiting in the last `poll`.
    package func isReadable(_ index: Int) -> Bool { events(at: index).contains(.readable) }
}
