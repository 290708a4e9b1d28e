// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck
@testable import CBDTestSupport

/// A device that records every write and sync, so that a power cut can be played back: a
/// crash state is what the device held at its last sync before the cut, plus any subset of the
/// 4 KiB pieces written after it (CrashMonkey's and ALICE's model: unsynced writes persist in
/// any subset, torn at 4 KiB). `dropSync` makes the device ignore some syncs: the negative
/// control, a writer that skips one.
final class PowerLossDevice: BlockDevice {
    enum Event { case write(pblk: Int, bytes: [UInt8]), sync }
    let inner: MemoryDevice
    private(set) var events: [Event] = []
    var dropSync: (Int) -> Bool = { _ in false }
    private var syncs = 0

    init(_ inner: MemoryDevice) { self.inner = inner }
    var path: String { inner.path }
    var size: Int { inner.size }
    var isWritable: Bool { inner.isWritable }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try inner.read(into: buffer, at: offset)
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        try inner.write(buffer, at: offset)
        record(offset..<offset + buffer.count)
    }

    func zero(_ range: Range<Int>) throws {
        try inner.zero(range)
        record(range)
    }

    /// A size change is taken as durable at once (the model covers writes, not the file size).
    func setSize(_ bytes: Int) throws { try inner.setSize(bytes) }

    func sync() throws {
        try inner.sync()
        syncs += 1
        if !dropSync(syncs) { events.append(.sync) }
    }

    /// The pblks a write touched, as they are now (writes here are pblk-aligned or inside one).
    private func record(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        for p in range.lowerBound / Units.pblkSize...(range.upperBound - 1) / Units.pblkSize {
            events.append(.write(pblk: p, bytes: (try? inner.readPblks(p)) ?? []))
        }
    }

    /// Crash states: for each sampled cut, `base` plus every write before the cut's last sync,
    /// plus a random subset of the pieces between that sync and the cut. Half the cuts fall
    /// just before a sync (a whole epoch unsynced, where lost and reordered writes show most),
    /// the others anywhere.
    func crashStates(base: MemoryDevice, samples: Int, seed: UInt64) throws -> [MemoryDevice] {
        var rng = SplitMix(seed: seed)
        var out: [MemoryDevice] = []
        let beforeSyncs = events.indices.filter { if case .sync = events[$0] { return true } else { return false } }
        for _ in 0..<samples {
            let cut =
                rng.next() % 2 == 0 && !beforeSyncs.isEmpty
                ? beforeSyncs[Int(rng.next() % UInt64(beforeSyncs.count))]
                : Int(rng.next() % UInt64(events.count + 1))
            let lastSync = events[..<cut].lastIndex { if case .sync = $0 { return true } else { return false } } ?? -1
            let state = base.copy()
            for (i, e) in events[..<cut].enumerated() {
                guard case .write(let p, let bytes) = e else { continue }
                if i < lastSync || rng.next() % 2 == 0 { try state.writePblks(bytes, at: p) }
            }
            out.append(state)
        }
        return out
    }
}

/// Writers under the power-loss model: every crash state, once `fsck -y` (the library's
/// Checker) has run, is consistent, and every logical block reads old or new.
@Suite struct PowerLossTests {
    /// Where repairs save orphaned data (fsck never frees data without saving it).
    let lostFound: Scratch
    init() throws { lostFound = try Scratch() }

    let bs = 65536
    let lblks = 200

