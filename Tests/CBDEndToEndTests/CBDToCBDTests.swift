// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// `cbd convert IN.cbd OUT.cbd --to cbd`: re-blocks and recompresses a CBD, reading only its
/// allocated blocks; the default direction for each input stays what it was.
@Suite struct CBDToCBDTests {
    @Test func reblockKeepsContentAndHoles() throws {
        let s = try Scratch()
        let raw = try ConvertTests().ext4Image(s, size: "24M")
        let a = s.file("a.cbd"), b = s.file("b.cbd")
        // The ext4 image at the start of a 64 GiB logical device; the rest unallocated.
        try #require(try Tools.run("mkfs.cbd", ["-q", "-L", "64G", a, "64M"]).status == 0)
        try #require(try Tools.run("cbd", ["write", a], stdin: try FileFacts.bytes(raw)).status == 0)
        let c = try Tools.run("cbd", ["convert", "--to", "cbd", "-b", "128K", "--level", "9", a, b])
        try #require(c.status == 0, "\(c.stderr)")
        #expect(c.stdout.contains("(CBD to CBD)"), "\(c.stdout)")
        #expect(try Tools.run("fsck.cbd", ["-fn", "-c", b]).status == 0)
        let info = try #require(
            JSONSerialization.jsonObject(with: try Tools.run("cbd", ["info", "--json", b]).out)
                as? [String: Any])
        #expect(info["block_size"] as? Int == 131072 && info["logical_size"] as? Int == 64 << 30)
        // 24 MiB of data in 128 KiB blocks: at most 192 allocated, the rest holes.
        #expect((info["unallocated_blocks"] as? Int ?? 0) >= (64 << 30) / 131072 - 192, "\(info)")
        let n = try FileFacts.bytes(raw).count
        #expect(try Tools.run("cbd", ["read", "-l", "\(n)", b]).out == FileFacts.bytes(raw))
        // The whole logical devices agree (the holes read as zeros on both).
        let cmp = try Tools.run("cbd", ["compare", a, b])
        #expect(cmp.status == 0, "\(cmp.stdout)\(cmp.stderr)")
    }

    @Test func directionDefaultsAndRefusals() throws {
        let s = try Scratch()
        let raw = s.file("r.img")
        try #require(FileManager.default.createFile(atPath: raw, contents: Data(repeating: 7, count: 1 << 20)))
        let cbd = s.file("c.cbd"), back = s.file("back.img")
        #expect(try Tools.run("cbd", ["convert", "-q", raw, cbd]).status == 0)  // raw -> CBD
        #expect(try Tools.run("cbd", ["convert", "-q", cbd, back]).status == 0)  // CBD -> raw
        #expect(try FileFacts.bytes(back) == FileFacts.bytes(raw))
        let bad = try Tools.run("cbd", ["convert", "-q", "--to", "raw", raw, s.file("x")])
        #expect(bad.status == 1 && bad.stderr.contains("not a CBD device"), "\(bad.stderr)")
    }
}
