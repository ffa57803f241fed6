import CZeroMQ

/// One received multipart message: its frames (each copied once out of the
/// `zmq_msg_t` libzmq filled) and the connection metadata libzmq attached.
///
/// On a ROUTER the first frame is the sender's routing id; `ZMQSocket+Wire`'s
/// `receiveWire` splits it off for you.
package struct ZMQMessage: Sendable, Equatable {
    /// The frames in order.
    package var frames: [[UInt8]]
    /// The `User-Id` the ZAP handler returned for the sending connection (the key's
    /// name in CURVE mode), or nil without ZAP. Trust this, not the routing id.
    package var userID: String?
    /// The peer's IP address (`Peer-Address`), when the transport has one.
    package var peerAddress: String?
    /// The CURVE public key (Z85) the connection authenticated with, from the ZAP handler's metadata
    /// (`ZAPHandler.curveKeyProperty`); nil without CURVE.
    package var curveKey: String?

    package init(frames: [[UInt8]], userID: String? = nil, peerAddress: String? = nil, curveKey: String? = nil) {
        self.frames = frames
        self.userID = userID
        self.peerAddress = peerAddress
        self.curveKey = curveKey
    }

    /// Total payload bytes over all frames.
    package var byteCount: Int { frames.reduce(0) { $0 + $1.count } }
}

/// A `zmq_msg_t` owned for the duration of one receive (heap-allocated: libzmq may
/// keep pointers into it between calls, so it must not move).
struct ZMQRawMessage: ~Copyable {
    let message: UnsafeMutablePointer<zmq_msg_t>

    init() {
        message = .allocate(capacity: 1)
        message.initialize(to: zmq_msg_t())
        ZMQCall.mustSucceed("zmq_msg_init") { zmq_msg_init(message) }
    }

    deinit {
        _ = zmq_msg_close(message)
        message.deallocate()
    }

    /// Receives one frame into the message. Returns false on `EAGAIN` when `dontWait`.
    func receive(from socket: UnsafeMutableRawPointer, dontWait: Bool) throws -> Bool {
        do {
            try ZMQCall.check { zmq_msg_recv(message, socket, dontWait ? ZMQ_DONTWAIT : 0) }
            return true
        } catch ZMQError.again where dontWait {
            return false
        }
    }

    var hasMore: Bool { zmq_msg_more(message) != 0 }
    var count: Int { zmq_msg_size(message) }

    /// One copy of the frame's bytes into an array.
    func bytes() -> [UInt8] {
        let size = zmq_msg_size(message)
        guard size > 0, let data = zmq_msg_data(message) else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: data, count: size))
    }

    func property(_ name: String) -> String? {
        guard let value = zmq_msg_gets(message, name) else { return nil }
        return String(cString: value)
    }
}
