// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// A commit done in the background, in four steps, so that compression and the data's writes
/// run beside the requests instead of inside the writer's lock, and no client write carries a
/// whole commit (the kernel's `dirty_background_ratio`, where a full cache is `dirty_ratio`):
///
/// 1. `Volume.planCommit`, under the writer's lock, once a quarter of the cache is dirty:
///    the dirty blocks as they are now (arrays are values: a later write to a block changes
///    the cache's copy, not the plan's) and each block's `version`.
/// 2. `pack`, with no lock: each snapshot compressed into the plan's own buffer, by the committer
///    and by writers held back meanwhile (`helpPack`).
/// 3. `Volume.store`: the blocks unchanged since step 1 written to fresh pblks, their bits
///    set, all synced (format-v1's first step). Choosing them, taking their pblks and writing
///    the bitmaps run beside reads (the plugin's shared lock: no request changes the volume);
///    the data and the sync run beside writes too (no lock: fresh pblks are nobody else's).
///    Reads take these blocks from the cache.
/// 4. `Volume.finish`, under the writer's lock: their entries published, the old pblks
///    released. Whatever changes the volume first (a write, a flush, the close) does this
///    step itself before anything else (`publishStoredPlan`), so a stored block is never
///    changed, evicted or committed again before its entry names what step 3 wrote. A block
///    that a write or a flush changed while step 3 ran with no lock is not published: its
///    stored pblks are free again.
///
/// Only one plan is in flight. A commit by a change (a full cache, a write short of room, FUA)
/// before step 3 takes its pblks commits every block itself, as before; the plan then finds
/// them clean and stores nothing of them. From then until step 3's outcome, such a commit
/// leaves the blocks step 3 took to it (`isBeingStored`): their promises paid for the pblks
/// the plan holds, and a second copy would need room no promise covers (a device that filled
/// then refused writes and went read-only). Those promises still count meanwhile, so a write
/// may find no room that the finish would give back: the plugin waits for the plan and tries
/// it again before refusing it. A flush and a close wait for the plan in flight (plugin.c).
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
    /// Each item's place in `items`, by lblk.
    let index: [Int: Int]
    /// What step 3 stored (entries to publish), or why it failed.
    var stored: [Volume.Committed] = []
    var failure: Error?
    /// Compressed bytes of item i at i * stride (made by `pack`).
    let buffer: ByteBuffer
    let stride: Int
    /// The items to pack, taken one at a time by the committer and by any writer held back
    /// meanwhile (`helpPack`), and each item's form as packed by whichever thread took it
    /// (copied into `items` once all are done: until then `items` is only read).
    private let claims: WorkClaims
    private let forms: UnsafeMutableBufferPointer<PackedBlock?>

    /// `buffer` holds at least `items.count` packed blocks (the volume's own, reused by each
    /// plan: a new one per plan fragmented the heap, 114 MB held for 52 MB in use).
    init(items: [Item], lblkSize: Int, level: CompressionLevel, buffer: ByteBuffer) {
        self.items = items
        index = Dictionary(items.indices.map { (items[$0].lblk, $0) }, uniquingKeysWith: { a, _ in a })
        self.lblkSize = lblkSize
        self.level = level
        stride = PackedBlock.maxCompressedLength(lblkSize: lblkSize)
        precondition(buffer.count >= items.count * stride)
        self.buffer = buffer
        claims = WorkClaims(count: items.count)
        forms = .allocate(capacity: items.count)
        _ = forms.initialize(from: items.map(\.form))
    }

    deinit {
        forms.deinitialize()
        forms.deallocate()
    }

    /// How many blocks the plan took.
    public var blockCount: Int { items.count }

    /// Step 2: compresses what is not packed yet, on one core (the committer's: the others
    /// serve requests) or on all of them (a flush, which its client waits for), with any
    /// writer that `helpPack`s meanwhile. Touches nothing but the plan, so it runs with no
    /// lock, beside reads and writes.
    public func pack(onAllCores: Bool = false) {
        let workers = onAllCores ? Parallel.workers : 1
        try? Parallel.forEachSlice(count: workers, parts: workers) { _, _ in helpPack() }
        claims.waitForAll()
        for i in items.indices { items[i].form = forms[i] }
    }

    /// Compresses blocks of the plan that no other thread took, until none is left: a writer
    /// held back until this plan ends does so instead of waiting idle while the committer
    /// compresses on one core (4K random writes: with one client the request threads waited
    /// there a tenth of their time, with four clients over a third; helping gave the four 3 %
    /// more writes a second). Returns at once when the plan is packed.
    public func helpPack() {
        claims.work { i in
            guard forms[i] == nil else { return }  // packed ahead
            forms[i] = items[i].snapshot.data.withUnsafeBytes { src in
                PackedBlock.pack(src.baseAddress!, lblkSize: lblkSize, into: buffer.base + i * stride, level: level)
            }
        }
    }
}

extension Volume {
    /// Whether enough of the cache is dirty for a commit in the background (a quarter).
    public var wantsBackgroundCommit: Bool { dirtyBlocks >= max(1, cacheCapacity / 4) }

    /// Whether so much of the cache is dirty (seven eighths) that writers should wait for a
    /// commit before they add more, as the kernel's writers do past `dirty_ratio`: else the
    /// write that finds the cache full commits all of it under the writer's lock.
    public var wantsWritersToWait: Bool { dirtyBlocks >= max(1, cacheCapacity * 7 / 8) }

    /// Blocks a plan takes at most: an eighth of the cache (its buffer counts in the peak RSS).
    var planBlocks: Int { max(1, cacheCapacity / 8) }

