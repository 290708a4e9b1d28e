// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// cbd convert, read, write and discard end to end, on real filesystem images.
@Suite(.serialized) struct ConvertTests {
    /// An ext4 image made by mke2fs -d from a real directory.
    func ext4Image(_ s: Scratch, size: String = "48M", from dir: String = "/usr/share/perl") throws -> String {
        try Tools.require("mke2fs")
        try #require(FileManager.default.fileExists(atPath: dir), "\(dir) is missing")
        let img = s.file("fs.img")
        let r = try Tools.run("mke2fs", ["-q", "-F", "-t", "ext4", "-d", dir, img, size])
        try #require(r.status == 0, "\(r.stderr)")
        return img
    }

    /// Every logical byte of `cbd` read through the Volume equals `raw` (zero-padded).
    func expectSameContent(_ cbd: String, _ raw: String) throws {
        let v = try Volume(device: try FileDevice(path: cbd, mode: .readOnly))
        let want = try FileFacts.bytes(raw)
        var got = [UInt8](repeating: 0, count: v.logicalSize)
        try got.withUnsafeMutableBytes { try v.read(into: $0, at: 0) }
        #expect(v.logicalSize >= want.count && v.logicalSize - want.count < v.geometry.lblkSize)
        let same = got.prefix(want.count).elementsEqual(want),
            zeroTail = got.dropFirst(want.count).allSatisfy { $0 == 0 }
        #expect(same, "the logical bytes differ from the raw image")
        #expect(zeroTail)
        #expect(try bitmapMismatches(v).isEmpty)
    }

