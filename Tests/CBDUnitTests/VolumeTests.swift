// SPDX-License-Identifier: Apache-2.0
import Dispatch
import Testing
@testable import CBDFormat
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDTestSupport

/// A device that logs reads and writes, to check the order of I/O.
final class TracingDevice: BlockDevice {
    let inner: MemoryDevice
    var log: [(write: Bool, pblk: Int)] = []
    init(_ inner: MemoryDevice) { self.inner = inner }
    var path: String { inner.path }
    var size: Int { inner.size }
    var isWritable: Bool { inner.isWritable }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        log.append((false, offset / 4096))
        try inner.read(into: buffer, at: offset)
    }
    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        log.append((true, offset / 4096))
        try inner.write(buffer, at: offset)
    }
    func zero(_ range: Range<Int>) throws { try inner.zero(range) }
    func sync() throws { try inner.sync() }
}

/// Makes a formatted in-memory device.

@Suite struct VolumeTests {
    func pattern(_ seed: UInt8, _ count: Int, compressible: Bool = true) -> [UInt8] {
        var rng = SplitMix(seed: UInt64(seed))
        return (0..<count).map { i in
            compressible
                ? UInt8(truncatingIfNeeded: i / 64) &+ seed
                : UInt8(truncatingIfNeeded: rng.next())
        }
    }

    /// The seed's failing sequence: object x flushes, is reused as y, x is read again.
    /// With a one-block cache each step forces the reuse; x must read its new data.
    /// Commits come in batches of a cache's worth of blocks: the syncs grow with the data
    /// written over the cache size, not with the number of blocks (once per block before).
    @Test func syncsPerCacheNotPerBlock() throws {
        let bs = 65536
        let mem = try memoryDevice(physical: 64 << 20, logical: 64 << 20, lblkShift: 4)
        let capacity = 16
        let v = try Volume(device: mem, cacheBytes: capacity * bs)
        var rng = SplitMix(seed: 4)
        let blocks = 400
        let start = mem.syncCount
        for n in 0..<blocks {
            let data = (0..<bs).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            try data.withUnsafeBytes { try v.write($0, at: n * bs) }
        }
        try v.close()
        let syncs = mem.syncCount - start
        // At most ~6 syncs per batch (data, journal, intent, entries, frees, header) and two
        // more at the ends (DIRTY set and cleared).
        #expect(syncs <= 6 * (blocks / capacity + 1) + 2, "\(syncs) syncs for \(blocks) blocks")
        #expect(syncs < blocks, "\(syncs) syncs for \(blocks) blocks")
        var back = [UInt8](repeating: 0, count: bs)
        try back.withUnsafeMutableBytes { try Volume(device: mem).read(into: $0, at: (blocks - 1) * bs) }
        #expect(back.contains { $0 != 0 })
    }

