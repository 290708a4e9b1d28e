// SPDX-License-Identifier: Apache-2.0
/// When the volume's entries last changed, by lblk: what tells a write whether a block read
/// ahead of it (`WriteAhead`) is still what the device holds. Each publication moves the
/// generation and marks the buckets of the lblks it changed; a block read at generation `g` is
/// current while its bucket has not moved past `g`. A replay marks everything.
///
/// The buckets are a fixed table (lblk modulo its size: 32 KiB whatever the device's size), so
/// two lblks may share one and a publication of one drops the other's read-ahead: that costs a
/// load, never a stale block. One generation for the whole volume dropped every read-ahead in
/// flight at each background commit's publication.
struct EntryChanges {
    private static let buckets = 4096
    /// Moves at each publication.
    private(set) var generation = 0
    /// The generation at which each bucket's entries last changed.
    private var changedAt = [Int](repeating: 0, count: buckets)
    /// The last generation that changed every entry (a replay).
    private var allChangedAt = 0

    /// The entries of `lblks` change now.
    mutating func change(_ lblks: some Sequence<Int>) {
        generation += 1
        for n in lblks { changedAt[n & (Self.buckets - 1)] = generation }
    }

    /// Any entry may change now.
    mutating func changeAll() {
        generation += 1
        allChangedAt = generation
    }

    /// Whether lblk `n`'s entry is as it was at generation `g`.
    func isUnchanged(_ n: Int, since g: Int) -> Bool {
        allChangedAt <= g && changedAt[n & (Self.buckets - 1)] <= g
    }
}