    @Test(arguments: ["4K", "64K", "1M"])
    func ext4RoundTrip(block: String) throws {
        let s = try Scratch()
        let img = try ext4Image(s)
        let cbd = s.file("fs.cbd"), back = s.file("back.img")
        let a = try Tools.run("cbd", ["convert", "-q", "-b", block, img, cbd])
        #expect(a.status == 0, "\(a.stderr)")
        let b = try Tools.run("cbd", ["convert", "-q", cbd, back])
        #expect(b.status == 0, "\(b.stderr)")
        #expect(try Tools.run("cmp", [img, back]).status == 0)
        let fsck = try Tools.run("e2fsck", ["-fn", back])
        #expect(fsck.status == 0, "\(fsck.stdout)")
        try expectSameContent(cbd, img)
        // Compact: the image holds its data plus a little headroom, not the logical size.
        let (_, g) = try headerAndGeometry(FileDevice(path: cbd, mode: .readOnly))
        #expect(FileFacts.size(cbd) == g.physicalBytes)
        if block != "4K" { #expect(FileFacts.size(cbd) < FileFacts.size(img)) }
        // The raw output is sparse: unallocated blocks are holes.
        #expect(FileFacts.allocated(back) < FileFacts.size(back))
    }

    /// A memory budget too small for two windows (`--memory 1`: the floor, one block in flight,
    /// one window written before it is reused) converts both ways the same, byte for byte.
    @Test(arguments: ["64K", "1M"])
    func roundTripAtTheMemoryFloor(block: String) throws {
        let s = try Scratch()
        let img = try ext4Image(s, size: "24M")
        let cbd = s.file("fs.cbd"), back = s.file("back.img")
        let a = try Tools.run("cbd", ["convert", "-q", "--memory", "1", "-b", block, img, cbd])
        #expect(a.status == 0, "\(a.stderr)")
        let b = try Tools.run("cbd", ["convert", "-q", "--memory", "1", cbd, back])
        #expect(b.status == 0, "\(b.stderr)")
        #expect(try Tools.run("cmp", [img, back]).status == 0)
        #expect(try Tools.run("e2fsck", ["-fn", back]).status == 0)
        try expectSameContent(cbd, img)
        let normal = s.file("normal.cbd")
        #expect(try Tools.run("cbd", ["convert", "-q", "-b", block, img, normal]).status == 0)
        #expect(try FileFacts.bytes(normal) == FileFacts.bytes(cbd), "the budget changes nothing in the output")
    }

    /// Windows within the budget: as many blocks as preferred, double-buffered, when they fit;
    /// fewer when they do not; one block single-buffered at the floor (1 GiB blocks by default).
    @Test func memoryBudgetCutsTheWindow() {
        let gib = 1 << 30
        #expect(MemoryBudget(bytes: gib).windows(preferred: 256, blockBytes: 64 << 10, buffersPerBlock: 2) == (256, 2))
        #expect(MemoryBudget(bytes: gib).windows(preferred: 2, blockBytes: 256 << 20, buffersPerBlock: 2) == (1, 2))
        #expect(MemoryBudget(bytes: gib).windows(preferred: 2, blockBytes: gib, buffersPerBlock: 2) == (1, 1))
        #expect(MemoryBudget(bytes: 1).windows(preferred: 8, blockBytes: 64 << 10, buffersPerBlock: 1) == (1, 1))
        #expect(MemoryBudget.standard.bytes <= gib && MemoryBudget.standard.bytes > 0)
    }

    @Test func incompressibleAndOddSizedImage() throws {
        let s = try Scratch()
        let img = s.file("random.img"), cbd = s.file("r.cbd"), back = s.file("back.img")
        var rng = SplitMix(seed: 42)
        let size = 3 * 65536 * 7 + 12345  // not a multiple of the block size
        var bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for i in 65536..<(3 * 65536) { bytes[i] = UInt8(i % 7) }  // some compressible blocks too
        try #require(FileManager.default.createFile(atPath: img, contents: Data(bytes)))
        #expect(try Tools.run("cbd", ["convert", "-q", img, cbd]).status == 0)
        try expectSameContent(cbd, img)
        #expect(try Tools.run("cbd", ["convert", "-q", cbd, back]).status == 0)
        let out = try FileFacts.bytes(back)
        #expect(out.count == (size + 65535) / 65536 * 65536)
        #expect(out.prefix(size).elementsEqual(bytes))
        #expect(out.dropFirst(size).allSatisfy { $0 == 0 })
        let v = try Volume(device: try FileDevice(path: cbd, mode: .readOnly))
        guard case .raw = try v.entry(0) else { Issue.record("random block not raw"); return }
        guard case .compressed = try v.entry(2) else { Issue.record("patterned block not compressed"); return }
    }

    @Test func sparseInputAndExplicitPhysicalSize() throws {
        let s = try Scratch()
        let img = s.file("sparse.img"), cbd = s.file("s.cbd")
        #expect(try Tools.run("truncate", ["-s", "96M", img]).status == 0)
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: img))
        try fh.seek(toOffset: 50 << 20)
        try fh.write(contentsOf: Data(repeating: 7, count: 100_000))
        try fh.close()
        let r = try Tools.run("cbd", ["convert", "-q", "-s", "64M", img, cbd])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileFacts.size(cbd) == 64 << 20)
        try expectSameContent(cbd, img)
        // Too small a physical size is refused and leaves nothing behind.
        let tooSmall = try Tools.run("cbd", ["convert", "-q", "-s", "16K", img, s.file("x.cbd")])
        #expect(tooSmall.status == 1 && tooSmall.stderr.split(separator: "\n").count == 1, "\(tooSmall.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.file("x.cbd")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path).sorted() == ["s.cbd", "sparse.img"])
    }

    /// A zone table over 1 MiB is written in several chunks: its padding must stop at the
    /// table's end (a bug once overwrote the first data pblk after such a table).
    @Test func largeZoneTableKeepsTheDataAfterIt() throws {
        let s = try Scratch()
        let img = s.file("big.img"), cbd = s.file("big.cbd"), back = s.file("back.img")
        #expect(try Tools.run("truncate", ["-s", "2G", img]).status == 0)
        // Data at both ends: the table's last chunk holds entries, so it is written.
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: img))
        try fh.write(contentsOf: Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 / 7) }))
        try fh.seek(toOffset: (2 << 30) - (1 << 20))
        try fh.write(contentsOf: Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 / 5) }))
        try fh.close()
        #expect(try Tools.run("cbd", ["convert", "-q", img, cbd]).status == 0)
        let g = try headerAndGeometry(FileDevice(path: cbd, mode: .readOnly)).1
        // Over 1 MiB of 34-byte entries: the stream flushes off a pblk boundary.
        #expect(g.tableBlocks * 4096 > 1 << 20 && 4096 % g.entryLen != 0)
        #expect(try Tools.run("cbd", ["convert", "-q", cbd, back]).status == 0)
        #expect(try Tools.run("cmp", [img, back]).status == 0)
        #expect(try Tools.run("fsck.cbd", ["-fn", "-c", cbd]).status == 0)
    }

    @Test func existingOutputNeedsForce() throws {
        let s = try Scratch()
        let img = s.file("a.img"), out = s.file("out.cbd")
        try #require(FileManager.default.createFile(atPath: img, contents: Data(repeating: 3, count: 300_000)))
        try #require(FileManager.default.createFile(atPath: out, contents: Data("keep".utf8)))
        let r = try Tools.run("cbd", ["convert", img, out])
        #expect(r.status == 1 && r.stderr.contains("-f"))
        #expect(try FileFacts.bytes(out) == Data("keep".utf8))
        #expect(try Tools.run("cbd", ["convert", "-q", "-f", img, out]).status == 0)
        try expectSameContent(out, img)
    }

    @Test func corruptDeviceIsReportedNotConverted() throws {
        let s = try Scratch()
        let img = s.file("a.img"), cbd = s.file("a.cbd")
        try #require(
            FileManager.default.createFile(
                atPath: img, contents: Data((0..<400_000).map { UInt8(truncatingIfNeeded: $0 / 3) })))
        #expect(try Tools.run("cbd", ["convert", "-q", img, cbd]).status == 0)
        // Damage the first entry's pblk slot to point at the header (and close the image:
        // while this writer holds it, readers are refused).
        do {
            let dev = try FileDevice(path: cbd, mode: .readWrite)
            let (_, g) = try headerAndGeometry(dev)
            var t = try dev.readPblks(g.tablePblks(0).lowerBound)
            LE.put(1, g.pblkBytes, &t, g.lenBytes)  // slot 0 names pblk 1: the bitmap, not data
            try dev.writePblks(t, at: g.tablePblks(0).lowerBound)
        }
        let r = try Tools.run("cbd", ["convert", cbd, s.file("back.img")])
        #expect(r.status == 1 && r.stderr.contains("logical block 0"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.file("back.img")))
    }

    @Test func readWriteDiscardMatchAModel() throws {
        let s = try Scratch()
        let cbd = s.file("v.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", "-b", "16K", cbd, "4M"]).status == 0)
        let logical = 12 << 20
        var model = [UInt8](repeating: 0, count: logical)
        var rng = SplitMix(seed: 7)
        for i in 0..<24 {
            let off = Int(rng.next() % UInt64(logical - 100_000))
            let len = Int(rng.next() % 100_000) + 1
            if i % 4 == 3 {
                let r = try Tools.run("cbd", ["discard", cbd, "--offset", "\(off)", "--length", "\(len)"])
                #expect(r.status == 0, "\(r.stderr)")
                model.replaceSubrange(off..<off + len, with: repeatElement(0, count: len))
            } else {
                let data = (0..<len).map { j in
                    i % 2 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : UInt8((off + j) % 251)
                }
                let r = try Tools.run("cbd", ["write", cbd, "--offset", "\(off)"], stdin: Data(data))
                #expect(r.status == 0, "\(r.stderr)")
                model.replaceSubrange(off..<off + len, with: data)
            }
            let probe = Int(rng.next() % UInt64(logical - 70_000))
            let r = try Tools.run("cbd", ["read", cbd, "--offset", "\(probe)", "--length", "70000"])
            #expect(r.out.elementsEqual(model[probe..<probe + 70000]), "read after op \(i)")
        }
        let all = try Tools.run("cbd", ["read", cbd])
        #expect(all.out.count == logical && all.out.elementsEqual(model))
        #expect(try headerAndGeometry(FileDevice(path: cbd, mode: .readOnly)).0.isDirty == false)
        // Past the end: refused, one line, exit 1.
        let past = try Tools.run("cbd", ["write", cbd, "--offset", "\(logical - 10)"], stdin: Data(count: 20))
        #expect(past.status == 1 && past.stderr.contains("logical size"))
        let pastRead = try Tools.run("cbd", ["read", cbd, "--offset", "\(logical)", "--length", "1"])
        #expect(pastRead.status == 1)
        let bad = try Tools.run("cbd", ["read", cbd, "--offset", "-5"])
        #expect(bad.status == 64)
    }

    @Test func qemuImgPeerAgrees() throws {
        // qemu-img reads our raw output like the input: an outside view of the same bytes.
        try Tools.require("qemu-img")
        let s = try Scratch()
        let img = try ext4Image(s, size: "24M", from: "/usr/share/perl5")
        let cbd = s.file("a.cbd"), back = s.file("back.img")
        #expect(try Tools.run("cbd", ["convert", "-q", img, cbd]).status == 0)
        #expect(try Tools.run("cbd", ["convert", "-q", cbd, back]).status == 0)
        let r = try Tools.run("qemu-img", ["compare", "-f", "raw", "-F", "raw", img, back])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
    }
}