    /// Step 1: the dirty blocks as they are now, the least recently used first, up to
    /// `planBlocks`, in lblk order; nil when there are none, when a plan is in flight (they
    /// share one buffer), or when the volume takes no more writes. A flush's plans take only
    /// the blocks dirty when it came (`changes` was `mark`, as `flush(dirtyBy:)`): else the
    /// writes that raced it filled its plans, and what it owed was left to its last step,
    /// which commits under the writer's lock.
    public func planCommit(dirtyBy mark: Int = .max) -> CommitPlan? {
        guard dirtyBlocks > 0, readOnlyAfter == nil, !planInFlight else { return nil }
        let dirty = blocks.oldestKeys(limit: planBlocks, where: { $0.isOwed(toFlushAt: mark) }).sorted()
        guard !dirty.isEmpty else { return nil }
        let items = dirty.compactMap { n in
            blocks.peek(n).map { b in
                CommitPlan.Item(lblk: n, block: b, version: b.version, snapshot: b.snapshot, form: b.form)
            }
        }
        planInFlight = true
        return CommitPlan(items: items, lblkSize: geometry.lblkSize, level: level, buffer: planBuffer)
    }

    /// Step 3: the blocks of `plan` that did not change since it was made, written and synced
    /// with their bits; the entries wait for `finish`. `shared` runs its body beside reads but
    /// no change (the plugin's shared lock; a plain call in tests): choosing the blocks, taking
    /// their pblks and old entries, writing the bitmaps, and the outcome. The data and the sync
    /// run outside it, beside writes too: they touch only fresh pblks, which no entry names
    /// and the allocator gives no one else, and a block written meanwhile is dropped when the
    /// plan is published (`publishStoredPlan`). The plan counts as stored only after the sync,
    /// so no change publishes entries that name unsynced data. A failure is kept for `finish`
    /// to throw, and the volume is read-only from then on, as after a failed flush.
    public func store(_ plan: CommitPlan, shared: (() -> Void) -> Void = { $0() }) {
        var blocks: [StoringBlock] = []
        var failure: Error?
        shared {
            do { blocks = try takePblks(for: plan) } catch { failure = error }
            // Until the outcome, a commit by a change leaves these blocks to the plan: a
            // second copy would need room their promises do not cover.
            if failure == nil && !blocks.isEmpty { storingPlan = plan }
        }
        guard failure != nil || !blocks.isEmpty else { return }
        var stored: [Committed] = []
        if failure == nil {
            do {
                for b in blocks {
                    let it = plan.items[b.item]
                    try CachedBlock.withStoredBytes(
                        of: it.snapshot, as: b.form, packed: plan.buffer.base + b.item * plan.stride
                    ) { stored.append((it.lblk, try write(b.form, lblk: it.lblk, from: $0, to: b.pblks), b.old)) }
                }
            } catch { failure = error }
        }
        if failure == nil { shared { do { try meta.writeDirtyBitmaps() } catch { failure = error } } }
        if failure == nil { do { try device.sync() } catch { failure = error } }
        shared {
            storingPlan = nil
            guard let failure else {
                plan.stored = stored
                storedPlan = plan
                return
            }
            freeUnnamed(blocks.flatMap(\.pblks))
            plan.failure = failure
            try? readOnlyOnFailure { throw failure }
        }
    }

    /// A block being stored: its place in the plan, how it is stored, its fresh pblks and the
    /// entry it replaces.
    typealias StoringBlock = (item: Int, form: PackedBlock, pblks: [Pblk], old: AllocationEntry)

    /// The plan's blocks that did not change since it was made (and are packed), with fresh pblks and the
    /// entries they replace (`replacedEntry`); refused after a failed commit. Pblks taken before a failure are free again.
    private func takePblks(for plan: CommitPlan) throws -> [StoringBlock] {
        if let failed { throw failed }
        var out: [StoringBlock] = []
        do {
            for (i, it) in plan.items.enumerated() {
                guard let form = it.form, isUnchanged(it) else { continue }
                let old = try replacedEntry(it.lblk)
                out.append((i, form, try allocate(for: form, lblk: it.lblk), old))
            }
        } catch {
            freeUnnamed(out.flatMap(\.pblks))
            throw error
        }
        return out
    }

    /// Whether lblk `n` is a block that the plan storing its data (with no lock) took pblks
    /// for and that has not changed since: a commit by a change leaves it to that plan (its
    /// promise is spent on the pblks the plan holds), and the cache keeps it.
    /// (Unchanged now means unchanged when `takePblks` ran: a version only grows, and a block
    /// that left the cache never comes back as the same object.)
    func isBeingStored(_ n: Int) -> Bool {
        guard let plan = storingPlan, let i = plan.index[n] else { return false }
        return plan.items[i].form != nil && isUnchanged(plan.items[i])
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
    /// that changed since (a write or a flush while the store wrote its data with no lock)
    /// keeps its new bytes: its stored pblks are freed.
    func publishStoredPlan() throws {
        guard let plan = storedPlan else { return }
        storedPlan = nil
        var keep: [Committed] = [], drop: [Committed] = []
        for c in plan.stored {
            if let i = plan.index[c.lblk], isUnchanged(plan.items[i]) { keep.append(c) } else { drop.append(c) }
        }
        abandon(drop)
        // Their bits are clear again in the cache; a publish writes them with its own, and
        // when there is none they are written here (else they would stay set on the device,
        // pblks lost to every later writer until a check).
        guard !keep.isEmpty else { return try readOnlyOnFailure { try meta.writeDirtyBitmaps() } }
        try publish(keep)
    }
}
