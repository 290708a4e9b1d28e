// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// Damage a disk really suffers to pblk 0 and to the file's length: a zeroed header, a set
/// reserved byte, a truncated image. fsck.cbd repairs each (a second run is clean and the
/// independent checker agrees), keeps every block it can and names every one it cannot.
@Suite struct HeaderRecoveryTests {
    static let cbdimg = FsckTests.corpus + "/cbdimg.py"

    func expectRepairedAndClean(_ dev: String, _ args: [String] = ["-fy"]) throws -> Tools.Result {
        let r = try Tools.run("fsck.cbd", args + [dev])
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        let again = try Tools.run("fsck.cbd", ["-fn", dev])
        #expect(again.status == 0, "second run: \(again.stdout)\(again.stderr)")
        let check = try Tools.run("python3", [Self.cbdimg, dev, "check"])
        #expect(check.status == 0, "independent check: \(check.stdout)")
        return r
    }

    /// Every lblk a `fsck.cbd --json` run names, as a problem's block or a suspect.
    func namedLblks(_ r: Tools.Result) throws -> Set<Int> {
        let json = try #require(try JSONSerialization.jsonObject(with: r.out) as? [String: Any])
        var named = Set<Int>()
        for p in json["problems"] as? [[String: Any]] ?? [] {
            if let n = p["lblk"] as? Int { named.insert(n) }
            named.formUnion(p["suspect_lblks"] as? [Int] ?? [])
        }
        return named
    }