    /// A read of many blocks (decompressed together on all cores) gives what reads of one
    /// block at a time give, and still names a block whose data is corrupt.
    @Test func multiBlockReadsMatchSingleBlockReads() throws {
        let bs = 65536
        let mem = try memoryDevice(physical: 16 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: mem)
        for n in 0..<48 where n % 5 != 0 {
            try pattern(UInt8(n), bs, compressible: n % 3 != 0).withUnsafeBytes { try v.write($0, at: n * bs) }
        }
        try v.close()
        var whole = [UInt8](repeating: 1, count: 48 * bs)
        try whole.withUnsafeMutableBytes { try Volume(device: mem, cacheBytes: 64 * bs).read(into: $0, at: 0) }
        let single = try Volume(device: mem, cacheBytes: bs)
        for n in 0..<48 {
            var one = [UInt8](repeating: 2, count: bs)
            try one.withUnsafeMutableBytes { try single.read(into: $0, at: n * bs) }
            #expect(one[...] == whole[n * bs..<(n + 1) * bs], "block \(n)")
        }
        // Damage the compressed data of block 7: the many-block read names it.
        let e = try Volume(device: mem).entry(7)
        guard case .compressed(_, let pblks) = e else { Issue.record("block 7 should be compressed"); return }
        try mem.writePblks([UInt8](repeating: 0xEE, count: 4096), at: Int(pblks[0]))
        // The one block reader's message and kind (the plugin answers EIO for .corrupt).
        #expect(
            throws: CBDError(
                "memory: logical block 7 (bytes 458752-524287): compressed data is corrupt",
                kind: .corrupt)
        ) {
            try whole.withUnsafeMutableBytes { try Volume(device: mem, cacheBytes: 64 * bs).read(into: $0, at: 0) }
        }
    }

    /// `readShared` on many threads at once (as the nbdkit plugin calls it) reads what `read`
    /// reads: committed blocks of every storage class, holes, and blocks still dirty in the
    /// cache, at unaligned offsets.
    @Test func sharedReadsOnManyThreadsMatchRead() throws {
        let bs = 65536, count = 48
        let mem = try memoryDevice(physical: 16 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: mem, cacheBytes: 8 * bs)
        for n in 0..<count where n % 5 != 0 {
            try v.write(pattern(UInt8(n), bs, compressible: n % 3 != 0), at: n * bs)
        }
        try v.flush()
        for n in [3, 10, 11] { try v.write(pattern(UInt8(100 + n), bs), at: n * bs) }  // dirty, cached
        let expected = try v.bytes(at: 0, count: count * bs)
        var rng = SplitMix(seed: 9)
        let ranges: [(Int, Int)] = (0..<400).map { _ in
            let offset = Int(rng.next() % UInt64(count * bs - 1))
            return (offset, 1 + Int(rng.next() % UInt64(min(3 * bs, count * bs - offset))))
        }
        let mismatches = Lock(), box = UncheckedBox(v)
        nonisolated(unsafe) var bad: [Int] = []
        DispatchQueue.concurrentPerform(iterations: 8) { w in
            for i in stride(from: w, to: ranges.count, by: 8) {
                let (offset, length) = ranges[i]
                var out = [UInt8](repeating: 0xEE, count: length)
                let ok = (try? out.withUnsafeMutableBytes { try box.value.readShared(into: $0, at: offset) }) != nil
                if !ok || out[...] != expected[offset..<offset + length] { mismatches.withLock { bad.append(i) } }
            }
        }
        #expect(bad.isEmpty, "ranges read wrong: \(bad.sorted())")
        try v.close()
    }

    /// A block read ahead of a write (`prefetch`, as the plugin does under its shared lock) is
    /// used only while no commit published an entry since: a block rewritten, committed and
    /// evicted in between is loaded again, and the write lands on its newest contents.
    @Test func prefetchedBlocksAreNeverStale() throws {
        let mem = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: mem, cacheBytes: 1)
        let bs = 65536
        let a = pattern(1, bs), b = pattern(2, bs), other = pattern(3, bs)
        try v.write(a, at: 0)
        try v.write(other, at: bs)  // a committed and evicted
        let ahead = try #require(v.prefetch(offset: 100, length: 10))  // block 0 as a, read ahead
        // Meanwhile another write: block 0 becomes b, is committed, and leaves the cache.
        try v.write(b, at: 0)
        try v.write(other, at: bs)
        let patch = [UInt8](repeating: 0xEE, count: 10)
        try patch.withUnsafeBytes { try v.write($0, at: 100, ahead: ahead) }
        var want = b
        want.replaceSubrange(100..<110, with: patch)
        let landedOnNewest = try v.bytes(at: 0, count: bs) == want
        #expect(landedOnNewest, "the write was applied to the stale read-ahead block")
        // With nothing committed in between the read-ahead is used, and is right.
        let fresh = try #require(v.prefetch(offset: bs + 5, length: 3))
        try [UInt8](repeating: 7, count: 3).withUnsafeBytes { try v.write($0, at: bs + 5, ahead: fresh) }
        var want2 = other
        want2.replaceSubrange(5..<8, with: [7, 7, 7])
        let readAhead = try v.bytes(at: bs, count: bs) == want2
        #expect(readAhead)
        try v.close()
        let again = try Volume(device: mem)
        let stored = try again.bytes(at: 0, count: 2 * bs) == want + want2
        #expect(stored)
    }

    @Test func noStaleReadAfterFlushAndReuse() throws {
        let mem = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let dev = TracingDevice(mem)
        let v = try Volume(device: dev, cacheBytes: 1)
        #expect(v.cacheCapacity == 1)
        let bs = 65536
        let x1 = pattern(1, bs), x2 = pattern(2, bs), y = pattern(3, bs, compressible: false)
        try v.write(x1, at: 0)
        try v.write(y, at: bs)  // x flushes, its object is reused for y
        #expect(try v.bytes(at: 0, count: bs) == x1)  // x read again from disk: new data, not stale zeros
        try v.write(x2, at: 0)  // x dirty again
        #expect(try v.bytes(at: bs, count: bs) == y)  // reuse for y: x2 must be committed first
        let before = dev.log.count
        #expect(try v.bytes(at: 0, count: bs) == x2)
        // The read of x came after every write of its commit: nothing was in flight.
        #expect(dev.log[before...].allSatisfy { !$0.write })
        try v.close()
        let again = try Volume(device: mem)
        #expect(try again.bytes(at: 0, count: 2 * bs) == x2 + y)
        #expect(try headerAndGeometry(mem).0.isDirty == false)
    }

    /// A FUA request (`flush(offset:length:)`) commits the blocks that hold its range, and no
    /// other: a copy of the device taken right after (a power cut) holds those blocks new and
    /// every other block old.
    @Test func fuaCommitsTheRequestsBlocksOnly() throws {
        let mem = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: mem)
        let bs = 65536
        let x = pattern(1, bs), y = pattern(2, bs, compressible: false)
        try v.write(x, at: 0)
        try v.write(y, at: 3 * bs + 100)  // blocks 3 and 4, each in part
        try v.flush(offset: 3 * bs + 100, length: bs)
        #expect(v.unstoredBlocks == 1, "block 0 waits; blocks 3 and 4 are committed")
        let cut = try Volume(device: mem.copy())
        #expect(try cut.entry(0) == .unallocated, "block 0 was committed with the FUA request")
        #expect(try cut.bytes(at: 3 * bs + 100, count: bs) == y, "the FUA request's bytes are not on the device")
        try v.close()
        let again = try Volume(device: mem)
        #expect(try again.bytes(at: 0, count: bs) == x)
        #expect(try again.bytes(at: 3 * bs + 100, count: bs) == y)
    }

    /// A flush commits the blocks dirty when it came (`flush(dirtyBy:)` with the mark it read
    /// then), as they are now, and leaves those that became dirty after: a copy of the device
    /// right after it holds the first new (block 0, written again after the mark, with its
    /// newest bytes) and the later ones old (block 2). Block 1, committed and written again
    /// after the mark, waits too: its bytes at the mark are on the device.
    @Test func aFlushCommitsWhatWasDirtyWhenItCame() throws {
        let mem = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: mem)
        let bs = 65536
        let (a, a2, b, b2, c) = (pattern(1, bs), pattern(2, 500), pattern(3, bs), pattern(4, bs), pattern(5, bs))
        try v.write(b, at: bs)
        try v.flush()
        try v.write(a, at: 0)
        let mark = v.changes
        try v.write(a2, at: 1000)  // block 0, still dirty from before the mark
        try v.write(b2, at: bs)  // block 1, clean at the mark
        try v.write(c, at: 2 * bs)  // block 2, new after the mark
        try v.flush(dirtyBy: mark)
        #expect(v.unstoredBlocks == 2, "blocks 1 and 2 wait, block 0 is committed")
        var newest = a
        newest.replaceSubrange(1000..<1500, with: a2)
        let cut = try Volume(device: mem.copy())
        #expect(try cut.bytes(at: 0, count: bs) == newest, "block 0 is not on the device as it is now")
        #expect(try cut.bytes(at: bs, count: bs) == b, "block 1 was committed by the flush")
        #expect(try cut.entry(2) == .unallocated, "block 2, written after the flush came, was committed")
        try v.close()
        let again = try Volume(device: mem)
        #expect(try again.bytes(at: 0, count: 3 * bs) == newest + b2 + c)
    }

    @Test func dirtyFlagSetBeforeFirstChangeAndClearedOnClose() throws {
        let mem = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: mem)
        #expect(try headerAndGeometry(mem).0.isDirty == false)
        try v.write([1, 2, 3], at: 100)
        #expect(try headerAndGeometry(mem).0.isDirty == true)
        try v.flush()
        #expect(try headerAndGeometry(mem).0.isDirty == true)
        try v.close()
        #expect(try headerAndGeometry(mem).0.isDirty == false)
    }

    @Test func storageClassesFollowTheFormat() throws {
        let mem = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: mem)
        let bs = 65536
        try v.write(pattern(1, bs), at: 0)  // compressible
        try v.write(pattern(2, bs, compressible: false), at: bs)  // raw
        try v.write([UInt8](repeating: 0, count: bs), at: 2 * bs)  // zeros: unallocated
        try v.write([9], at: 3 * bs)
        try v.discard(offset: 3 * bs, length: bs)  // discarded: unallocated
        try v.close()
        let r = try Volume(device: mem)
        guard case .compressed(let len, let p) = try r.entry(0) else { Issue.record("not compressed"); return }
        #expect(len <= bs - 4096 && p.count == (len + 4095) / 4096)
        // Own zone preferred.
        #expect(p.allSatisfy { r.geometry.dataZone(ofPblk: Int($0)) == 0 })
        guard case .raw(let rp) = try r.entry(1) else { Issue.record("not raw"); return }
        #expect(rp.count == 16)
        #expect(try r.entry(2) == .unallocated)
        #expect(try r.entry(3) == .unallocated)
        // Bitmap counts exactly the pblks in use.
        let used = p.count + rp.count
        #expect(try r.meta.bitmap(0).countSet(below: r.geometry.dataPblkCount(0)) == used)
    }

    @Test func rangesOutsideTheDeviceAreRefused() throws {
        let mem = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: mem)
        #expect(throws: CBDError.self) { try v.write([1], at: 16 << 20) }
        #expect(throws: CBDError.self) { try v.bytes(at: (16 << 20) - 1, count: 2) }
        #expect(throws: CBDError.self) { try v.discard(offset: -1, length: 1) }
        #expect(try v.bytes(at: (16 << 20) - 1, count: 1) == [0])
    }

    /// Old pblks of a block written again stay allocated in the image (the next commit takes
    /// them: a hole there would cost a deallocation and a reallocation per block); those of a
    /// discarded block become holes. Each copy of block 0 is incompressible (16 pblks).
    @Test func onlyFreedSpaceOfZeroedBlocksBecomesHoles() throws {
        let mem = try memoryDevice(physical: 8 << 20, logical: 16 << 20, lblkShift: 4)
        let v = try Volume(device: mem)
        let bs = 65536
        let geometry = try headerAndGeometry(mem).1
        func dataPblks() -> Set<Int> {
            Set(
                mem.snapshot().keys.filter { p in
                    if case .data = geometry.place(ofPblk: p) { return true }
                    return false
                })
        }
        try v.write(pattern(1, bs, compressible: false), at: 0)
        try v.flush()
        let first = Set(try v.entry(0).pblks.map { Int($0) })
        try v.write(pattern(2, bs, compressible: false), at: 0)
        try v.flush()
        #expect(first.isSubset(of: dataPblks()), "the first copy's pblks were released")
        try v.write(pattern(3, bs, compressible: false), at: 0)
        try v.flush()
        #expect(Set(try v.entry(0).pblks.map { Int($0) }) == first, "the third copy did not reuse the first's pblks")
        try v.discard(offset: 0, length: bs)
        try v.flush()
        #expect(first.isDisjoint(with: dataPblks()), "a discarded block's pblks are not holes")
        try v.close()
    }

    @Test func fullDeviceSaysSoAndKeepsData() throws {
        // 4 KiB blocks: no compression; a logical size larger than the data area.
        let mem = try memoryDevice(physical: 64 * 4096, logical: 200 * 4096, lblkShift: 0)
        let v = try Volume(device: mem, cacheBytes: 4096)
        var wrote = 0
        var failed = false
        for n in 0..<200 {
            do { try v.write(pattern(UInt8(n % 200 + 1), 4096, compressible: false), at: n * 4096); wrote = n } catch {
                failed = true; break
            }
        }
        #expect(failed)
        #expect(wrote >= 55)
        // What was committed before the device filled up reads back intact.
        let reopened = try Volume(device: mem)
        for n in 0..<wrote {
            #expect(
                try reopened.bytes(at: n * 4096, count: 4096) == pattern(UInt8(n % 200 + 1), 4096, compressible: false))
        }
    }

    /// Thousands of random reads, writes (unaligned, spanning blocks) and discards against an
    /// in-memory model, for several cache and block sizes; then close, reopen, compare all.
    @Test(arguments: [(0, 1), (0, 64), (4, 1), (4, 3), (4, 64), (5, 2), (8, 1)])
    func randomOperationsMatchAModel(lblkShift: Int, cacheBlocks: Int) throws {
        let bs = 4096 << lblkShift
        let logical = bs * 48
        let mem = try memoryDevice(physical: max(logical, 4 << 20), logical: logical, lblkShift: lblkShift)
        var v = try Volume(device: mem, cacheBytes: cacheBlocks * bs)
        var model = [UInt8](repeating: 0, count: logical)
        var rng = SplitMix(seed: UInt64(lblkShift * 100 + cacheBlocks))
        let ops = lblkShift >= 8 ? 300 : 2500
        for i in 0..<ops {
            let off = Int(rng.next() % UInt64(logical))
            let len = min(logical - off, Int(rng.next() % UInt64(3 * bs)) + 1)
            switch rng.next() % 10 {
            case 0...3:
                let kind = rng.next() % 3
                let data: [UInt8] = (0..<len).map { j in
                    kind == 0
                        ? UInt8(truncatingIfNeeded: rng.next())
                        : kind == 1 ? UInt8(truncatingIfNeeded: (off + j) / 37) : 0
                }
                try v.write(data, at: off)
                model.replaceSubrange(off..<off + len, with: data)
            case 4:
                try v.discard(offset: off, length: len)
                model.replaceSubrange(off..<off + len, with: repeatElement(0, count: len))
            case 5 where i % 50 == 0:
                try v.close()
                v = try Volume(device: mem, cacheBytes: cacheBlocks * bs)
            default:
                let got = try v.bytes(at: off, count: len)
                #expect(got == Array(model[off..<off + len]), "op \(i) read \(off)+\(len)")
                if got != Array(model[off..<off + len]) { return }
            }
        }
        try v.close()
        let reopened = try Volume(device: mem)
        #expect(try reopened.bytes(at: 0, count: logical) == model)
        try checkBitmapsMatchEntries(reopened)
    }

    /// Every used pblk is marked, nothing else is, and no pblk has two users.
    func checkBitmapsMatchEntries(_ v: Volume, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let wrong = try bitmapMismatches(v)
        #expect(wrong.isEmpty, "\(wrong.prefix(5))", sourceLocation: sourceLocation)
    }
}
