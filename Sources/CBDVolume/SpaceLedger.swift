// SPDX-License-Identifier: Apache-2.0
/// The data pblks a `Volume` has promised. Every block waiting in its cache holds a
/// reservation (the block's worst case, or its exact size once known), and a request is
/// accepted only when what it needs can be reserved: a commit then never runs out of room,
/// so a write that returned success is never dropped. A request that cannot reserve is
/// refused before it changes anything (ENOSPC for that one request, as dm-thin's
/// `error_if_no_space` and VDO do).
///
/// `keep` pblks are never promised to data: the entry journal's room for entries too large to
/// travel inline in the header (`EntryJournal`), so that a commit, a discard or a zeroing
/// write never needs space it cannot have.
final class SpaceLedger {
    let allocator: PblkAllocator
    let keep: Int
    /// Pblks promised to blocks in the cache (and to the request being applied).
    private(set) var reserved = 0

    init(allocator: PblkAllocator, keep: Int) {
        self.allocator = allocator
        self.keep = keep
    }

    /// Promises `k` more pblks; false, promising nothing, when the device has not that many
    /// free beyond what is promised already.
    func reserve(_ k: Int) throws -> Bool {
        guard k > 0 else { return true }
        guard try allocator.countFree(atLeast: reserved + keep + k) else { return false }
        reserved += k
        return true
    }

    /// Takes back `k` promised pblks (used, or no longer needed).
    func release(_ k: Int) {
        precondition(k >= 0 && k <= reserved, "released more than was reserved")
        reserved -= k
    }

    /// Free data pblks of the whole device (counting every zone once, then kept up to date),
    /// and how many of them are promised or kept.
    func usage() throws -> (free: Int, promised: Int) {
        _ = try allocator.countFree(atLeast: Int.max)
        return (allocator.countedFree, reserved + keep)
    }
}
