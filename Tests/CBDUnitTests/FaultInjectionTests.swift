// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck
@testable import CBDTestSupport

/// Writers interrupted at every write (the device stops accepting writes at the k-th):
/// afterwards fsck -y gives a consistent device on which every logical block holds its
/// old or its new content, never anything else.
@Suite struct FaultInjectionTests {
    /// Where repairs save orphaned data (fsck never frees data without saving it).
    let lostFound: Scratch
    init() throws { lostFound = try Scratch() }

    func contents(_ d: BlockDevice) throws -> [[UInt8]?] {
        let v = try Volume(device: d)
        return (0..<v.geometry.nrLblk).map { n in
            var b = [UInt8](repeating: 0, count: v.geometry.lblkSize)
            let ok = (try? b.withUnsafeMutableBytes { try v.read(into: $0, at: n * v.geometry.lblkSize) }) != nil
            return ok ? b : nil
        }
    }

    func repair(_ d: BlockDevice) throws {
        var options = Checker.Options()
        options.mode = .fixAll
        options.verifyData = true
        options.lostFound = LostFound(directory: lostFound.file("lost+found"))
        try Checker(device: d, options: options).run()
        let again = try Checker(device: d, options: options)
        try again.run()
        #expect(again.problems.isEmpty, "\(again.problems.map { $0.message })")
    }

    func block(_ seed: Int, _ size: Int, random: Bool) -> [UInt8] {
        var rng = SplitMix(seed: UInt64(seed))
        return (0..<size).map { i in
            random ? UInt8(truncatingIfNeeded: rng.next()) : UInt8(truncatingIfNeeded: i / 9 + seed)
        }
    }

    /// A commit that fails before it publishes its entries (writing its data or its bitmaps)
    /// abandons the batch: the same Volume's next flush commits it, and the device then has
    /// no leaked pblk. (Before, a failed bitmap write refused every later commit.) Every write
    /// between DIRTY and the intent record (lblk 120 straddles) is tried.
    @Test func aCommitFailingBeforePublishIsAbandoned() throws {
        let bs = 65536
        let base = try memoryDevice(physical: 16 << 20, logical: 200 * bs, lblkShift: 4)
        let data = (119...121).flatMap { block($0, bs, random: $0 == 120) }
        let probe = base.copy()
        let start = probe.writeCount
        let pv = try Volume(device: probe)
        try data.withUnsafeBytes { try pv.write($0, at: 119 * bs) }
        try pv.flush()
        let headers = probe.writeOffsets.indices.filter { $0 >= start && probe.writeOffsets[$0] == 0 }
        try #require(headers.count >= 2, "expected DIRTY, then the intent")
        let expected = try contents(probe)
        for k in (headers[0] + 1)..<headers[1] {
            let dev = base.copy()
            let v = try Volume(device: dev)
            try data.withUnsafeBytes { try v.write($0, at: 119 * bs) }  // cached; DIRTY written
            dev.failAtWrite = k  // this write, or the sync after the one before it, fails
            #expect(throws: CBDError.self) { try v.flush() }
            dev.failAtWrite = nil
            try v.flush()
            try v.close()
            let check = try Checker(device: dev, options: Checker.Options())
            try check.run()
            #expect(check.problems.isEmpty, "write \(k): \(check.problems.map(\.message))")
            #expect(try contents(dev) == expected, "write \(k)")
        }
    }

