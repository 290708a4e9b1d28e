// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
import CBDCLI
@testable import CBDDevice
@testable import CBDLayout
@testable import CBDCheck

/// mkfs.cbd end to end on image files.
@Suite struct MkfsTests {
    /// Checks a freshly formatted image by the rules of format-v1 and returns its geometry.
    @discardableResult
    func checkFresh(_ path: String) throws -> Geometry {
        let dev = try FileDevice(path: path, mode: .readOnly)
        let (h, g) = try headerAndGeometry(dev)
        #expect(!h.isDirty)
        for z in 0..<g.nrZones {
            let bitmap = try dev.readPblks(g.bitmapPblk(z))
            #expect(bitmap == Bitmap(dataPblks: g.dataPblkCount(z)).bytes, "bitmap of zone \(z)")
            let table = try dev.readPblks(g.tablePblks(z).lowerBound, count: g.tableBlocks)
            #expect(table.allSatisfy { $0 == 0 }, "table of zone \(z)")
        }
        return g
    }

    @Test(arguments: [
        ("1M", "4K"), ("1M", "64K"), ("130M", "64K"), ("300M", "4K"), ("256M", "1M"), ("2G", "128K"),
        ("600M", "1G")
    ])
    func formatsAcrossSizesAndBlockSizes(size: String, block: String) throws {
        let s = try Scratch()
        let img = s.file("a.img")
        let r = try Tools.run("mkfs.cbd", ["-q", "-b", block, img, size])
        try #require(r.status == 0, "\(r.stderr)")
        let g = try checkFresh(img)
        #expect(g.lblkSize == ByteSize.parse(block))
        #expect(FileFacts.size(img) == ByteSize.parse(size))
        #expect(g.nrLblk == ByteSize.parse(size)! / 4096 * 4096 * 3 / g.lblkSize)
    }

    @Test func explicitLogicalSizeAndRatio() throws {
        let s = try Scratch()
        let a = s.file("a.img"), b = s.file("b.img")
        #expect(try Tools.run("mkfs.cbd", ["-q", "-l", "10G", a, "256M"]).status == 0)
        #expect(try checkFresh(a).logicalBytes == 10 << 30)
        #expect(try Tools.run("mkfs.cbd", ["-q", "-r", "1.5", b, "256M"]).status == 0)
        #expect(try checkFresh(b).logicalBytes == 384 << 20)
    }

