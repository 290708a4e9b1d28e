// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
import CBDCLI
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck
@testable import CBDTestSupport

/// cbd resize: both kinds of resize, refusals, undo, and interruption at every write.
@Suite struct ResizeTests {
    /// Where repairs save orphaned data (fsck never frees data without saving it).
    let lostFound: Scratch
    init() throws { lostFound = try Scratch() }

    /// A device of `physical` bytes with blocks of mixed kinds in the first `blocks` lblks.
    func populated(physical: Int, logical: Int, lblkShift: Int = 4, blocks: Int, every: Int = 1, seed: UInt64 = 1)
        throws -> (MemoryDevice, [UInt8])
    {
        try populatedDevice(
            physical: physical, logical: logical, lblkShift: lblkShift, blocks: blocks, every: every, seed: seed)
    }

    /// No block past the populated prefix is allocated (so comparing the prefix compares everything).
    func expectNothingPast(_ d: BlockDevice, _ bytes: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let v = try Volume(device: d)
        for n in (bytes / v.geometry.lblkSize)..<v.geometry.nrLblk {
            #expect(try v.entry(n) == .unallocated, "lblk \(n)", sourceLocation: sourceLocation)
        }
    }

    func expectConsistent(_ d: BlockDevice, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let c = try Checker(device: d, options: Checker.Options())
        try c.run()
        #expect(c.problems.isEmpty, "\(c.problems.map { $0.message })", sourceLocation: sourceLocation)
    }

    /// 8 zones (64 KiB blocks, 16 per zone): a shrink that keeps 7 zones and 10 data pblks of
    /// the 8th must move that zone's blocks; a grow adds zones.
    static let cut = (1 + 7 * 32770 + 2 + 10) * 4096

    @Test func growAndShrinkKeepingTheGeometry() throws {
        let (mem, before) = try populated(physical: 1 << 30, logical: 8 << 20, blocks: 128)
        let r = try Resizer(device: mem, force: false)
        #expect(r.geometry.nrZones == 8 && r.geometry.tableBlocks == 1)
        let shrink = try r.plan(physicalBytes: ResizeTests.cut, logicalBytes: 8 << 20)
        #expect(shrink.keepsGeometry && shrink.new.dataPblkCount(7) == 10)
        let writes = mem.writeCount
        try r.resize(shrink, undoPath: nil, scratch: NSTemporaryDirectory())
        #expect(mem.writeCount - writes > 40, "blocks were moved")
        #expect(mem.size == shrink.new.physicalBytes)
        try expectConsistent(mem)
        #expect(try logicalBytes(mem, count: before.count) == before)
        let r2 = try Resizer(device: mem, force: false)
        let grow = try r2.plan(physicalBytes: 1300 << 20, logicalBytes: 9 << 20)
        #expect(grow.keepsGeometry && grow.new.nrZones == 11)
        try r2.resize(grow, undoPath: nil, scratch: NSTemporaryDirectory())
        try expectConsistent(mem)
        #expect(try logicalBytes(mem, count: before.count) == before)
        #expect(try headerAndGeometry(mem).0.isDirty == false)
    }

    /// What mkfs.cbd and cbd info print as "grows in place to" is what a resize keeps without
    /// a re-layout, and one zone or one block more is not: 2-byte pblk numbers end at 2^16
    /// pblks, 4-byte ones at 2^32 (16 TiB).
    @Test(arguments: [(88 << 20, 256 << 20), (256 << 20, 768 << 20), (1 << 30, 3 << 30)])
    func inPlaceLimitIsWhatAResizeKeeps(physical: Int, logical: Int) throws {
        let (mem, _) = try populated(physical: physical, logical: logical, blocks: 4)
        let r = try Resizer(device: mem, force: false)
        let limit = LayoutPlanner.inPlaceLimit(of: r.geometry)
        #expect(limit.pblkBytes == r.geometry.pblkBytes && limit.nrPblk >= r.geometry.nrPblk)
        #expect(limit.nrPblk == (r.geometry.pblkBytes == 2 ? 1 << 16 : 1 << 32), "\(limit)")
        let keep = try r.plan(physicalBytes: limit.physicalBytes, logicalBytes: limit.logicalBytes)
        #expect(keep.keepsGeometry && keep.new == limit)
        let wider = try r.plan(
            physicalBytes: limit.physicalBytes + limit.zoneSpan * 4096,
            logicalBytes: limit.logicalBytes)
        #expect(!wider.keepsGeometry)
        let longer = try r.plan(physicalBytes: limit.physicalBytes, logicalBytes: limit.logicalBytes + limit.lblkSize)
        #expect(!longer.keepsGeometry)
    }

