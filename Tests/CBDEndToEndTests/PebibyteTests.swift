// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport

/// Every tool (mkfs, write, fsck, resize, info, convert both ways, read, serve) on a 1 PiB sparse image (on tmpfs: ext4 files stop at 16 TiB) with 1 MiB of data
/// at the start, the middle and the end of its 4 TiB logical device: each is correct and its
/// peak memory (counted by /usr/bin/time, not timed) stays far below 256 MiB. Before, fsck and
/// info aborted allocating 34 GB, and mkfs took 12-21 s.
@Suite(.serialized) struct PebibyteTests {
    static let logical = 4 << 40
    static let offsets = [0, 2 << 40, (4 << 40) - (1 << 20)]

    /// Runs a tool under /usr/bin/time; its result and its peak RSS in bytes.
    func measured(_ tool: String, _ args: [String], stdin: Data? = nil) throws -> (Tools.Result, Int) {
        let r = try Tools.run("/usr/bin/time", ["-f", "rss=%M", Tools.binDir + "/" + tool] + args, stdin: stdin)
        let kb = r.stderr.split(separator: "\n").last(where: { $0.hasPrefix("rss=") }).flatMap { Int($0.dropFirst(4)) }
        return (r, (kb ?? Int.max / 1024) * 1024)
    }

    @Test func everyToolOnAPebibyteDevice() throws {
        guard FileManager.default.fileExists(atPath: "/dev/shm") else {
            print("skipped: no tmpfs at /dev/shm for a 1 PiB sparse file")
            return
        }
        try Tools.require("/usr/bin/time", "nbdinfo", "nbdkit")
        let s = try Scratch(under: "/dev/shm")
        let dev = s.file("dev.cbd"), raw = s.file("dev.raw"), back = s.file("back.cbd")
        try #require(FileManager.default.createFile(atPath: dev, contents: nil))
        try #require(truncate(dev, 1 << 50) == 0)
        let limit = 256 << 20
        let (mkfs, mkfsRSS) = try measured("mkfs.cbd", ["-q", "-l", "4T", dev])
        #expect(mkfs.status == 0 && mkfsRSS < limit, "\(mkfs.stderr)")
        let data = Self.offsets.map { SparseConvertTests.bytes(1 << 20, seed: UInt64($0 >> 20) + 2) }
        for (o, d) in zip(Self.offsets, data) {
            let (w, rss) = try measured("cbd", ["write", "-o", "\(o)", dev], stdin: Data(d))
            #expect(w.status == 0 && rss < limit, "\(w.stderr)")
        }
        let (fsck, fsckRSS) = try measured("fsck.cbd", ["-fn", dev])
        #expect(fsck.status == 0 && fsck.stdout.contains("0 problems"), "\(fsck.stdout)\(fsck.stderr)")
        #expect(fsckRSS < limit, "fsck -fn: \(fsckRSS) bytes")
        // Grow and shrink the physical size (the layout kept): new zones are holes, not writes.
        for size in ["1200T", "1P"] {
            let (r, rss) = try measured("cbd", ["resize", dev, size])
            #expect(r.status == 0 && rss < limit, "resize \(size): \(r.stderr)")
        }
        #expect(FileFacts.size(dev) == 1 << 50 && FileFacts.allocated(dev) < 64 << 20)
        #expect(try Tools.run("fsck.cbd", ["-fn", dev]).status == 0)
        let (info, infoRSS) = try measured("cbd", ["info", "--check", dev])
        #expect(info.status == 0 && info.stdout.contains("consistent:         yes"), "\(info.stdout)\(info.stderr)")
        #expect(infoRSS < limit, "cbd info: \(infoRSS) bytes")
        // To raw and back: the pieces, and holes everywhere else.
        let (toRaw, toRawRSS) = try measured("cbd", ["convert", "-q", dev, raw])
        #expect(toRaw.status == 0 && toRawRSS < limit, "\(toRaw.stderr)")
        #expect(FileFacts.size(raw) == Self.logical && FileFacts.allocated(raw) <= 8 << 20)
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: raw))
        for (o, d) in zip(Self.offsets, data) {
            try handle.seek(toOffset: UInt64(o))
            #expect(try handle.read(upToCount: d.count) == Data(d), "raw at \(o)")
        }
        try handle.close()
        let (toCBD, toCBDRSS) = try measured("cbd", ["convert", "-q", raw, back])
        #expect(toCBD.status == 0 && toCBDRSS < limit, "\(toCBD.stderr)")
        #expect(try Tools.run("fsck.cbd", ["-fn", back]).status == 0)
        for (o, d) in zip(Self.offsets, data) {
            let r = try Tools.run("cbd", ["read", "-o", "\(o)", "-l", "\(d.count)", back])
            #expect(r.out == Data(d), "back.cbd at \(o)")
        }
        // The served map is the allocation: the three pieces, holes between.
        let map = try Tools.run("cbd", ["serve", "-r", dev, "--run", "nbdinfo --map --json \"$uri\""])
        try #require(map.status == 0, "\(map.stderr)")
        let extents = try #require(try JSONSerialization.jsonObject(with: map.out) as? [[String: Any]])
        let dataRuns = extents.filter { ($0["type"] as? Int) == 0 }.compactMap { e -> Range<Int>? in
            guard let o = e["offset"] as? Int, let l = e["length"] as? Int else { return nil }
            return o..<o + l
        }
        #expect(dataRuns == Self.offsets.map { $0..<$0 + (1 << 20) }, "\(dataRuns)")
        #expect(extents.compactMap { $0["length"] as? Int }.reduce(0, +) == Self.logical)
    }
}