    @Test func dryRunWritesNothing() throws {
        let s = try Scratch()
        let img = s.file("a.img")
        // A missing file stays missing.
        let r = try Tools.run("mkfs.cbd", ["-n", img, "64M"])
        #expect(r.status == 0 && r.stdout.contains("lblk_alloc_16_16"))
        #expect(!FileManager.default.fileExists(atPath: img))
        // An existing file keeps every byte.
        try #require(
            FileManager.default.createFile(
                atPath: img, contents: Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 * 7) })))
        let before = try FileFacts.bytes(img)
        #expect(try Tools.run("mkfs.cbd", ["-n", img]).status == 0)
        #expect(try FileFacts.bytes(img) == before)
    }

    @Test func refusesAndWipesExt4() throws {
        try Tools.require("mkfs.ext4", "blkid")
        let s = try Scratch()
        let img = s.file("ext4.img")
        #expect(try Tools.run("truncate", ["-s", "64M", img]).status == 0)
        #expect(try Tools.run("mkfs.ext4", ["-q", "-F", img]).status == 0)
        let before = try FileFacts.bytes(img)
        let refused = try Tools.run("mkfs.cbd", [img])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("ext4") && refused.stderr.contains("-f"))
        #expect(refused.stderr.split(separator: "\n").count == 1)
        #expect(try FileFacts.bytes(img) == before)
        let forced = try Tools.run("mkfs.cbd", ["-f", "-q", img])
        #expect(forced.status == 0, "\(forced.stderr)")
        try checkFresh(img)
        let probe = try Tools.run("blkid", ["-p", img])
        #expect(!probe.stdout.contains("ext4"), "\(probe.stdout)")
        // And now it is a CBD device, which mkfs.cbd also refuses to overwrite without -f.
        let again = try Tools.run("mkfs.cbd", [img])
        #expect(again.status == 1 && again.stderr.contains("CBD"))
    }

    @Test func refusesPartitionTable() throws {
        try Tools.require("sfdisk")
        let s = try Scratch()
        let img = s.file("disk.img")
        #expect(try Tools.run("truncate", ["-s", "32M", img]).status == 0)
        #expect(try Tools.run("sh", ["-c", "echo 'label: gpt' | sfdisk -q \(img)"]).status == 0)
        let r = try Tools.run("mkfs.cbd", [img])
        #expect(r.status == 1 && r.stderr.contains("partition table"), "\(r.stderr)")
        #expect(try Tools.run("mkfs.cbd", ["-q", "-f", img]).status == 0)
        #expect(!(try Tools.run("blkid", ["-p", img]).stdout.contains("gpt")))
    }

    @Test func oneTebibyteStaysSparse() throws {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let s = try Scratch(under: base)
        let img = s.file("big.img")
        let r = try Tools.run("mkfs.cbd", ["-q", img, "1T"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileFacts.size(img) == 1 << 40)
        // Only the header and the last zone's padded bitmap hold data.
        #expect(FileFacts.allocated(img) <= 64 * 4096, "allocated \(FileFacts.allocated(img))")
        let dev = try FileDevice(path: img, mode: .readOnly)
        let (_, g) = try headerAndGeometry(dev)
        #expect(g.variantName == "lblk_alloc_16_32" && g.logicalBytes == 3 << 40)
    }

    /// Over 2^32 pblks (16 TiB + 4 KiB) on tmpfs, which holds sparse files that large.
    @Test func beyondTwoToThe32Pblks() throws {
        try #require(FileManager.default.fileExists(atPath: "/dev/shm"), "no tmpfs at /dev/shm")
        let s = try Scratch(under: "/dev/shm")
        let img = s.file("huge.img")
        let size = (1 << 44) + 64 * 4096
        let r = try Tools.run("mkfs.cbd", ["-q", img, String(size)])
        try #require(r.status == 0, "\(r.stderr)")
        let dev = try FileDevice(path: img, mode: .readOnly)
        let (_, g) = try headerAndGeometry(dev)
        #expect(g.nrPblk > 1 << 32)
        #expect(g.pblkBytes == 6 && g.variantName == "lblk_alloc_16_48")
        let last = g.nrZones - 1
        #expect(try dev.readPblks(g.bitmapPblk(last)) == Bitmap(dataPblks: g.dataPblkCount(last)).bytes)
    }

    @Test func reformattingAnExistingImageClearsOldTables() throws {
        let s = try Scratch()
        let img = s.file("a.img")
        try #require(FileManager.default.createFile(atPath: img, contents: Data(repeating: 0xAB, count: 8 << 20)))
        let r = try Tools.run("mkfs.cbd", ["-q", img])
        #expect(r.status == 0, "\(r.stderr)")
        try checkFresh(img)
    }

    @Test func badInputGivesOneLineAndWritesNothing() throws {
        let s = try Scratch()
        let missing = s.file("missing.img")
        let cases: [([String], String)] = [
            ([missing], "does not exist"),
            ([missing, "10K"], "too small"),
            (["-l", "1P", missing, "1M"], "too large"),
            ([s.path], "directory"),
            (["/dev/null"], "not a regular file or block device")
        ]
        for (args, words) in cases {
            let r = try Tools.run("mkfs.cbd", args)
            #expect(r.status == 1, "\(args): \(r.stderr)")
            #expect(r.stderr.contains(words), "\(args): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: missing), "\(args)")
        }
        let usage = try Tools.run("mkfs.cbd", ["-l", "1G", "-r", "2", missing, "1M"])
        #expect(usage.status == 64)
        // A malformed size or block size is a usage error that quotes it.
        for (args, bad) in [
            ([missing, "abc"], "abc"), (["-b", "3K", missing, "1M"], "3K"), (["-b", "2G", missing, "1M"], "2G"),
            (["-L", "1Q", missing, "1M"], "1Q")
        ] {
            let r = try Tools.run("mkfs.cbd", args)
            #expect(r.status == 64 && r.stderr.contains("'\(bad)' is invalid"), "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: missing), "\(args)")
        }
        // A read-only image is refused untouched.
        let ro = s.file("ro.img")
        try #require(FileManager.default.createFile(atPath: ro, contents: Data(repeating: 1, count: 1 << 20)))
        chmod(ro, 0o444)
        let r = try Tools.run("mkfs.cbd", [ro])
        #expect(r.status == 1 && r.stderr.contains("read-only"), "\(r.stderr)")
        #expect(try FileFacts.bytes(ro) == Data(repeating: 1, count: 1 << 20))
    }
}