    func random(_ seed: UInt64, _ count: Int) -> [UInt8] {
        var rng = SplitMix(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    /// A 64 KiB-block device with raw, compressed and unallocated blocks (lblk 120 straddles).
    func base(physical: Int = 16 << 20) throws -> MemoryDevice {
        let mem = try memoryDevice(physical: physical, logical: lblks * bs, lblkShift: 4)
        let v = try Volume(device: mem)
        for n in 0..<lblks where n % 7 != 0 {
            let data =
                n % 3 == 0
                ? random(UInt64(n), bs)
                : [UInt8](repeating: UInt8(n), count: bs / 2) + random(UInt64(n), 300)
                    + [UInt8](repeating: 0, count: bs / 2 - 300)
            try data.withUnsafeBytes { try v.write($0, at: n * bs) }
        }
        try v.close()
        return mem
    }

    /// Each block's bytes; nil for one that cannot be read (damaged on purpose, before a repair).
    func contents(_ dev: BlockDevice) throws -> [[UInt8]?] {
        let v = try Volume(device: dev)
        return (0..<lblks).map { n in
            var b = [UInt8](repeating: 0, count: bs)
            do { try b.withUnsafeMutableBytes { try v.read(into: $0, at: n * bs) } } catch { return nil }
            return b
        }
    }

    /// Runs `op` on a recording copy of `base`; returns the crash states that break the rules.
    func badStates(
        _ base: MemoryDevice, samples: Int = 24, dropSync: @escaping (Int) -> Bool = { _ in false },
        _ op: (BlockDevice) throws -> Void
    ) throws -> [String] {
        let old = try contents(base)
        let rec = PowerLossDevice(base.copy())
        rec.dropSync = dropSync
        try op(rec)
        let new = try contents(rec.inner)
        var bad: [String] = []
        for (i, state) in try rec.crashStates(base: base, samples: samples, seed: 21).enumerated() {
            var fix = Checker.Options()
            fix.mode = .fixAll
            fix.lostFound = LostFound(directory: lostFound.file("state-\(i)"))
            do { try Checker(device: state, options: fix).run() } catch {
                bad.append("state \(i): fsck: \(error)"); continue
            }
            let check = try Checker(device: state, options: Checker.Options())
            try check.run()
            if !check.problems.isEmpty { bad.append("state \(i): still \(check.problems.count) problems"); continue }
            guard let got = try? contents(state) else { bad.append("state \(i): unreadable"); continue }
            if let n = (0..<lblks).first(where: { got[$0] == nil || (got[$0] != old[$0] && got[$0] != new[$0]) }) {
                bad.append("state \(i): lblk \(n) is neither old nor new")
            }
        }
        return bad
    }

    func write(_ dev: BlockDevice, _ data: [UInt8], at offset: Int, cache: Int = 32 << 20) throws {
        let v = try Volume(device: dev, cacheBytes: cache)
        try data.withUnsafeBytes { try v.write($0, at: offset) }
        try v.close()
    }

    @Test func writeAcrossAStraddlingEntry() throws {
        let bad = try badStates(try base()) { try write($0, random(99, 3 * bs), at: 119 * bs) }
        #expect(bad.isEmpty, "\(bad.prefix(3))")
    }

    @Test func writesCommittedInManyBatches() throws {
        let bad = try badStates(try base()) { try write($0, random(98, 24 * bs), at: 100 * bs, cache: 4 * bs) }
        #expect(bad.isEmpty, "\(bad.prefix(3))")
    }

    @Test func discard() throws {
        let bad = try badStates(try base()) { dev in
            let v = try Volume(device: dev)
            try v.discard(offset: 118 * bs, length: 4 * bs)
            try v.close()
        }
        #expect(bad.isEmpty, "\(bad.prefix(3))")
    }

    /// A full device: the straddling block discarded, through the inline intent record.
    @Test func discardOnAFullDevice() throws {
        let full = try base(physical: 5 << 20)
        let v = try Volume(device: full)
        var n = 0
        while n < lblks {
            let data = random(UInt64(1000 + n), bs)
            do { try data.withUnsafeBytes { try v.write($0, at: n * bs) } } catch { break }
            n += 1
        }
        try v.close()
        #expect(try Volume(device: full).usage().free < 16)
        let bad = try badStates(full) { dev in
            let v = try Volume(device: dev)
            try v.discard(offset: 120 * bs, length: bs)
            try v.close()
        }
        #expect(bad.isEmpty, "\(bad.prefix(3))")
    }

    /// fsck -y's repairs: a malformed straddling entry cleared, a cross-linked one cloned.
    @Test func fsckRepairs() throws {
        let dev = try base()
        let g = try headerAndGeometry(dev).1
        let codec = EntryCodec(g)
        let meta = MetadataCache(device: dev, geometry: g)
        var bytes = try meta.entryBytes(120)
        bytes[0] = 0xF0
        try meta.setEntryBytes(120, bytes)
        guard case .raw(let p3) = try codec.decodeChecked(try meta.entryBytes(3)),
            case .raw(var p123) = try codec.decodeChecked(try meta.entryBytes(123))
        else {
            Issue.record("lblks 3 and 123 should be raw")
            return
        }
        p123[2] = p3[2]
        try meta.setEntryBytes(123, codec.encode(.raw(pblks: p123)))
        try meta.writeDirtyTables()
        let bad = try badStates(dev) { d in
            var o = Checker.Options()
            o.mode = .fixAll
            o.lostFound = LostFound(directory: lostFound.file("lost+found"))
            try Checker(device: d, options: o).run()
        }
        #expect(bad.isEmpty, "\(bad.prefix(3))")
    }

    /// cbd undo cut by a power loss at any point: the same command, run again, puts the
    /// device back byte for byte. (The undo file is marked under way, and synced, before the
    /// device's first write, so that is the file every crash state finds.)
    @Test func undoInterruptedByAPowerCut() throws {
        let s = try Scratch()
        let (original, _) = try populatedDevice(physical: 100 << 20, logical: 64 << 20, blocks: 40, every: 3)
        let resized = original.copy()
        let r = try Resizer(device: resized, force: false)
        try r.resize(
            try r.plan(physicalBytes: 300 << 20, logicalBytes: 64 << 20), undoPath: s.file("undo"), scratch: s.path)
        var underWay = try FileFacts.bytes(s.file("undo"))
        underWay.replaceSubrange(0..<8, with: Array("CBDUNDOP".utf8))
        let rec = PowerLossDevice(resized.copy())
        try Undo.apply(undoPath: s.file("undo"), to: rec)
        #expect(rec.inner.snapshot() == original.snapshot())
        var failures: [Int] = []
        for (i, state) in try rec.crashStates(base: resized, samples: 24, seed: 8).enumerated() {
            try #require(FileManager.default.createFile(atPath: s.file("again"), contents: underWay))
            try Undo.apply(undoPath: s.file("again"), to: state)
            if state.size != original.size || state.snapshot() != original.snapshot() { failures.append(i) }
        }
        #expect(failures.isEmpty, "crash states \(failures.prefix(5)) not restored")
    }

    /// The negative control: the same write on a device that drops one of the writer's syncs
    /// (as a writer that forgot it would). Some crash state must break the rules, or the model
    /// could not see a missing sync at all.
    @Test func aSkippedSyncIsCaught() throws {
        let mem = try base()
        // Which syncs the write makes, counted on a probe.
        let probe = PowerLossDevice(mem.copy())
        try write(probe, random(99, 3 * bs), at: 119 * bs)
        let syncs = probe.events.filter { if case .sync = $0 { return true } else { return false } }.count
        #expect(syncs >= 4)
        var caught: Int?
        for k in 1...syncs {
            let bad = try badStates(mem, samples: 32, dropSync: { $0 == k }) {
                try write($0, random(99, 3 * bs), at: 119 * bs)
            }
            if !bad.isEmpty { caught = k; break }
        }
        #expect(caught != nil, "no dropped sync of \(syncs) was caught")
    }
}