    /// A failing backing store never costs an acknowledged write: after a commit fails at any
    /// of its writes (data, bitmaps, the intent record and journal, entries, the release), the
    /// Volume is read-only (dm-vdo's mode): the next write, discard and trim are refused at once
    /// and change nothing, while every block reads as acknowledged, from the cache where the
    /// device may not hold it (also when the failure left an intent record: reads go on).
    @Test func aFailedCommitMakesTheVolumeReadOnly() throws {
        let bs = 65536
        let base = try memoryDevice(physical: 16 << 20, logical: 200 * bs, lblkShift: 4)
        let old = (0..<200).map { block(500 + $0, bs, random: $0 % 3 == 0) }
        let setup = try Volume(device: base)
        for n in 100..<140 { try old[n].withUnsafeBytes { try setup.write($0, at: n * bs) } }
        try setup.close()
        let new = (119...121).flatMap { block($0, bs, random: $0 == 120) }  // lblk 120 straddles
        let probe = base.copy()
        let start = probe.writeCount
        let pv = try Volume(device: probe)
        try new.withUnsafeBytes { try pv.write($0, at: 119 * bs) }
        try pv.flush()
        let total = probe.writeCount - start
        try #require(total > 4)
        for k in 1..<total {
            let dev = base.copy()
            let v = try Volume(device: dev)
            try new.withUnsafeBytes { try v.write($0, at: 119 * bs) }  // acknowledged
            dev.failAtWrite = dev.writeCount + k - 1
            #expect(throws: CBDError.self) { try v.flush() }
            dev.failAtWrite = nil
            let writes = dev.writeCount
            #expect(v.readOnlyAfter != nil, "write \(k)")
            #expect(throws: CBDError.self) { try old[5].withUnsafeBytes { try v.write($0, at: 5 * bs) } }
            #expect(throws: CBDError.self) { try v.discard(offset: 130 * bs, length: bs) }
            #expect(throws: CBDError.self) { try v.trim(offset: 131 * bs, length: bs) }
            #expect(dev.writeCount == writes, "a refused change wrote to the device (write \(k))")
            for n in 100..<140 {
                var got = [UInt8](repeating: 0, count: bs)
                try got.withUnsafeMutableBytes { try v.readShared(into: $0, at: n * bs) }
                let want = (119...121).contains(n) ? Array(new[(n - 119) * bs..<(n - 118) * bs]) : old[n]
                let same = got == want  // (not in the expectation: it would print both blocks)
                #expect(same, "failed at write \(k): lblk \(n) does not read as acknowledged")
            }
        }
    }

