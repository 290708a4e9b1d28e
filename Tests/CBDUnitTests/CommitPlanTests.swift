// SPDX-License-Identifier: Apache-2.0
import Testing
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

    /// A block written again while its plan was being packed keeps its new bytes: the plan
    /// stores the blocks that did not change and leaves that one dirty, for a later commit.
    @Test func aBlockWrittenDuringThePackStaysDirtyWithItsNewBytes() throws {
        let dev = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: 16 * bs)  // plans of two blocks
        try v.write(block(1), at: 0)
        try v.write(block(2), at: bs)
        let plan = try #require(v.planCommit())
        plan.pack()
        try v.write(Array(block(3)[0..<1000]), at: 100)  // block 0 changes in part after the plan
        v.store(plan)
        try v.finish(plan)
        #expect(v.unstoredBlocks == 1, "block 1 stored, block 0 left dirty")
        #expect(try v.entry(1) != .unallocated && v.entry(0) == .unallocated)
        var expected = block(1)
        expected.replaceSubrange(100..<1100, with: block(3)[0..<1000])
        #expect(try v.bytes(at: 0, count: bs) == expected)
        try v.close()
        let reopened = try Volume(device: dev)
        #expect(try reopened.bytes(at: 0, count: 2 * bs) == expected + block(2), "the device holds the newest bytes")
        #expect(try bitmapMismatches(reopened).isEmpty)
    }

    /// A block written after its plan stored it (data written, entry not yet published): the
    /// write publishes the plan's entries first, then changes the block, which stays dirty
    /// with its new bytes; the finish then has nothing left to do.
    @Test func aWriteAfterTheStorePublishesThePlanFirst() throws {
        let dev = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: 16 * bs)
        try v.write(block(1), at: 0)
        try v.write(block(2), at: bs)
        let plan = try #require(v.planCommit())
        plan.pack()
        v.store(plan)
        #expect(try v.entry(0) == .unallocated && v.entry(1) == .unallocated, "published before the finish")
        try v.write(Array(block(3)[0..<1000]), at: 100)
        #expect(try v.entry(0) != .unallocated && v.entry(1) != .unallocated, "the write did not publish the plan")
        #expect(v.unstoredBlocks == 1, "block 0 is dirty again with its new bytes")
        let entries = try (0..<2).map { try v.entry($0) }
        try v.finish(plan)
        #expect(try (0..<2).map { try v.entry($0) } == entries, "the finish published again")
        var expected = block(1)
        expected.replaceSubrange(100..<1100, with: block(3)[0..<1000])
        try v.close()
        let reopened = try Volume(device: dev)
        #expect(try reopened.bytes(at: 0, count: 2 * bs) == expected + block(2))
        #expect(try bitmapMismatches(reopened).isEmpty)
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
    @Test func randomInterleavingsMatchTheModel() throws {
        let blocks = 20
        let dev = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: dev, cacheBytes: 16 * bs)  // plans of two; full caches commit on their own too
        var model = [UInt8](repeating: 0, count: blocks * bs)
        var rng = SplitMix(seed: 3535)
        var plan: CommitPlan?
        var storedOne = false
        var (stored, skipped, publishedByAChange) = (0, 0, 0)
        for step in 0..<800 {
            switch rng.next() % 11 {
            case 0, 1:
                if plan == nil { plan = v.planCommit() }
            case 2:
                plan?.pack()
            case 3:
                if let p = plan, !storedOne, p.items.allSatisfy({ $0.form != nil }) {
                    skipped += p.items.filter { $0.block.version != $0.version && $0.block.dirty }.count
                    v.store(p)
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
                let n = Int(rng.next() % UInt64(blocks))
                let kind = rng.next() % 4
                var bytes = block(UInt8(truncatingIfNeeded: rng.next()), compressible: kind != 1)
                if kind == 3 { bytes = [UInt8](repeating: 0, count: bs) }
                let whole = rng.next() % 2 == 0
                let offset = whole ? n * bs : n * bs + Int(rng.next() % UInt64(bs / 2))
                let count = whole ? bs : 1 + Int(rng.next() % UInt64(bs / 2))
                let part = Array(bytes[0..<count])
                try part.withUnsafeBytes { buf in
                    let ahead = v.prefetch(offset: offset, length: count, adding: v.packAhead(buf, at: offset))
                    try v.write(buf, at: offset, ahead: ahead)
                }
                model.replaceSubrange(offset..<offset + count, with: part)
            }
            let n = Int(rng.next() % UInt64(blocks))
            let same = try v.bytes(at: n * bs, count: bs) == Array(model[n * bs..<(n + 1) * bs])
            #expect(same, "step \(step): block \(n) differs from the model")
        }
        #expect(
            stored > 10 && skipped > 5 && publishedByAChange > 5,
            "plans stored \(stored) blocks, left \(skipped) that changed; \(publishedByAChange) published by a change")
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
