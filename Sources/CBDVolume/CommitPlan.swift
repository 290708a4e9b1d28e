// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// A commit done in the background, in four steps, so that compression and the data's writes
/// run beside the requests instead of inside the writer's lock, and no client write carries a
/// whole commit (the kernel's `dirty_background_ratio`, where a full cache is `dirty_ratio`):
///
/// 1. `Volume.planCommit`, under the writer's lock, once a quarter of the cache is dirty:
///    the dirty blocks as they are now (arrays are values: a later write to a block changes
///    the cache's copy, not the plan's) and each block's `version`.
/// 2. `pack`, with no lock: each snapshot compressed into the plan's own buffer.
/// 3. `Volume.store`, beside reads (the plugin's shared lock: no request changes the volume):
///    the blocks unchanged since step 1 written to fresh pblks, their bits set, all synced
///    (format-v1's first step). Reads go on: they take these blocks from the cache.
/// 4. `Volume.finish`, under the writer's lock: their entries published, the old pblks
///    released. Whatever changes the volume first (a write, a flush, the close) does this
///    step itself before anything else (`publishStoredPlan`), so a stored block is never
///    changed, evicted or committed again before its entry names what step 3 wrote.
///
/// Only one plan is in flight. A flush or a full cache between steps 1 and 3 commits every
/// block itself, as before; the plan then finds them clean and stores nothing of them.
public final class CommitPlan: @unchecked Sendable {
    struct Item {
        let lblk: Int
        let block: CachedBlock
        let version: Int
        let snapshot: CachedBlock.Snapshot
        /// How the block is stored: given by the snapshot when packed ahead, else by `pack`.
        var form: PackedBlock?
    }

    var items: [Item]
    let lblkSize: Int
    let level: CompressionLevel
    /// What step 3 stored (entries to publish), or why it failed.
    var stored: [Volume.Committed] = []
    var failure: Error?
    /// Compressed bytes of item i at i * stride (made by `pack`).
    let buffer: ByteBuffer
    let stride: Int

    /// `buffer` holds at least `items.count` packed blocks (the volume's own, reused by each
    /// plan: a new one per plan fragmented the heap, 114 MB held for 52 MB in use).
    init(items: [Item], lblkSize: Int, level: CompressionLevel, buffer: ByteBuffer) {
        self.items = items
        self.lblkSize = lblkSize
        self.level = level
        stride = PackedBlock.maxCompressedLength(lblkSize: lblkSize)
        precondition(buffer.count >= items.count * stride)
        self.buffer = buffer
    }

    /// How many blocks the plan took.
    public var blockCount: Int { items.count }

    /// Step 2: compresses what is not packed yet, on one core (the committer's: the others
    /// serve requests) or on all of them (a flush, which its client waits for). Touches nothing
    /// but the plan, so it runs with no lock, beside reads and writes.
    public func pack(onAllCores: Bool = false) {
        let (size, level, out, stride) = (lblkSize, level, buffer, stride)
        items.withUnsafeMutableBufferPointer { items in
            let box = UncheckedBox(items)  // each worker sets the forms of its own slice
            try? Parallel.forEachSlice(count: items.count, parts: onAllCores ? Parallel.workers : 1) { _, slice in
                for i in slice where box.value[i].form == nil {
                    box.value[i].form = box.value[i].snapshot.data.withUnsafeBytes { src in
                        PackedBlock.pack(src.baseAddress!, lblkSize: size, into: out.base + i * stride, level: level)
                    }
                }
            }
        }
    }
}

extension Volume {
    /// Whether enough of the cache is dirty for a commit in the background (a quarter).
    public var wantsBackgroundCommit: Bool { dirtyBlocks >= max(1, cacheCapacity / 4) }

    /// Whether so much of the cache is dirty (seven eighths) that writers should commit a plan
    /// themselves before they add more, as the kernel's writers do past `dirty_ratio`: else the
    /// write that finds the cache full commits all of it under the writer's lock.
    public var wantsWritersToHelp: Bool { dirtyBlocks >= max(1, cacheCapacity * 7 / 8) }

    /// Blocks a plan takes at most: an eighth of the cache (its buffer counts in the peak RSS).
    var planBlocks: Int { max(1, cacheCapacity / 8) }

    /// Step 1: the dirty blocks as they are now, the least recently used first, up to
    /// `planBlocks`, in lblk order; nil when there are none, when a plan is in flight (they
    /// share one buffer), or when the volume takes no more writes.
    public func planCommit() -> CommitPlan? {
        guard dirtyBlocks > 0, readOnlyAfter == nil, !planInFlight else { return nil }
        let dirty = blocks.oldestKeys(limit: planBlocks, where: { $0.dirty }).sorted()
        let items = dirty.compactMap { n in
            blocks.peek(n).map { b in
                CommitPlan.Item(lblk: n, block: b, version: b.version, snapshot: b.snapshot, form: b.form)
            }
        }
        planInFlight = true
        return CommitPlan(items: items, lblkSize: geometry.lblkSize, level: level, buffer: planBuffer)
    }

    /// Step 3, beside reads but no other change (the plugin's shared lock): the blocks of
    /// `plan` that did not change since it was made, written and synced with their bits; the
    /// entries wait for `finish`. A failure is kept for `finish` to throw, and the volume is
    /// read-only from now on, as after a failed flush.
    public func store(_ plan: CommitPlan) {
        let unchanged = plan.items.indices.compactMap { i -> (Int, PackedBlock)? in
            guard let form = plan.items[i].form, isUnchanged(plan.items[i]) else { return nil }
            return (i, form)
        }
        guard !unchanged.isEmpty else { return }
        do {
            plan.stored = try writeBatch { emit in
                for (i, form) in unchanged {
                    let it = plan.items[i]
                    try CachedBlock.withStoredBytes(
                        of: it.snapshot, as: form, packed: plan.buffer.base + i * plan.stride
                    ) { try emit(it.lblk, form, $0) }
                }
            }
            storedPlan = plan
        } catch {
            plan.failure = error
        }
    }

    /// Whether a plan's block is still in the cache, dirty, with the bytes the plan took.
    private func isUnchanged(_ it: CommitPlan.Item) -> Bool {
        blocks.peek(it.lblk) === it.block && it.block.dirty && it.block.version == it.version
    }

    /// Step 4, under the writer's lock: publishes what `store` wrote (unless a change did
    /// first); throws what failed in step 3 or here (the volume is then read-only).
    public func finish(_ plan: CommitPlan) throws {
        defer { planInFlight = false }
        if let failure = plan.failure { throw failure }
        if storedPlan === plan { try publishStoredPlan() }
    }

    /// Publishes the stored plan's entries and releases the old pblks: called first by every
    /// change, so that nothing touches a stored block before its entry is published. A block
    /// that changed since all the same (none should) keeps its new bytes, dirty: its stored
    /// pblks are freed.
    func publishStoredPlan() throws {
        guard let plan = storedPlan else { return }
        storedPlan = nil
        let items = Dictionary(plan.items.map { ($0.lblk, $0) }, uniquingKeysWith: { a, _ in a })
        var keep: [Committed] = [], drop: [Committed] = []
        for c in plan.stored {
            if let it = items[c.lblk], isUnchanged(it) { keep.append(c) } else { drop.append(c) }
        }
        abandon(drop)
        guard !keep.isEmpty else { return }
        try publish(keep)
    }
}
