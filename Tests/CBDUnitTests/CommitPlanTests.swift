// SPDX-License-Identifier: Apache-2.0
import Testing
import Dispatch
@testable import CBDFormat
@testable import CBDVolume
@testable import CBDCheck
@testable import CBDDevice
@testable import CBDTestSupport

/// The background commit (`CommitPlan`: planned under the writer's lock, packed with no lock,
/// stored beside reads, finished under the lock) stores only blocks that did not change since
/// the plan, never newer bytes with older ones, lets nothing change a stored block before its
/// entry is published, and leaves the device as a plain commit would.
@Suite struct CommitPlanTests {
    let bs = 65536

    func block(_ seed: UInt8, compressible: Bool = true) -> [UInt8] {
        var rng = SplitMix(seed: UInt64(seed))
        return (0..<bs).map {
            compressible ? UInt8(truncatingIfNeeded: $0 / 64) &+ seed : UInt8(truncatingIfNeeded: rng.next())
        }
    }

    /// A cache of two-block plans holding blocks 0 and 1 (`block(1)`, `block(2)`), dirty, and a
    /// plan of both, packed.
    func packedPlanOfTwoBlocks() throws -> (MemoryDevice, Volume, CommitPlan) {
        let dev = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: 16 * bs)  // plans of two blocks
        try v.write(block(1), at: 0)
        try v.write(block(2), at: bs)
        let plan = try #require(v.planCommit())
        plan.pack()
        return (dev, v, plan)
    }

    /// Block 0 changed in part after the plan (`block(3)`'s first 1000 bytes at 100).
    func changeBlock0(_ v: Volume) throws { try v.write(Array(block(3)[0..<1000]), at: 100) }

    /// Blocks 0 and 1 as the tests leave them: block 0 changed in part, block 1 as planned.
    var changedBlocks: [UInt8] {
        var expected = block(1)
        expected.replaceSubrange(100..<1100, with: block(3)[0..<1000])
        return expected + block(2)
    }

    /// After close, the device holds `changedBlocks` and its bitmaps match its entries.
    func expectStored(_ dev: MemoryDevice, _ v: Volume, _ context: String = "") throws {
        try v.close()
        let reopened = try Volume(device: dev)
        #expect(try reopened.bytes(at: 0, count: 2 * bs) == changedBlocks, "the device holds older bytes \(context)")
        #expect(try bitmapMismatches(reopened).isEmpty, "\(context)")
    }

    /// A block written again while its plan was being packed keeps its new bytes: the plan
    /// stores the blocks that did not change and leaves that one dirty, for a later commit.
    @Test func aBlockWrittenDuringThePackStaysDirtyWithItsNewBytes() throws {
        let (dev, v, plan) = try packedPlanOfTwoBlocks()
        try changeBlock0(v)
        v.store(plan)
        try v.finish(plan)
        #expect(v.unstoredBlocks == 1, "block 1 stored, block 0 left dirty")
        #expect(try v.entry(1) != .unallocated && v.entry(0) == .unallocated)
        #expect(try v.bytes(at: 0, count: 2 * bs) == changedBlocks)
        try expectStored(dev, v)
    }

    /// Writers held back while a plan is packed compress some of its blocks (`helpPack`, on
    /// their own threads, beside the committer's `pack`): every block is packed once, where
    /// the store takes it from, so the device holds what a plan packed alone would store.
    @Test func helpersPackingBesideThePlansOwnPackStoreEveryBlock() throws {
        let dev = try memoryDevice(physical: 16 << 20, logical: 32 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: 192 * bs)  // plans of 24 blocks
        let blocks = (0..<24).map { block(UInt8($0), compressible: $0 % 3 != 0) }
        for (n, b) in blocks.enumerated() { try v.write(b, at: n * bs) }
        let plan = try #require(v.planCommit())
        #expect(plan.blockCount == 24)
        DispatchQueue.concurrentPerform(iterations: 4) { w in
            if w == 0 { plan.pack() } else { plan.helpPack() }
        }
        v.store(plan)
        try v.finish(plan)
        #expect(v.unstoredBlocks == 0)
        try v.close()
        let reopened = try Volume(device: dev)
        #expect(try reopened.bytes(at: 0, count: 24 * bs) == Array(blocks.joined()))
        #expect(try bitmapMismatches(reopened).isEmpty)
        #expect(try reopened.entry(0).pblks.count == bs / 4096, "random data is stored raw")
        #expect(try reopened.entry(1).pblks.count < bs / 4096, "compressible data is compressed")
    }

    /// A block written after its plan stored it (data written, entry not yet published): the
    /// write publishes the plan's entries first, then changes the block, which stays dirty
    /// with its new bytes; the finish then has nothing left to do.
    @Test func aWriteAfterTheStorePublishesThePlanFirst() throws {
        let (dev, v, plan) = try packedPlanOfTwoBlocks()
        v.store(plan)
        #expect(try v.entry(0) == .unallocated && v.entry(1) == .unallocated, "published before the finish")
        try changeBlock0(v)
        #expect(try v.entry(0) != .unallocated && v.entry(1) != .unallocated, "the write did not publish the plan")
        #expect(v.unstoredBlocks == 1, "block 0 is dirty again with its new bytes")
        let entries = try (0..<2).map { try v.entry($0) }
        try v.finish(plan)
        #expect(try (0..<2).map { try v.entry($0) } == entries, "the finish published again")
        try expectStored(dev, v)
    }

    /// The store writes and syncs its data with no lock, so a writer may change the volume
    /// between its parts: here block 0 is written again and the whole cache flushed while the
    /// plan's data is written. The plan's copy of block 0 must not be published over the newer
    /// one (the flush commits the new one; its pblks in the plan are free again: no leak), and
    /// block 1, unchanged, is left to the plan.
    @Test func writesAndAFlushWhileTheStoreWritesItsDataLoseNothing() throws {
        for (window, flush) in [(0, true), (0, false), (1, true), (1, false)] {
            let (dev, v, plan) = try packedPlanOfTwoBlocks()
            var part = 0
            v.store(plan) { body in
                body()
                // After the pblks are taken (window 0: the data is written next) or after the
                // bitmaps (window 1: the sync is next): a writer runs.
                if part == window {
                    try? changeBlock0(v)
                    if flush { try? v.flush() }
                }
                part += 1
            }
            #expect(part == 3, "the store took the shared lock \(part) times")
            try v.finish(plan)
            #expect(try v.bytes(at: 0, count: 2 * bs) == changedBlocks, "window \(window), flush \(flush)")
            try expectStored(dev, v, "window \(window), flush \(flush)")
        }
    }

    /// A device with room for one more raw block, less than two: block 1, raw, written again
    /// and planned. While the store writes its data with no lock, a full flush (what a writer
    /// short of room runs) must leave the plan's block to it: a second copy needs 16 more pblks,
    /// which only the old copy's release at the finish gives back. (Committed twice, a commit
    /// ran out of room and the device went read-only: tsan-serve's full-device case.) A raw write
    /// meanwhile is refused, and `isStoringPlan` tells the plugin to try it again after the
    /// finish, when it fits.
    @Test func aFlushWhileTheStoreWritesOnAFullDeviceLeavesThePlanItsBlock() throws {
        let dev = try memoryDevice(physical: 4 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: 16 * bs)
        var model = [UInt8](repeating: 0, count: 16 << 20)
        var n = 1
        func put(_ bytes: [UInt8]) throws {
            try v.write(bytes, at: n * bs)
            try v.flush()
            model.replaceSubrange(n * bs..<(n + 1) * bs, with: bytes)
            n += 1
        }
        // Raw blocks, then blocks of one pblk, until 17 to 24 pblks are free.
        while try v.usage().free >= 48 { try put(block(UInt8(n), compressible: false)) }
        while try v.usage().free > 24 {
            try put(Array(block(UInt8(n), compressible: false)[0..<200]) + [UInt8](repeating: 0, count: bs - 200))
        }
        let raw = block(99, compressible: false), another = block(98, compressible: false)
        try v.write(raw, at: bs)
        model.replaceSubrange(bs..<2 * bs, with: raw)
        let plan = try #require(v.planCommit())
        plan.pack()
        var part = 0
        var flushFailed: Error?, refusal: Error?
        v.store(plan) { body in
            body()
            if part == 0 {  // the data is written next, with no lock
                #expect(v.isStoringPlan)
                do { try v.flush() } catch { flushFailed = error }
                do { try v.write(another, at: n * bs) } catch { refusal = error }
            }
            part += 1
        }
        #expect(flushFailed == nil, "the flush inside the store failed: \(flushFailed.map { "\($0)" } ?? "")")
        #expect(v.readOnlyAfter == nil)
        #expect((refusal as? CBDError)?.kind == .noSpace, "a raw write meanwhile: \(String(describing: refusal))")
        try v.finish(plan)
        #expect(!v.isStoringPlan)
        try v.write(another, at: n * bs)
        model.replaceSubrange(n * bs..<(n + 1) * bs, with: another)
        try v.close()
        let reopened = try Volume(device: dev)
        #expect(try reopened.bytes(at: 0, count: model.count) == model)
        #expect(try bitmapMismatches(reopened).isEmpty)
    }

    /// A cache of one block, which a plan is storing: a write of another block meanwhile must
    /// not evict it (dirty, its entry not published), so the cache holds one more until the
    /// finish; a close meanwhile commits the other block and leaves the device DIRTY.
    @Test func aOneBlockCacheKeepsThePlansBlockWhileItIsStored() throws {
        let dev = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: bs)
        try v.write(block(1), at: 0)
        let plan = try #require(v.planCommit())
        plan.pack()
        var part = 0
        var failure: Error?
        v.store(plan) { body in
            body()
            if part == 0 {
                do {
                    try v.write(block(2), at: bs)
                    try v.close()
                } catch { failure = error }
                #expect(v.header.isDirty, "closed clean with a plan's block not yet published")
            }
            part += 1
        }
        #expect(failure == nil, "\(String(describing: failure))")
        try v.finish(plan)
        #expect(try v.bytes(at: 0, count: 2 * bs) == block(1) + block(2))
        try v.close()
        #expect(!v.header.isDirty)
        let reopened = try Volume(device: dev)
        #expect(try reopened.bytes(at: 0, count: 2 * bs) == block(1) + block(2))
        #expect(try bitmapMismatches(reopened).isEmpty)
    }

    /// A flush's plans take only the blocks dirty when it came (`planCommit(dirtyBy:)`): with
    /// the store beside writes, the writes that raced the flush filled its plans, and what it
    /// owed was left to its last step, under the writer's lock. A block dirty before the mark
    /// and written again after it is still owed.
    @Test func aFlushsPlansTakeOnlyTheBlocksDirtyWhenItCame() throws {
        let dev = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: 16 * bs)  // plans of two blocks
        try v.write(block(1), at: 0)
        let mark = v.changes
        try v.write(block(2), at: bs)
        try v.write(block(3), at: 2 * bs)
        try v.write(block(4), at: 0)
        let plan = try #require(v.planCommit(dirtyBy: mark))
        #expect(plan.items.map(\.lblk) == [0], "the flush's plan took blocks dirtied after it came")
        plan.pack()
        v.store(plan)
        try v.finish(plan)
        #expect(v.unstoredBlocks == 2)
        #expect(v.planCommit(dirtyBy: mark) == nil, "nothing is owed to the flush any more")
        let later = try #require(v.planCommit())
        #expect(later.items.map(\.lblk) == [1, 2])
        later.pack()
        v.store(later)
        try v.finish(later)
        try v.close()
        #expect(try Volume(device: dev).bytes(at: 0, count: 3 * bs) == block(4) + block(2) + block(3))
    }

    /// A flush between the plan and its finish commits every block itself: the plan then finds
    /// them clean and stores nothing (no pblk is taken twice, none leaks).
    @Test func aFlushBeforeTheFinishLeavesThePlanNothingToStore() throws {
        let dev = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: 32 * bs)  // plans of four blocks
        for n in 0..<4 { try v.write(block(UInt8(n), compressible: n % 2 == 0), at: n * bs) }
        let plan = try #require(v.planCommit())
        #expect(plan.items.count == 4)
        plan.pack()
        try v.flush()
        let entries = try (0..<4).map { try v.entry($0) }
        v.store(plan)
        try v.finish(plan)
        #expect(try (0..<4).map { try v.entry($0) } == entries, "the finish stored blocks again")
        try v.close()
        #expect(try bitmapMismatches(try Volume(device: dev)).isEmpty)
    }

    /// Writes (whole blocks packed ahead, parts, zeros), plans, packs, finishes and flushes in
    /// a seeded random order, against a model: every read matches it, plans meet blocks that
    /// changed after them, and after close the device holds the model with consistent bitmaps.
    /// On a device with room for about half the blocks raw, writes are refused for room (they
    /// change nothing), and nothing else fails: no commit, inside a store or not, runs out of
    /// room, and the volume never turns read-only.
    @Test(arguments: [false, true]) func randomInterleavingsMatchTheModel(nearlyFull: Bool) throws {
        let blocks = 20
        let dev = try memoryDevice(physical: nearlyFull ? 1 << 20 : 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: 16 * bs)  // plans of two; full caches commit on their own too
        var model = [UInt8](repeating: 0, count: blocks * bs)
        var rng = SplitMix(seed: 3537)
        var plan: CommitPlan?
        var storedOne = false
        var (stored, skipped, publishedByAChange, changesInsideStores, refused) = (0, 0, 0, 0, 0)
        var flushesInsideStores = 0
        /// A write of a whole block (packed ahead), a part, or zeros, as the plugin makes it.
        func randomWrite() throws {
            let n = Int(rng.next() % UInt64(blocks))
            let kind = rng.next() % 4
            var bytes = block(UInt8(truncatingIfNeeded: rng.next()), compressible: nearlyFull ? kind == 0 : kind != 1)
            if kind == 3 { bytes = [UInt8](repeating: 0, count: bs) }
            let whole = rng.next() % 2 == 0
            let offset = whole ? n * bs : n * bs + Int(rng.next() % UInt64(bs / 2))
            let count = whole ? bs : 1 + Int(rng.next() % UInt64(bs / 2))
            let part = Array(bytes[0..<count])
            do {
                try part.withUnsafeBytes { buf in
                    let ahead = v.prefetch(offset: offset, length: count, adding: v.packAhead(buf, at: offset))
                    try v.write(buf, at: offset, ahead: ahead)
                }
            } catch let e as CBDError where e.kind == .noSpace && nearlyFull {
                refused += 1
                return
            }
            model.replaceSubrange(offset..<offset + count, with: part)
        }
        for step in 0..<(nearlyFull ? 3000 : 800) {
            switch rng.next() % 11 {
            case 0, 1:
                if plan == nil { plan = v.planCommit() }
            case 2:
                plan?.pack()
            case 3:
                if let p = plan, !storedOne, p.items.allSatisfy({ $0.form != nil }) {
                    skipped += p.items.filter { $0.block.version != $0.version && $0.block.dirty }.count
                    var caught: Error?
                    v.store(p) { body in
                        body()
                        // The data and the sync run with no lock: writes and flushes may come.
                        if rng.next() % 2 == 0 {
                            do { try randomWrite() } catch { caught = error }
                            changesInsideStores += 1
                        }
                        if rng.next() % 6 == 0 {
                            do { try v.flush() } catch { caught = error }
                            flushesInsideStores += 1
                        }
                    }
                    if let caught { throw caught }
                    stored += p.stored.count
                    storedOne = true
                }
            case 10:
                if let p = plan, storedOne {
                    if v.storedPlan == nil && !p.stored.isEmpty { publishedByAChange += 1 }
                    try v.finish(p)
                    #expect(v.storedPlan == nil, "step \(step): the finish left the plan unpublished")
                    (plan, storedOne) = (nil, false)
                }
            case 4:
                if rng.next() % 4 == 0 { try v.flush() }
            default:
                try randomWrite()
            }
            let n = Int(rng.next() % UInt64(blocks))
            let same = try v.bytes(at: n * bs, count: bs) == Array(model[n * bs..<(n + 1) * bs])
            #expect(same, "step \(step): block \(n) differs from the model")
        }
        // What each run must have met: plans overtaken by changes (roomy), refusals for room and
        // flushes while a store held pblks (nearly full).
        #expect(
            stored > 10 && changesInsideStores > 20
                && (nearlyFull ? refused > 10 && flushesInsideStores > 5 : skipped > 5 && publishedByAChange > 5),
            """
            plans stored \(stored) blocks, left \(skipped) that changed; \(publishedByAChange) published by a \
            change; \(changesInsideStores) writes and \(flushesInsideStores) flushes inside stores; \(refused) \
            refused for room
            """)
        #expect(v.readOnlyAfter == nil)
        try v.close()
        let reopened = try Volume(device: dev)
        #expect(try reopened.bytes(at: 0, count: blocks * bs) == model, "the device differs from the model after close")
        #expect(try bitmapMismatches(reopened).isEmpty)
    }

    /// A background commit that fails at any of its writes (data, syncs, bitmaps, the intent
    /// and entries, the release; in its store or its finish) makes the volume read-only at once, as a failed flush does:
    /// the next write is refused, every acknowledged block still reads back from the cache,
    /// and after fsck.cbd -y every block holds its old or its new bytes.
    @Test func aFailingBackgroundCommitStopsWritesAndLosesNothingAcknowledged() throws {
        let scratch = try Scratch()  // lost+found of the repairs
        let base = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let old = try Volume(device: base)
        for n in 0..<6 { try old.write(block(UInt8(n)), at: n * bs) }
        try old.close()
        let new = (0..<6).map { block(UInt8(50 + $0), compressible: $0 % 3 != 0) }
        // Where the finish's writes are: counted on a twin that does not fail.
        let probe = base.copy()
        let pv = try Volume(device: probe, cacheBytes: 48 * bs)  // plans of six blocks
        for n in 0..<6 { try pv.write(new[n], at: n * bs) }
        let plan = try #require(pv.planCommit())
        plan.pack()
        let first = probe.writeCount
        pv.store(plan)
        try pv.finish(plan)
        #expect(pv.unstoredBlocks == 0 && probe.writeCount - first >= 8, "\(probe.writeCount - first) writes")
        for k in first..<probe.writeCount {
            let dev = base.copy()
            let v = try Volume(device: dev, cacheBytes: 48 * bs)
            for n in 0..<6 { try v.write(new[n], at: n * bs) }
            let p = try #require(v.planCommit())
            p.pack()
            dev.failAtWrite = k
            v.store(p)
            #expect(throws: CBDError.self, "write \(k)") { try v.finish(p) }
            #expect(v.readOnlyAfter != nil, "write \(k): still taking writes")
            #expect(throws: CBDError.self) { try v.write(new[0], at: 0) }
            for n in 0..<6 {
                let acknowledged = try v.bytes(at: n * bs, count: bs) == new[n]
                #expect(acknowledged, "write \(k): block \(n) does not read its acknowledged bytes")
            }
            dev.failAtWrite = nil
            var options = Checker.Options()
            options.mode = .fixAll
            options.lostFound = LostFound(directory: scratch.file("lost+found-\(k)"))
            try Checker(device: dev, options: options).run()
            let repaired = try Volume(device: dev)
            for n in 0..<6 {
                let got = try repaired.bytes(at: n * bs, count: bs)
                #expect(got == block(UInt8(n)) || got == new[n], "write \(k): block \(n) is neither old nor new")
            }
        }
    }
}
