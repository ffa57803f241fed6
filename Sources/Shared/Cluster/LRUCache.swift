/// A small cache of at most `capacity` entries that, when full, drops the entry used
/// least recently, not all of them: a worker alternating between a few jobs keeps the
/// models, engines and open files it is using. Capacities are single digits, so the
/// use order is a plain array.
package struct LRUCache<Key: Hashable, Value> {
    package let capacity: Int
    private var values: [Key: Value] = [:]
    /// Least recently used first.
    private var order: [Key] = []

    package init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    package var count: Int { values.count }
    /// The keys, least recently used first.
    package var keys: [Key] { order }

    /// The value for `key` (which becomes the most recently used), or nil.
    package mutating func get(_ key: Key) -> Value? {
        guard let value = values[key] else { return nil }
        touch(key)
        return value
    }

    /// Stores `value` as the most recently used; returns the key evicted to make room.
    @discardableResult
    package mutating func insert(_ value: Value, for key: Key) -> Key? {
        var evicted: Key?
        if values[key] == nil, values.count >= capacity, !order.isEmpty {
            let oldest = order.removeFirst()
            values[oldest] = nil
            evicted = oldest
        }
        values[key] = value
        touch(key)
        return evicted
    }

    private mutating func touch(_ key: Key) {
        order.removeAll { $0 == key }
        order.append(key)
    }
}

extension LRUCache: Sendable where Key: Sendable, Value: Sendable {}
