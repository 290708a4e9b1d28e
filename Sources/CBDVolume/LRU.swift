import CBDDevice
/// A bounded map that forgets the least recently used key when full.
struct LRU<Key: Hashable, Value> {
    let capacity: Int
    private var values: [Key: (value: Value, stamp: UInt64)] = [:]
    private var clock: UInt64 = 0

    init(capacity: Int) {
        precondition(capacity >= 1)
        self.capacity = capacity
    }

    var count: Int { values.count }
    var keys: Dictionary<Key, (value: Value, stamp: UInt64)>.Keys { values.keys }

    /// Looks up and refreshes; setting an existing key replaces it in place.
    subscript(key: Key) -> Value? {
        mutating get {
            guard let e = values[key] else { return nil }
            clock += 1
            values[key] = (e.value, clock)
            return e.value
        }
        set {
            clock += 1
            if let v = newValue { values[key] = (v, clock) } else { values[key] = nil }
        }
    }

    /// Inserts a new key; returns the entry it evicted, if the map was full.
    /// Inserts `key`; when full, evicts the least recently used key that `keeping` does not
    /// hold on to, and returns it (none when every key is kept: the cache then grows).
    mutating func insert(_ key: Key, _ value: Value, keeping: (Key) -> Bool = { _ in false }) -> Key? {
        var evicted: Key?
        if values[key] == nil, values.count >= capacity,
           let victim = values.filter({ !keeping($0.key) }).min(by: { $0.value.stamp < $1.value.stamp })?.key {
            evicted = victim
            values[victim] = nil
        }
        self[key] = value
        return evicted
    }

    func oldestKey() -> Key? { values.min(by: { $0.value.stamp < $1.value.stamp })?.key }

    /// The least recently used key whose value satisfies `condition`.
    func oldestKey(where condition: (Value) -> Bool) -> Key? {
        values.filter { condition($0.value.value) }.min(by: { $0.value.stamp < $1.value.stamp })?.key
    }

    func peek(_ key: Key) -> Value? { values[key]?.value }

    mutating func remove(_ key: Key) { values[key] = nil }
}
