extension ZMQSocket {
    /// Applies the options docs/ARCHITECTURE.md §9 lists for Tessera's sockets:
    ///
    /// - `MAXMSGSIZE` = `maxMessageSize`: a peer announcing a bigger frame is dropped
    ///   before anything is allocated (pass the largest legal frame: tile + header);
    /// - `LINGER` = `linger` ms (bounded, so shutdown never hangs on unsent data);
    /// - `RECONNECT_IVL_MAX` = 32 000 ms: exponential reconnect backoff (zguide's cap);
    /// - ROUTER: `ROUTER_MANDATORY` = 1, so a send to a gone peer throws
    ///   `ZMQError.hostUnreachable` (and a full pipe `.again`) instead of vanishing;
    /// - DEALER: `IMMEDIATE` = 1, so nothing is queued to a half-made connection.
    ///
    /// ZMTP heartbeats are left off: Tessera heartbeats at the application level, and a
    /// ZMTP timeout shorter than the longest transfer loses messages (libzmq#2709).
    package func applyTesseraDefaults(maxMessageSize: Int64 = 64 << 20, linger: Int32 = ZMQSocket.defaultLinger) throws
    {
        try set(.maxMessageSize, maxMessageSize)
        try set(.linger, linger)
        try set(.reconnectIntervalMax, 32_000)
        if type == .router { try set(.routerMandatory, true) }
        if type == .dealer { try set(.immediate, true) }
    }
}
