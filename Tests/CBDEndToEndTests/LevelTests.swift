// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// `--level`: LZ4HC output is plain LZ4, read back bit-exact by the independent reader
/// (`cbdimg.py`, which decodes with liblz4's LZ4_decompress_safe), and smaller.
@Suite struct LevelTests {
    static let cbdimg = FsckTests.corpus + "/cbdimg.py"

    func usedBytes(_ img: String) throws -> Int {
        let info = try #require(
            JSONSerialization.jsonObject(with: try Tools.run("cbd", ["info", "--json", img]).out)
                as? [String: Any])
        return try #require(info["used"] as? Int)  // bytes of data pblks in use
    }

    @Test func levelsRoundTripAndShrink() throws {
        let s = try Scratch()
        // The first 8 MiB of an ext4 image (level 12 costs some 80 times level 1's CPU).
        let fs = try ConvertTests().ext4Image(s, size: "24M"), raw = s.file("head.img")
        try #require(FileManager.default.createFile(atPath: raw, contents: try FileFacts.bytes(fs).prefix(8 << 20)))
        var sizes: [Int: Int] = [:]
        for level in [1, 2, 9, 12] {
            let img = s.file("l\(level).cbd"), back = s.file("l\(level).raw")
            let c = try Tools.run("cbd", ["convert", "-q", "--level", "\(level)", raw, img])
            try #require(c.status == 0, "\(c.stderr)")
            let check = try Tools.run("python3", [Self.cbdimg, img, "check"])
            #expect(check.status == 0, "level \(level): \(check.stdout)\(check.stderr)")
            let read = try Tools.run("python3", [Self.cbdimg, img, "read-image", back])
            try #require(read.status == 0, "level \(level): \(read.stderr)")
            #expect(
                try FileFacts.bytes(back).prefix(try FileFacts.bytes(raw).count) == FileFacts.bytes(raw),
                "level \(level) does not read back")
            sizes[level] = try usedBytes(img)
        }
        let fast = try #require(sizes[1]), hc9 = try #require(sizes[9]), hc12 = try #require(sizes[12])
        #expect(hc9 < fast && hc12 <= hc9, "data bytes by level: \(sizes)")
        // Out of range: a usage error, nothing written.
        let bad = try Tools.run("cbd", ["convert", "-q", "--level", "13", raw, s.file("bad.cbd")])
        #expect(
            bad.status == 64 && !FileManager.default.fileExists(atPath: s.file("bad.cbd")),
            "\(bad.status) \(bad.stderr)")
    }

    /// cbd write and the plugin (`level=`) compress what they write at the level given.
    @Test func writersTakeALevel() throws {
        let s = try Scratch()
        let raw = try ConvertTests().ext4Image(s, size: "24M")
        let data = try FileFacts.bytes(raw)
        var sizes: [Int] = []
        for level in ["1", "9"] {
            let dev = s.file("w\(level).cbd")
            try #require(try Tools.run("mkfs.cbd", ["-q", dev, "64M"]).status == 0)
            let w = try Tools.run("cbd", ["write", "--level", level, dev], stdin: data)
            try #require(w.status == 0, "\(w.stderr)")
            #expect(try Tools.run("cbd", ["read", "-l", "\(data.count)", dev]).out == data)
            sizes.append(try usedBytes(dev))
        }
        #expect(sizes[1] < sizes[0], "cbd write --level 9 did not shrink: \(sizes)")
        guard Tools.available("nbdkit") && Tools.available("nbdcopy") else { return }
        let dev = s.file("served.cbd")
        try #require(try Tools.run("mkfs.cbd", ["-q", dev, "64M"]).status == 0)
        let r = try Tools.run("cbd", ["serve", "--level", "9", dev, "--run", "nbdcopy \(raw) \"$uri\""])
        try #require(r.status == 0, "\(r.stderr)")
        #expect(try Tools.run("cbd", ["read", "-l", "\(data.count)", dev]).out == data)
        #expect(try usedBytes(dev) == sizes[1], "served at level 9: as cbd write --level 9")
    }
}
