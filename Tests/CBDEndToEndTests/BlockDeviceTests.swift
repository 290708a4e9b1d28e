// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDLayout
@testable import CBDCheck
@testable import CBDInspect

/// A loop device over an image file, detached at the end (skipped where losetup cannot run).
final class LoopDevice {
    let path: String
    init?(image: String) {
        guard let r = try? Tools.run("losetup", ["-f", "--show", image]), r.status == 0 else { return nil }
        path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    deinit { _ = try? Tools.run("losetup", ["-d", path]) }
}

/// The tools on real block devices: exclusive opens, mounted devices, zeros written for holes.
@Suite(.serialized) struct BlockDeviceTests {
    @Test func mkfsOnABlockDeviceAndMountedRefusal() throws {
        let s = try Scratch()
        let img = s.file("disk.img")
        #expect(try Tools.run("truncate", ["-s", "64M", img]).status == 0)
        guard let loop = LoopDevice(image: img) else { print("SKIP: no loop device"); return }
        let r = try Tools.run("mkfs.cbd", ["-q", loop.path])
        #expect(r.status == 0, "\(r.stderr)")
        let (_, g) = try headerAndGeometry(FileDevice(path: loop.path, mode: .readOnly))
        #expect(g.physicalBytes == 64 << 20)
        // The image behind a loop device is refused for writing.
        let busyImage = try Tools.run("mkfs.cbd", ["-f", img])
        #expect(busyImage.status == 1 && busyImage.stderr.contains(loop.path), "\(busyImage.stderr)")
        // A mounted device is refused even with -f, and left as it is.
        #expect(try Tools.run("mkfs.ext4", ["-q", "-F", loop.path]).status == 0)
        let mnt = s.file("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        guard try Tools.run("mount", [loop.path, mnt]).status == 0 else { print("SKIP: cannot mount"); return }
        defer { _ = try? Tools.run("umount", [mnt]) }
        let before = try Tools.run("blkid", ["-p", loop.path]).stdout
        let refused = try Tools.run("mkfs.cbd", ["-f", loop.path])
        #expect(refused.status == 1 && refused.stderr.contains("mounted or busy"), "\(refused.stderr)")
        #expect(try Tools.run("blkid", ["-p", loop.path]).stdout == before)
        let write = try Tools.run("cbd", ["write", loop.path, "-o", "0"], stdin: Data([1]))
        #expect(write.status == 1 && write.stderr.contains("mounted or busy"))
        let fsck = try Tools.run("fsck.cbd", ["-y", loop.path])
        #expect(fsck.status == 8 && fsck.stderr.contains("mounted or busy"), "\(fsck.stderr)")
        let resize = try Tools.run("cbd", ["resize", loop.path, "32M"])
        #expect(resize.status == 1 && resize.stderr.contains("mounted or busy"), "\(resize.stderr)")
        let convert = try Tools.run("cbd", ["convert", "-q", "-f", img, loop.path])
        #expect(convert.status == 1 && convert.stderr.contains("mounted or busy"), "\(convert.stderr)")
        // A larger size than the device is refused.
        _ = try Tools.run("umount", [mnt])
        let tooBig = try Tools.run("mkfs.cbd", ["-f", loop.path, "1G"])
        #expect(tooBig.status == 1 && tooBig.stderr.contains("larger than the device"), "\(tooBig.stderr)")
    }

    @Test func convertToAndFromBlockDevices() throws {
        let s = try Scratch()
        let raw = s.file("raw.img"), disk = s.file("disk.img"), disk2 = s.file("disk2.img")
        var bytes = [UInt8](repeating: 0, count: 6 << 20)
        for i in stride(from: 0, to: bytes.count, by: 3) where (i / 65536) % 3 != 1 {
            bytes[i] = UInt8(truncatingIfNeeded: i / 5)
        }
        try #require(FileManager.default.createFile(atPath: raw, contents: Data(bytes)))
        #expect(try Tools.run("truncate", ["-s", "16M", disk]).status == 0)
        try #require(FileManager.default.createFile(atPath: disk2, contents: Data(repeating: 0xCC, count: 6 << 20)))
        guard let cbdDev = LoopDevice(image: disk), let rawDev = LoopDevice(image: disk2) else {
            print("SKIP: no loop device"); return
        }
        // Raw to CBD on a block device, then CBD (on that device) to raw on another device.
        let a = try Tools.run("cbd", ["convert", "-q", raw, cbdDev.path])
        #expect(a.status == 0, "\(a.stderr)")
        let (_, g) = try headerAndGeometry(FileDevice(path: cbdDev.path, mode: .readOnly))
        #expect(g.physicalBytes <= 16 << 20 && g.logicalBytes == 6 << 20)
        let b = try Tools.run("cbd", ["convert", "-q", "-f", cbdDev.path, rawDev.path])
        #expect(b.status == 0, "\(b.stderr)")
        // Holes were written as zeros over the old 0xCC bytes.
        #expect(try FileFacts.bytes(disk2) == Data(bytes))
        // A device holding a CBD is refused as output without -f.
        let refused = try Tools.run("cbd", ["convert", "-q", raw, cbdDev.path])
        #expect(refused.status == 1 && refused.stderr.contains("CBD"), "\(refused.stderr)")
        // The packed data of a conversion onto a device goes to $TMPDIR, not beside the
        // device (/dev, a small tmpfs): a missing folder is named, and the device is untouched.
        let missing = s.file("no-such-folder")
        let spill = try Tools.run(
            "env",
            [
                "TMPDIR=\(missing)", "\(Tools.binDir)/cbd", "convert", "-q", "-f", raw,
                cbdDev.path
            ])
        #expect(
            spill.status == 1 && spill.stderr.contains(missing) && spill.stderr.contains("temporary file"),
            "\(spill.stderr)")
        #expect(try headerAndGeometry(FileDevice(path: cbdDev.path, mode: .readOnly)).1 == g)
        // With -f, a successful conversion wipes what the device held, even past the CBD
        // (a GPT keeps a backup header in the device's last sector).
        let gpt = try Tools.run("sfdisk", ["-q", "-X", "gpt", cbdDev.path], stdin: Data(",\n".utf8))
        #expect(gpt.status == 0, "\(gpt.stderr)")
        #expect(try Tools.run("blkid", ["-p", cbdDev.path]).stdout.contains("gpt"))
        let over = try Tools.run("cbd", ["convert", "-q", "-f", raw, cbdDev.path])
        #expect(over.status == 0, "\(over.stderr)")
        #expect(try Tools.run("wipefs", ["-n", cbdDev.path]).stdout.isEmpty)
        #expect(try headerAndGeometry(FileDevice(path: cbdDev.path, mode: .readOnly)).1.logicalBytes == 6 << 20)
    }
}