    /// cbd write's path: overwrite, extend and zero blocks through a Volume with a small cache.
    @Test func volumeWrites() throws {
        let base = try memoryDevice(physical: 4 << 20, logical: 2 << 20, lblkShift: 2)  // 16 KiB blocks
        let bs = 16384
        let v = try Volume(device: base)
        for n in 0..<64 where n % 3 != 2 {
            try block(n, bs, random: n % 4 == 0).withUnsafeBytes { try v.write($0, at: n * bs) }
        }
        try v.close()
        let old = try contents(base)
        // The change: new data in some blocks, zeros in others, an unaligned write across two.
        func change(_ v: Volume) throws {
            for n in stride(from: 0, to: 64, by: 5) {
                try block(1000 + n, bs, random: n % 2 == 0).withUnsafeBytes { try v.write($0, at: n * bs) }
            }
            try v.discard(offset: 7 * bs, length: 3 * bs)
            // 42 and 43: changed once
            try block(77, bs, random: false).withUnsafeBytes { try v.write($0, at: 42 * bs + 1000) }
            try v.close()
        }
        let full = base.copy()
        let start = full.writeCount
        try change(try Volume(device: full, cacheBytes: 3 * bs))
        let new = try contents(full)
        let total = full.writeCount - start
        #expect(total > 20)
        for k in 0..<total {
            let dev = base.copy()
            dev.failAtWrite = dev.writeCount + k
            #expect(throws: CBDError.self) { try change(try Volume(device: dev, cacheBytes: 3 * bs)) }
            dev.failAtWrite = nil
            try repair(dev)
            let got = try contents(dev)
            for n in 0..<got.count {
                #expect(
                    got[n] == old[n] || got[n] == new[n], "interrupted at write \(k): block \(n) is neither old nor new"
                )
            }
        }
    }

    /// Entries that straddle two table pblks (64 KiB blocks: 34-byte entries, lblk 120 spans
    /// table bytes 4080-4113): a write interrupted between the two pblks must not leave a
    /// mix of old and new slots. The entry journal (format 1.1's intent record) completes it.
    @Test func straddlingEntries() throws {
        let bs = 65536
        let base = try memoryDevice(physical: 24 << 20, logical: 400 * bs, lblkShift: 4)
        let g = try headerAndGeometry(base).1
        let journal = EntryJournal(device: base, geometry: g)
        let straddlers = [120, 240, 361]
        #expect(straddlers.allSatisfy { journal.straddles($0) } && !journal.straddles(119))
        let v = try Volume(device: base)
        for n in 100..<380 { try block(n, bs, random: n % 2 == 0).withUnsafeBytes { try v.write($0, at: n * bs) } }
        try v.close()
        let old = try contents(base)
        // New data around each straddler: compressible where it was raw and the other way round.
        func change(_ v: Volume) throws {
            for n in straddlers.flatMap({ [$0 - 1, $0, $0 + 1] }) {
                try block(5000 + n, bs, random: n % 2 == 1).withUnsafeBytes { try v.write($0, at: n * bs) }
            }
            try v.close()
        }
        let full = base.copy()
        let start = full.writeCount
        try change(try Volume(device: full))
        let new = try contents(full)
        #expect(
            try headerAndGeometry(full).0 == (try headerAndGeometry(base).0),
            "a clean device after close: 1.0, no intent")
        let total = full.writeCount - start
        for k in 0..<total {
            let dev = base.copy()
            dev.failAtWrite = dev.writeCount + k
            #expect(throws: CBDError.self) { try change(try Volume(device: dev)) }
            dev.failAtWrite = nil
            try repair(dev)
            let got = try contents(dev)
            for n in 0..<got.count where got[n] != old[n] && got[n] != new[n] {
                Issue.record("interrupted at write \(k) of \(total): block \(n) is neither old nor new")
            }
        }
    }

    /// fsck's own repairs (clone, clear, bitmap fixes) interrupted at every write, then fsck again.
    @Test func fsckRepairs() throws {
        let base = try memoryDevice(physical: 4 << 20, logical: 4 << 20, lblkShift: 4)
        let bs = 65536
        let v = try Volume(device: base)
        for n in 0..<40 { try block(n, bs, random: n % 3 == 0).withUnsafeBytes { try v.write($0, at: n * bs) } }
        try v.close()
        let g = v.geometry
        let codec = EntryCodec(g)
        let meta = MetadataCache(device: base, geometry: g)
        // Damage: a cross-link (lblk 7 takes lblk 4's first pblk), a malformed length, leaks, an unmarked pblk.
        guard case .compressed(let l3, let p3) = try codec.decode(try meta.entryBytes(4)),
            case .compressed(let l5, var p5) = try codec.decode(try meta.entryBytes(7)),
            let p10 = try codec.decode(try meta.entryBytes(10)).pblks.first
        else { Issue.record("setup: blocks 4 and 7 should be compressed"); return }
        _ = l3
        p5[0] = p3[0]
        try meta.setEntryBytes(7, codec.encode(.compressed(length: l5, pblks: p5)))
        var bad = try meta.entryBytes(8)
        LE.put(UInt64(g.lblkSize - 100), 2, &bad, 0)
        try meta.setEntryBytes(8, bad)
        try meta.updateBitmap(0) { b in
            b.set(700); b.set(701); b.clear(Int(p10) - g.dataStart(0))
        }
        try meta.writeDirtyTables()
        try meta.writeDirtyBitmaps()
        let old = try contents(base)
        let full = base.copy()
        let start = full.writeCount
        try repair(full)
        let new = try contents(full)
        let total = full.writeCount - start
        #expect(total >= 4)  // DIRTY, the clone's copy, the table, the bitmap, the header: some share a write
        for k in 0..<total {
            let dev = base.copy()
            dev.failAtWrite = dev.writeCount + k
            var options = Checker.Options()
            options.mode = .fixAll
            options.verifyData = true
            options.lostFound = LostFound(directory: lostFound.file("lost+found"))
            let failing = try Checker(device: dev, options: options)
            #expect(throws: CBDError.self) { try failing.run() }
            // fsck(8): nothing counts as corrected when the repairs could not be written (the
            // tool exits 8|4, never 9).
            #expect(failing.exitCode & 1 == 0 && failing.exitCode & 4 != 0, "exit \(failing.exitCode) at write \(k)")
            dev.failAtWrite = nil
            try repair(dev)
            let got = try contents(dev)
            for n in 0..<got.count where got[n] != old[n] && got[n] != new[n] {
                Issue.record(
                    "fsck interrupted at write \(k) of \(total): block \(n) is neither old nor new (old \(old[n] == nil ? "unreadable" : "readable"), new \(new[n] == nil ? "unreadable" : new[n]!.allSatisfy { $0 == 0 } ? "zeros" : "data"), got \(got[n] == nil ? "unreadable" : got[n]!.allSatisfy { $0 == 0 } ? "zeros" : "data"))"
                )
            }
        }
    }

    /// A raw image in memory, 24 blocks of 64 KiB with holes between some.
    /// `size`: the image's size, holes after the blocks.
    func rawInput(size: Int? = nil) throws -> (MemoryDevice, [UInt8]) {
        var bytes = [UInt8]()
        for n in 0..<24 {
            bytes += block(n, 65536, random: n % 3 == 0) + [UInt8](repeating: 0, count: n % 4 == 0 ? 65536 : 0)
        }
        let input = MemoryDevice(size: size ?? bytes.count, name: "raw")
        try bytes.withUnsafeBytes { try input.write($0, at: 0) }
        return (input, bytes)
    }

    /// Convert into an existing device interrupted at every write never leaves a
    /// valid-looking device; run to the end it gives exactly the input.
    @Test func convertLayout() throws {
        let s = try Scratch()
        let (input, bytes) = try rawInput()
        var conv = RawToCBD()
        conv.lblkShift = 4
        let probe = MemoryDevice(size: 8 << 20)
        let done = MemoryTarget(existing: probe, scratch: s.path)
        _ = try conv.convert(input: input, to: done)
        #expect(done.committed)
        let total = probe.writeCount
        let g = try headerAndGeometry(probe).1
        #expect(try contents(probe).flatMap { $0 ?? [] }.prefix(bytes.count).elementsEqual(bytes))
        for k in 0..<total {
            // A target that held a valid CBD device before: it must not look valid after a failure.
            let dev = MemoryDevice(size: 8 << 20)
            try Formatter.format(dev, geometry: g)
            dev.failAtWrite = dev.writeCount + k
            let target = MemoryTarget(existing: dev, scratch: s.path)
            #expect(throws: CBDError.self) { try conv.convert(input: input, to: target) }
            #expect(!target.committed)
            dev.failAtWrite = nil
            #expect(throws: (any Error).self, "interrupted at write \(k) of \(total), the header is valid") {
                try headerAndGeometry(dev)
            }
        }
    }

    /// Both directions through memory targets: a fresh output is written in place (opened
    /// again when the guessed layout was wrong, with the same result), and back to raw.
    @Test func convertThroughMemoryTargets() throws {
        let s = try Scratch()
        // 4 GiB: one zone for this data, thousands for the wrong guess (tables of another size).
        let (input, bytes) = try rawInput(size: 4 << 30)
        var images: [[Int: [UInt8]]] = []
        for guess in [nil, 10_000_000] {
            var conv = RawToCBD()
            conv.packedPblksGuess = guess
            let cbd = MemoryTarget(scratch: s.path)
            _ = try conv.convert(input: input, to: cbd)
            let dev = try #require(cbd.device)
            #expect(
                cbd.committed && cbd.opens == (guess == nil ? 1 : 2),
                "guess \(String(describing: guess)): opened \(cbd.opens) times")
            images.append(dev.snapshot())
            let raw = MemoryTarget(scratch: s.path)
            let summary = try CBDToRaw().convert(input: dev, to: raw)
            let out = try #require(raw.device)
            #expect(out.size == input.size && summary.logicalBytes == input.size)
            var back = [UInt8](repeating: 1, count: bytes.count)
            try back.withUnsafeMutableBytes { try out.read(into: $0, at: 0) }
            #expect(back == bytes)
            #expect(out.nextData(from: bytes.count) == nil, "the hole stays a hole")
            do {
                _ = try CBDToRaw().convert(input: out, to: raw)  // onto itself
                Issue.record("converted a device onto itself")
            } catch let e as CBDError {
                #expect(e.message == "memory output: is the input itself; convert to another file")
            }
        }
        #expect(images[0] == images[1])
    }
}