    /// `-E resize=SIZE` (mkfs.cbd and convert, as mke2fs's): the tables are sized for that
    /// logical size, the reserve is printed, and `cbd resize -L SIZE` then keeps the layout
    /// (the same file, written in place); without it the same growth re-lays the device out.
    @Test func extendedResizeLeavesRoomToGrowLogically() throws {
        let s = try Scratch()
        let roomy = s.file("roomy.cbd"), plain = s.file("plain.cbd")
        let made = try Tools.run("mkfs.cbd", ["-E", "resize=4G", roomy, "64M"])
        #expect(made.status == 0 && made.stdout.contains("growth reserve:"), "\(made.stdout)\(made.stderr)")
        #expect(try Tools.run("mkfs.cbd", ["-q", plain, "64M"]).status == 0)
        for (dev, keeps) in [(roomy, true), (plain, false)] {
            let inode = try FileManager.default.attributesOfItem(atPath: dev)[.systemFileNumber] as? Int
            let r = try Tools.run("cbd", ["resize", "-p", dev, "-L", "4G"])
            #expect(r.status == 0 && r.stdout.contains("keeping the layout") == keeps, "\(dev): \(r.stdout)\(r.stderr)")
            let after = try FileManager.default.attributesOfItem(atPath: dev)[.systemFileNumber] as? Int
            #expect((after == inode) == keeps)
            #expect(try Tools.run("fsck.cbd", ["-fn", dev]).status == 0)
        }
        // convert -E: the same room in a converted image, its data kept through the growth.
        try Tools.require("mke2fs")
        let raw = s.file("fs.img"), img = s.file("fs.cbd")
        #expect(try Tools.run("mke2fs", ["-q", "-F", "-t", "ext4", "-d", "/usr/share/perl5", raw, "24M"]).status == 0)
        #expect(try Tools.run("cbd", ["convert", "-q", "-E", "resize=1G", raw, img]).status == 0)
        let grow = try Tools.run("cbd", ["resize", "-p", img, "-L", "1G"])
        #expect(grow.status == 0 && grow.stdout.contains("keeping the layout"), "\(grow.stdout)\(grow.stderr)")
        #expect(try Tools.run("cbd", ["compare", raw, img]).status == 0)
        #expect(try Tools.run("cbd", ["convert", "-E", "resize=x", raw, s.file("bad.cbd")]).status == 64)
    }