    /// Pblk 0 zeroed on a converted ext4: -n finds the geometry, says so and prints the
    /// command; -y writes the header; every block reads back as before and e2fsck agrees.
    @Test func zeroedHeaderOfExt4IsFoundAgain() throws {
        let s = try Scratch()
        let (raw, dev) = try convertedExt4(s)
        try overwrite(dev, at: 0, with: Data(count: 4096))
        #expect(try Tools.run("cbd", ["info", dev]).status == 1)
        let n = try Tools.run("fsck.cbd", ["-fn", dev])
        #expect(
            n.status == 4 && n.stdout.contains("the zones fit") && n.stdout.contains("fsck.cbd -fy"),
            "\(n.stdout)\(n.stderr)")
        _ = try expectRepairedAndClean(dev)
        #expect(try Tools.run("cbd", ["compare", raw, dev]).status == 0)
        let back = s.file("back.img")
        #expect(try Tools.run("cbd", ["convert", "-q", dev, back]).status == 0)
        #expect(try Tools.run("e2fsck", ["-fn", back]).status == 0)
    }

    /// The independent writer's device (random placement, another zone size): found again too.
    @Test func zeroedHeaderOfAForeignDeviceIsFoundAgain() throws {
        let s = try Scratch()
        let raw = s.file("in.raw"), dev = s.file("d.cbd")
        try #require(try Tools.run("python3", [Self.cbdimg, raw, "make-raw", "\(96 << 16)", "7"]).status == 0)
        try #require(
            try Tools.run("python3", [Self.cbdimg, dev, "write-image", raw, "\(300 << 20)", "2", "7", "42"]).status == 0
        )
        try overwrite(dev, at: 0, with: Data(count: 4096))
        _ = try expectRepairedAndClean(dev)
        let out = s.file("out.raw")
        #expect(try Tools.run("python3", [Self.cbdimg, dev, "read-image", out]).status == 0)
        #expect(try FileFacts.bytes(out).prefix(96 << 16) == FileFacts.bytes(raw))
    }

    /// A set reserved byte is a problem -p clears: the file is as it was, byte for byte.
    @Test func reservedByteIsCleared() throws {
        let s = try Scratch()
        let (_, dev) = try convertedExt4(s)
        let before = try FileFacts.bytes(dev)
        try overwrite(dev, at: 200, with: Data([1]))
        #expect(try Tools.run("cbd", ["info", dev]).status == 1)
        let r = try Tools.run("fsck.cbd", ["-p", dev])
        #expect(r.status == 1 && r.stdout.contains("reserved byte at offset 200"), "\(r.stdout)\(r.stderr)")
        #expect(try FileFacts.bytes(dev) == before)
    }

    /// An image cut short: grown back; every block that reads differently is named (JSON), the
    /// rest read as before.
    @Test func truncatedImageIsGrownBackAndLossesNamed() throws {
        let s = try Scratch()
        let (raw, dev) = try convertedExt4(s)
        let size = FileFacts.size(dev)
        try #require(truncate(dev, off_t(size - (2 << 20))) == 0)  // the last MiB of a converted image is free
        let r = try expectRepairedAndClean(dev, ["-fy", "--json"])
        #expect(FileFacts.size(dev) == size)
        let named = try namedLblks(r)
        #expect(!named.isEmpty)
        let want = [UInt8](try FileFacts.bytes(raw))
        let got = [UInt8](try Tools.run("cbd", ["read", dev, "-l", "\(want.count)"]).out)
        try #require(got.count == want.count)
        for n in 0..<want.count / 65536 where got[n * 65536..<(n + 1) * 65536] != want[n * 65536..<(n + 1) * 65536] {
            #expect(named.contains(n), "lblk \(n) changed without being named")
        }
    }

    /// The independent writer's device (random placement: the cut takes data of lblks all over
    /// the device) cut short: grown back, and every lblk that reads differently is named.
    @Test func truncatedForeignDeviceIsGrownBackAndLossesNamed() throws {
        let s = try Scratch()
        let raw = s.file("in.raw"), dev = s.file("d.cbd")
        try #require(try Tools.run("python3", [Self.cbdimg, raw, "make-raw", "\(96 << 16)", "11"]).status == 0)
        try #require(
            try Tools.run(
                "python3",
                [
                    Self.cbdimg, dev, "write-image", raw, "\((96 << 16) + (1 << 20))", "4", "7",
                    "11"
                ]
            ).status == 0)
        let size = FileFacts.size(dev)
        try #require(truncate(dev, off_t(size - (1 << 20))) == 0)
        let r = try expectRepairedAndClean(dev, ["-fy", "--json"])
        #expect(FileFacts.size(dev) == size)
        let named = try namedLblks(r)
        let want = [UInt8](try FileFacts.bytes(raw))
        let got = [UInt8](try Tools.run("cbd", ["read", dev, "-l", "\(want.count)"]).out)
        try #require(got.count == want.count)
        var changed = 0
        for n in 0..<want.count / 65536 where got[n * 65536..<(n + 1) * 65536] != want[n * 65536..<(n + 1) * 65536] {
            changed += 1
            #expect(named.contains(n), "lblk \(n) changed without being named")
        }
        #expect(changed > 0, "the cut took no data: the test shows nothing")
    }

    /// An empty device fits many layouts: fsck.cbd refuses to guess (exit 8) and prints the
    /// mkfs.cbd -S command of what fits; that command, then fsck.cbd, gives a clean device.
    @Test func emptyDeviceListsMkfsS() throws {
        let s = try Scratch()
        let dev = s.file("e.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", dev, "64M"]).status == 0)
        try overwrite(dev, at: 0, with: Data(count: 4096))
        let r = try Tools.run("fsck.cbd", ["-fy", dev])
        #expect(r.status == 8, "\(r.stdout)")
        let line = try #require(r.stderr.split(separator: "\n").first { $0.contains("mkfs.cbd -S") })
        let args = line.split(separator: " ").map(String.init).drop { $0 != "mkfs.cbd" }.dropFirst()
        #expect(try Tools.run("mkfs.cbd", ["-q"] + args).status == 0)
        let y = try Tools.run("fsck.cbd", ["-fy", dev])
        #expect(y.status <= 1, "\(y.stdout)")
        #expect(try Tools.run("fsck.cbd", ["-fn", dev]).status == 0)
    }

    /// Two fields wrong at once (found by scripts/hostile.py, seed 111): a set reserved byte
    /// and a size far past the device. The size is not believed: nothing is read past the end,
    /// the layout comes from the zones.
    @Test func reservedByteAndHugeSizeTogether() throws {
        let s = try Scratch()
        let (raw, dev) = try convertedExt4(s)
        try overwrite(dev, at: 300, with: Data([9]))
        var size = Data(count: 8)
        size.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(71_468_256_483_328).littleEndian, as: UInt64.self) }
        try overwrite(dev, at: 8, with: size)
        let n = try Tools.run("fsck.cbd", ["-fn", dev])
        #expect(n.status == 4 && !n.stderr.contains("unexpected end"), "\(n.stdout)\(n.stderr)")
        _ = try expectRepairedAndClean(dev)
        #expect(try Tools.run("cbd", ["compare", raw, dev]).status == 0)
    }
}
