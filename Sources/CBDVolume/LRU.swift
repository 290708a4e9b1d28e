// SPDX-License-Identifier: Apache-2.0
/// A bounded map that forgets the least recently used key when full.
///
/// Every access appends (key, stamp) to an access log; an entry whose stamp is no longer its
/// key's is stale and skipped. Finding the oldest key pops stale entries off the front, and the
/// log is rebuilt from the live keys when it holds more than twice as many entries as there
/// are keys, so each operation costs O(1) amortized (a scan of every key on each eviction cost
/// the server 3 ms a request on a mostly empty 16 TiB device).
struct LRU<Key: Hashable, Value> {
    let capacity: Int
    private var values: [Key: (value: Value, stamp: UInt64)] = [:]
    private var log: [(key: Key, stamp: UInt64)] = []
    private var head = 0
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
            touch(key, e.value)
            return e.value
        }
        set {
            if let v = newValue { touch(key, v) } else { values[key] = nil }
        }
    }

    /// Inserts `key`; when full, evicts the least recently used key that `keeping` does not
    /// hold on to, and returns it (none when every key is kept: the cache then grows).
    mutating func insert(_ key: Key, _ value: Value, keeping: (Key) -> Bool = { _ in false }) -> Key? {
        var evicted: Key?
        if values[key] == nil, values.count >= capacity, let victim = oldest(where: { k, _ in !keeping(k) }) {
            evicted = victim
            values[victim] = nil
        }
        touch(key, value)
        return evicted
    }

    mutating func oldestKey() -> Key? { oldest { _, _ in true } }

    /// The least recently used key whose value satisfies `condition`.
    mutating func oldestKey(where condition: (Value) -> Bool) -> Key? { oldest { _, v in condition(v) } }

    /// Up to `limit` keys whose values satisfy `condition`, least recently used first.
    func oldestKeys(limit: Int, where condition: (Value) -> Bool) -> [Key] {
        var out: [Key] = []
        for e in log[head...] where out.count < limit {
            if isLive(e), let v = values[e.key]?.value, condition(v) { out.append(e.key) }
        }
        return out
    }

    func peek(_ key: Key) -> Value? { values[key]?.value }

    mutating func remove(_ key: Key) { values[key] = nil }

    private func isLive(_ e: (key: Key, stamp: UInt64)) -> Bool { values[e.key]?.stamp == e.stamp }

    private mutating func touch(_ key: Key, _ value: Value) {
        clock += 1
        values[key] = (value, clock)
        log.append((key, clock))
        if log.count - head > 2 * values.count + 64 { rebuildLog() }
    }

    /// The oldest live key that `ok` accepts; stale entries at the front are dropped on the way.
    private mutating func oldest(where ok: (Key, Value) -> Bool) -> Key? {
        while head < log.count, !isLive(log[head]) { head += 1 }
        var i = head
        while i < log.count {
            let e = log[i]
            if isLive(e), let v = values[e.key]?.value, ok(e.key, v) { return e.key }
            i += 1
        }
        return nil
    }

    private mutating func rebuildLog() {
        log = values.map { ($0.key, $0.value.stamp) }.sorted { $0.stamp < $1.stamp }
        head = 0
    }
}