    @Test func refusals() throws {
        let (mem, _) = try populated(physical: 64 << 20, logical: 64 << 20, blocks: 100)
        let r = try Resizer(device: mem, force: false)
        // Logical shrink below data in use names the first offset.
        #expect(throws: CBDError.self) { try r.plan(physicalBytes: 64 << 20, logicalBytes: 64 << 16) }
        do { _ = try r.plan(physicalBytes: 64 << 20, logicalBytes: 65536 * 50) } catch let e as CBDError {
            #expect(e.message.contains("logical offset \(50 * 65536)"))
        }
        // Too small for the data: says the minimum.
        do { _ = try r.plan(physicalBytes: 1 << 20, logicalBytes: 64 << 20); Issue.record("no refusal") } catch let e
            as SizeError
        {
            guard case .dataDoesNotFit(_, let used, _, let minimum) = e else { Issue.record("\(e)"); return }
            #expect(used > 0 && minimum > 1 << 20)
            #expect(ToolRunner.message(for: e)?.contains("minimum") == true)
        }
        // A re-layout without an undo file is refused and says how.
        let cross = try r.plan(physicalBytes: 300 << 20, logicalBytes: 64 << 20)
        #expect(!cross.keepsGeometry)
        do { try r.resize(cross, undoPath: nil, scratch: NSTemporaryDirectory()); Issue.record("no refusal") } catch let
            e as CBDError
        {
            // The library says what is needed; the tool names its option.
            #expect(e.hint == .undoFile && !e.message.contains("-z"))
            #expect(ToolRunner.message(for: e)?.contains("-z") == true)
        }
        // A DIRTY device needs -f.
        var h = try headerAndGeometry(mem).0
        h.isDirty = true
        try mem.writeHeader(h)
        #expect(throws: CBDError("memory: not cleanly closed (DIRTY)", hint: .checkOrForce)) {
            try Resizer(device: mem, force: false)
        }
        #expect(try Resizer(device: mem, force: true).geometry.nrLblk > 0)
    }

    /// Across 2^16 pblks (entry width 2 <-> 4) and to a larger lblk_per_zone_shift, both ways,
    /// with an undo file that restores the device byte for byte.
    static let relayouts: [(Int, Int, Int, Int)] = [
        (100 << 20, 300 << 20, 64 << 20, 64 << 20),  // grow past 2^16 pblks: entries widen
        (300 << 20, 200 << 20, 64 << 20, 64 << 20),  // shrink below 2^16 pblks: entries narrow
        (64 << 20, 64 << 20, 32 << 20, 2 << 30),  // logical grow: a larger lblk_per_zone_shift
        (1 << 30, 600 << 20, 3 << 30, 3 << 30)  // fewer zones for the same entries: larger shift
    ]

    @Test(arguments: ResizeTests.relayouts)
    func relayoutWithUndo(from physical: Int, to newPhysical: Int, logical: Int, newLogical: Int) throws {
        let s = try Scratch()
        let (mem, before) = try populated(physical: physical, logical: logical, blocks: 120, every: 3)
        let original = mem.copy()
        let r = try Resizer(device: mem, force: false)
        let plan = try r.plan(physicalBytes: newPhysical, logicalBytes: newLogical)
        #expect(
            !plan.keepsGeometry,
            "\(plan.old.variantName)/\(plan.old.lblkPerZoneShift) -> \(plan.new.variantName)/\(plan.new.lblkPerZoneShift)"
        )
        try r.resize(plan, undoPath: s.file("undo"), scratch: s.path)
        try expectConsistent(mem)
        #expect(try logicalBytes(mem, count: before.count) == before)
        #expect(try headerAndGeometry(mem).1 == plan.new)
        try expectNothingPast(mem, before.count)
        try Undo.apply(undoPath: s.file("undo"), to: mem)
        #expect(mem.size == original.size && mem.snapshot() == original.snapshot())
    }

    /// An undo file belongs to one device in one state: another device, a second application,
    /// or a damaged file is refused and nothing changes; -f overrides only the identity.
    @Test func undoRefusesWhatItWasNotWrittenFor() throws {
        let s = try Scratch()
        let (mem, _) = try populated(physical: 100 << 20, logical: 64 << 20, blocks: 60, every: 3)
        let original = mem.copy()
        let (other, _) = try populated(physical: 100 << 20, logical: 64 << 20, blocks: 60, every: 3, seed: 5)
        let r = try Resizer(device: mem, force: false)
        try r.resize(
            try r.plan(physicalBytes: 300 << 20, logicalBytes: 64 << 20), undoPath: s.file("undo"), scratch: s.path)
        let resized = mem.copy()
        func refused(_ device: MemoryDevice, _ undo: String, force: Bool = false, _ words: String) {
            let before = device.snapshot(), size = device.size
            do {
                try Undo.apply(undoPath: undo, to: device, force: force)
                Issue.record("\(undo) applied; expected a refusal with '\(words)'")
            } catch {
                #expect("\(error)".contains(words), "\(error)")
            }
            #expect(device.snapshot() == before && device.size == size, "a refused undo changed the device")
        }
        // Another device, and this device after a change: refused.
        refused(other, s.file("undo"), "written for a device")
        let changed = resized.copy()
        try changed.writePblks([UInt8](repeating: 0xAB, count: 4096), at: 2)
        refused(changed, s.file("undo"), "not as the resize left it")
        // A damaged record or a head-only file: refused even with -f.
        let bytes = try FileFacts.bytes(s.file("undo"))
        var damaged = bytes
        damaged[UndoFile.headBytes + 100] ^= 1
        try #require(FileManager.default.createFile(atPath: s.file("damaged"), contents: damaged))
        refused(mem.copy(), s.file("damaged"), force: true, "damaged undo file")
        try #require(FileManager.default.createFile(atPath: s.file("head"), contents: bytes.prefix(UndoFile.headBytes)))
        refused(mem.copy(), s.file("head"), force: true, "nothing to undo")
        try #require(FileManager.default.createFile(atPath: s.file("short"), contents: bytes.prefix(24)))
        refused(mem.copy(), s.file("short"), force: true, "incomplete")
        // A completed file cut short (its trailer and last records gone), or with a damaged
        // trailer: the device holds the finished resize, so the file lost its end. Refused.
        try #require(
            FileManager.default.createFile(atPath: s.file("cut"), contents: bytes.prefix(bytes.count - (1 << 20))))
        refused(mem.copy(), s.file("cut"), "cut short or damaged")
        var badTrailer = bytes
        badTrailer[bytes.count - 3] ^= 0x40
        try #require(FileManager.default.createFile(atPath: s.file("badtrailer"), contents: badTrailer))
        refused(mem.copy(), s.file("badtrailer"), "cut short or damaged")
        // The right device: restored; a second time (a rerun after a crash before the reply):
        // nothing to do, and it says so; on another device, refused.
        try Undo.apply(undoPath: s.file("undo"), to: mem)
        #expect(mem.size == original.size && mem.snapshot() == original.snapshot())
        #expect(try Undo.apply(undoPath: s.file("undo"), to: mem).alreadyApplied)
        #expect(mem.size == original.size && mem.snapshot() == original.snapshot())
        refused(other, s.file("undo"), "already applied")
        // -f overrides the identity check.
        let forced = changed.copy()
        try Undo.apply(undoPath: s.file("undo"), to: forced, force: true)
        #expect(forced.size == original.size)
    }

    /// A re-layout interrupted at its k-th write leaves an undo file that puts the device back,
    /// byte for byte; one that fails before changing anything leaves no undo file.
    @Test func interruptedRelayoutIsUndone() throws {
        let s = try Scratch()
        let (base, _) = try populated(physical: 100 << 20, logical: 64 << 20, blocks: 40, every: 3)
        let plan = try Resizer(device: base.copy(), force: false).plan(physicalBytes: 300 << 20, logicalBytes: 64 << 20)
        #expect(!plan.keepsGeometry)
        let probe = base.copy()
        let start = probe.writeCount
        try Resizer(device: probe, force: false).resize(plan, undoPath: s.file("probe-undo"), scratch: s.path)
        let total = probe.writeCount - start
        for k in Set([0, 1, 2, 3, total / 4, total / 2, total - 2, total - 1]) where k >= 0 && k < total {
            let dev = base.copy()
            dev.failAtWrite = dev.writeCount + k
            let undo = s.file("undo-\(k)")
            #expect(throws: CBDError.self) {
                try Resizer(device: dev, force: false).resize(plan, undoPath: undo, scratch: s.path)
            }
            dev.failAtWrite = nil
            guard FileManager.default.fileExists(atPath: undo) else {
                #expect(dev.snapshot() == base.snapshot(), "no undo file, but the device changed (k = \(k))")
                continue
            }
            try Undo.apply(undoPath: undo, to: dev)
            #expect(dev.size == base.size && dev.snapshot() == base.snapshot(), "not restored after write \(k)")
        }
    }

    /// An interrupted re-layout whose last record was never synced (here: damaged, as a power
    /// cut leaves it) while its pblk was never overwritten: the record is skipped, said so, and
    /// the device comes back byte for byte (before: "damaged undo file", nothing restored).
    @Test func undoSkipsARecordNeverSynced() throws {
        let s = try Scratch()
        let (base, _) = try populated(physical: 100 << 20, logical: 64 << 20, blocks: 40, every: 3)
        let plan = try Resizer(device: base.copy(), force: false).plan(physicalBytes: 300 << 20, logicalBytes: 64 << 20)
        let probe = base.copy()
        let start = probe.writeCount
        try Resizer(device: probe, force: false).resize(plan, undoPath: s.file("probe-undo"), scratch: s.path)
        let total = probe.writeCount - start
        var tried = 0
        for k in stride(from: total / 2, to: total, by: max(1, total / 16)) {
            let dev = base.copy()
            dev.failAtWrite = dev.writeCount + k
            let undo = s.file("undo-\(k)")
            #expect(throws: CBDError.self) {
                try Resizer(device: dev, force: false).resize(plan, undoPath: undo, scratch: s.path)
            }
            dev.failAtWrite = nil
            var bytes = try FileFacts.bytes(undo)
            let records = (bytes.count - UndoFile.headBytes) / UndoFile.recordBytes
            guard records > 1 else { continue }
            let last = UndoFile.headBytes + (records - 1) * UndoFile.recordBytes
            let pblk = Int(LE.get(Array(bytes[last..<last + 8]), 0, 8))
            // Only a record whose pblk the failed write left alone can be the unsynced one.
            guard try dev.readPblks(pblk) == Array(bytes[last + 16..<last + UndoFile.recordBytes]) else { continue }
            bytes[last + 100] ^= 0x40
            try #require(FileManager.default.createFile(atPath: undo, contents: bytes))
            let r = try Undo.apply(undoPath: undo, to: dev)
            #expect(r.skipped == 1 && r.restored == records - 1, "\(r)")
            #expect(dev.size == base.size && dev.snapshot() == base.snapshot(), "not restored (k = \(k))")
            tried += 1
        }
        #expect(tried > 0, "no interruption left an unsynced last record")
    }

    /// cbd undo interrupted at its j-th write: pblk 0 names the undo file meanwhile (fsck.cbd
    /// sends the user back), the same command then finishes it, and a third run does nothing
    /// (applied; before: the original header came first, and a rerun was refused as "not as the
    /// resize left it" over a half-restored device).
    @Test func interruptedUndoIsFinishedByTheSameCommand() throws {
        let s = try Scratch()
        let (base, _) = try populated(physical: 100 << 20, logical: 64 << 20, blocks: 40, every: 3)
        let plan = try Resizer(device: base.copy(), force: false).plan(physicalBytes: 300 << 20, logicalBytes: 64 << 20)
        let resized = base.copy()
        try Resizer(device: resized, force: false).resize(plan, undoPath: s.file("undo"), scratch: s.path)
        let pristine = try FileFacts.bytes(s.file("undo"))
        let probe = resized.copy()
        let start = probe.writeCount
        try Undo.apply(undoPath: s.file("undo"), to: probe)
        let total = probe.writeCount - start
        for j in Set([1, 2, total / 3, total / 2, total - 2, total - 1]) where j >= 1 && j < total {
            try #require(FileManager.default.createFile(atPath: s.file("undo"), contents: pristine))
            let dev = resized.copy()
            dev.failAtWrite = dev.writeCount + j
            #expect(throws: CBDError.self) { try Undo.apply(undoPath: s.file("undo"), to: dev) }
            dev.failAtWrite = nil
            // The marker, or (stopped at the final cut of the size) the original header already.
            let head = try dev.readPblks(0), original = try base.readPblks(0)
            #expect(
                ResizeMarker.undoPath(in: head) != nil || head == original,
                "pblk 0 is neither the marker nor the original (j = \(j))")
            try Undo.apply(undoPath: s.file("undo"), to: dev)
            #expect(dev.size == base.size && dev.snapshot() == base.snapshot(), "not restored (j = \(j))")
            #expect(try Undo.apply(undoPath: s.file("undo"), to: dev).alreadyApplied, "j = \(j)")
            #expect(dev.snapshot() == base.snapshot())
        }
    }

    /// A resize that fails at its k-th write, for every k: fsck -y then gives a consistent device
    /// with every logical block intact.
    @Test(arguments: [(ResizeTests.cut, 8 << 20), (1300 << 20, 9 << 20)])
    func interruptedAtEveryWrite(newPhysical: Int, newLogical: Int) throws {
        let (base, before) = try populated(physical: 1 << 30, logical: 8 << 20, blocks: 128, seed: 9)
        // Count the writes of an uninterrupted run.
        let probe = base.copy()
        let start = probe.writeCount
        let plan = try Resizer(device: probe, force: false).plan(physicalBytes: newPhysical, logicalBytes: newLogical)
        #expect(plan.keepsGeometry)
        try Resizer(device: probe, force: false).resize(plan, undoPath: nil, scratch: NSTemporaryDirectory())
        let total = probe.writeCount - start
        // A shrink moves zone 7's blocks (many writes); a grow writes metadata only.
        #expect(total > (newPhysical < 1 << 30 ? 40 : 3), "\(total) writes")
        for k in 0..<total {
            let dev = base.copy()
            dev.failAtWrite = k
            #expect(throws: CBDError.self) {
                try Resizer(device: dev, force: false).resize(plan, undoPath: nil, scratch: NSTemporaryDirectory())
            }
            dev.failAtWrite = nil
            var options = Checker.Options()
            options.mode = .fixAll
            options.lostFound = LostFound(directory: lostFound.file("lost+found"))
            try Checker(device: dev, options: options).run()
            try expectConsistent(dev)
            #expect(try logicalBytes(dev, count: before.count) == before, "interrupted at write \(k)")
        }
    }

    /// The command line on converted ext4 images: grow, shrink, -M, -P, undo.
    @Test func commandLineOnAnExt4Image() throws {
        try Tools.require("mke2fs")
        let s = try Scratch()
        let raw = s.file("fs.img"), img = s.file("fs.cbd")
        #expect(try Tools.run("mke2fs", ["-q", "-F", "-t", "ext4", "-d", "/usr/share/perl5", raw, "24M"]).status == 0)
        #expect(try Tools.run("cbd", ["convert", "-q", raw, img]).status == 0)
        let steps: [[String]] = [[img, "+64M"], [img, "--", "-32M"], ["-M", img], [img, "--logical", "+8M"]]
        for args in steps {
            let r = try Tools.run("cbd", ["resize"] + args)
            #expect(r.status == 0, "\(args): \(r.stderr)")
            #expect(try Tools.run("fsck.cbd", ["-fn", img]).status == 0, "\(args)")
        }
        let back = s.file("back.img")
        #expect(try Tools.run("cbd", ["convert", "-q", img, back]).status == 0)
        #expect(try FileFacts.bytes(back).prefix(24 << 20) == FileFacts.bytes(raw))
        #expect(try Tools.run("e2fsck", ["-fn", raw]).status == 0)
        let min = try Tools.run("cbd", ["resize", "-P", img])
        #expect(min.status == 0 && min.stdout.contains("minimum"))
        // Across 2^16 pblks: without -z an image file is written anew and renamed over the old
        // one (a new inode, the same mode, the same logical bytes, nothing left beside it);
        // with -z it is rewritten in place and undone byte for byte.
        let before = try FileFacts.bytes(img)
        let limit = try Tools.run("cbd", ["info", img]).stdout
        #expect(limit.contains("grows_in_place_to:  256.00 MiB"), "\(limit)")
        let copy = s.file("copy.cbd")
        try Data(before).write(to: URL(fileURLWithPath: copy))
        chmod(copy, 0o640)
        let inode = try FileManager.default.attributesOfItem(atPath: copy)[.systemFileNumber] as? Int
        let anew = try Tools.run("cbd", ["resize", copy, "1G"])
        #expect(anew.status == 0, "\(anew.stderr)")
        let attributes = try FileManager.default.attributesOfItem(atPath: copy)
        #expect(FileFacts.size(copy) == 1 << 30 && attributes[.systemFileNumber] as? Int != inode)
        #expect(attributes[.posixPermissions] as? Int == 0o640)
        #expect(try Tools.run("fsck.cbd", ["-fn", copy]).status == 0)
        #expect(try Tools.run("cbd", ["compare", img, copy]).status == 0)
        #expect(try Tools.run("cbd", ["info", copy]).stdout.contains("grows_in_place_to:  16.00 TiB"))
        let left = try FileManager.default.contentsOfDirectory(atPath: s.path).filter { $0.contains(".tmp-") }
        #expect(left.isEmpty, "\(left)")
        let undo = s.file("undo")
        #expect(try Tools.run("cbd", ["resize", "-z", undo, img, "1G"]).status == 0)
        #expect(FileFacts.size(img) == 1 << 30)
        #expect(try Tools.run("fsck.cbd", ["-fn", img]).status == 0)
        // The undo file given with another device (the raw ext4 image) is refused: nothing changes.
        let rawBefore = try FileFacts.bytes(raw)
        let wrong = try Tools.run("cbd", ["undo", undo, raw])
        #expect(wrong.status == 1 && wrong.stderr.contains("-f"), "\(wrong.stderr)")
        #expect(try FileFacts.bytes(raw) == rawBefore)
        #expect(try Tools.run("cbd", ["undo", undo, img]).status == 0)
        #expect(try FileFacts.bytes(img) == before)
        // Applied once: a second time does nothing and succeeds (idempotent, as after a crash
        // between the last restore and the reply).
        let again = try Tools.run("cbd", ["undo", undo, img])
        #expect(again.status == 0 && again.stdout.contains("already applied"), "\(again.stderr)")
        #expect(try FileFacts.bytes(img) == before)
    }

    /// -z on a resize that keeps the layout (a shrink that moves blocks, a grow) writes its
    /// undo file too, and undo puts the device back byte for byte; an existing file is refused,
    /// even when there is nothing to do.
    @Test func undoFileForAResizeThatKeepsTheLayout() throws {
        let s = try Scratch()
        let raw = s.file("fs.img"), img = s.file("fs.cbd")
        #expect(try Tools.run("mke2fs", ["-q", "-F", "-t", "ext4", "-d", "/usr/share/perl5", raw, "24M"]).status == 0)
        #expect(try Tools.run("cbd", ["convert", "-q", raw, img]).status == 0)
        for (i, size) in ["+16M", "-M"].enumerated() {
            let before = try FileFacts.bytes(img)
            let undo = s.file("undo\(i)")
            let r = try Tools.run("cbd", ["resize", "-z", undo] + (size == "-M" ? ["-M", img] : [img, size]))
            #expect(r.status == 0, "\(r.stderr)")
            #expect(FileManager.default.fileExists(atPath: undo), "\(size): no undo file written")
            #expect(try Tools.run("fsck.cbd", ["-fn", img]).status == 0)
            let u = try Tools.run("cbd", ["undo", undo, img])
            #expect(u.status == 0, "\(u.stderr)")
            #expect(try FileFacts.bytes(img) == before, "\(size): not restored byte for byte")
            let again = try Tools.run("cbd", ["resize", "-z", undo, img, "+0"])
            #expect(again.status == 1 && again.stderr.contains("already exists"), "\(again.stderr)")
        }
    }

    @Test func blockDeviceCannotGrowPastItsSize() throws {
        let s = try Scratch()
        let disk = s.file("disk.img")
        #expect(try Tools.run("truncate", ["-s", "64M", disk]).status == 0)
        guard let loop = LoopDevice(image: disk) else { print("SKIP: no loop device"); return }
        #expect(try Tools.run("mkfs.cbd", ["-q", loop.path, "32M"]).status == 0)
        let r = try Tools.run("cbd", ["resize", loop.path, "128M"])
        #expect(r.status == 1 && r.stderr.contains("cannot grow"), "\(r.stderr)")
        let whole = try Tools.run("cbd", ["resize", loop.path])
        #expect(whole.status == 0, "\(whole.stderr)")
        #expect(try headerAndGeometry(FileDevice(path: loop.path, mode: .readOnly)).1.physicalBytes == 64 << 20)
    }
}
