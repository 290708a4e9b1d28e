// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// Devices written by another writer: `cbdimg.py write-image` follows format-v1 with its own
/// choices (blocks in random pblks of any zone, compressed or raw at random, some zero
/// blocks stored compressed). Every tool must read them, and what the tools write into
/// them must read back through that independent reader.
@Suite struct ForeignWriterTests {
    static let cbdimg = FsckTests.corpus + "/cbdimg.py"

    struct Case: CustomStringConvertible, Sendable {
        var lblkShift: Int, zoneShift: Int, physical: Int, rawBytes: Int, ext4: Bool
        var description: String {
            "shift \(lblkShift) zone \(zoneShift) phys \(physical) raw \(rawBytes)\(ext4 ? " ext4" : "")"
        }
    }

    static let cases: [Case] = [
        Case(lblkShift: 0, zoneShift: 11, physical: 16 << 20, rawBytes: 6 << 20, ext4: false),  // 4 KiB, 16_16
        // 16_32, 3 zones
        Case(lblkShift: 6, zoneShift: 6, physical: 300 << 20, rawBytes: 8 << 20 + 12345, ext4: false),
        Case(lblkShift: 8, zoneShift: 5, physical: 48 << 20, rawBytes: 20 << 20, ext4: false),  // 1 MiB, 32_16
        Case(lblkShift: 4, zoneShift: 8, physical: 24 << 20, rawBytes: 16 << 20, ext4: true)  // 64 KiB, ext4 inside
    ]

    /// The raw bytes of a case: an ext4 image made by mke2fs -d, or cbdimg's mixed test data.
    func rawImage(_ c: Case, _ s: Scratch) throws -> String {
        let raw = s.file("raw.img")
        if c.ext4 {
            let r = try Tools.run(
                "mke2fs", ["-q", "-F", "-t", "ext4", "-d", "/usr/share/perl5", raw, "\(c.rawBytes >> 10)K"])
            try #require(r.status == 0, "mke2fs: \(r.stderr)")
        } else {
            try #require(
                try Tools.run("python3", [Self.cbdimg, raw, "make-raw", "\(c.rawBytes)", "\(c.lblkShift + 1)"]).status
                    == 0)
        }
        return raw
    }

    /// Parses `unallocated=N compressed=N raw=N` from write-image.
    func counts(_ line: String) -> [String: Int] {
        var out: [String: Int] = [:]
        for kv in line.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let p = kv.split(separator: "=")
            if p.count == 2, let n = Int(p[1]) { out[String(p[0])] = n }
        }
        return out
    }

    @Test(arguments: cases)
    func toolsReadAndWriteAForeignDevice(_ c: Case) throws {
        let s = try Scratch()
        let raw = try rawImage(c, s)
        let img = s.file("d.cbd")
        let w = try Tools.run(
            "python3", [Self.cbdimg, img, "write-image", raw, "\(c.physical)", "\(c.lblkShift)", "\(c.zoneShift)", "42"]
        )
        try #require(w.status == 0, "write-image: \(w.stderr)")
        let written = counts(w.stdout)
        // 4 KiB blocks have no compressed class (format-v1); otherwise both classes occur.
        #expect(
            (written["compressed", default: 0] > 0) == (c.lblkShift > 0) && written["raw", default: 0] > 0,
            "mixed classes: \(w.stdout)")

        // The checker finds it consistent, info counts what the foreign writer wrote.
        let f = try Tools.run("fsck.cbd", ["-fn", img])
        #expect(f.status == 0, "fsck: \(f.stdout)\(f.stderr)")
        let info = try #require(
            JSONSerialization.jsonObject(with: try Tools.run("cbd", ["info", "--json", img]).out) as? [String: Any])
        #expect(info["compressed_blocks"] as? Int == written["compressed"])
        #expect(info["raw_blocks"] as? Int == written["raw"])
        #expect(info["unallocated_blocks"] as? Int == written["unallocated"])
        if c.ext4 {
            #expect((info["contents"] as? String ?? "").hasPrefix("ext4"), "contents: \(info["contents"] ?? "-")")
        }

        // Convert back and read: the raw bytes, then zeros up to the logical size.
        var want = try FileFacts.bytes(raw)
        let lblk = 4096 << c.lblkShift
        want.append(Data(count: (lblk - want.count % lblk) % lblk))
        let out = s.file("back.raw")
        #expect(try Tools.run("cbd", ["convert", "-q", img, out]).status == 0)
        #expect(try FileFacts.bytes(out) == want, "convert back differs")
        #expect(try Tools.run("cbd", ["read", img]).out == want, "cbd read differs")
        if c.ext4 { #expect(try Tools.run("e2fsck", ["-fn", out]).status == 0) }

        // Writes through our read/write path over the foreign placement, then the
        // independent reader sees exactly the model.
        var rng = SplitMix(seed: UInt64(c.lblkShift * 131 + c.zoneShift))
        for i in 0..<24 {
            let len = Int(rng.next() % UInt64(3 * lblk)) + 1
            let off = Int(rng.next() % UInt64(want.count - len))
            let chunk = Data((0..<len).map { j in i % 3 == 0 ? 0 : UInt8(truncatingIfNeeded: (j / 7) &+ i) })
            want.replaceSubrange(off..<off + len, with: chunk)
            #expect(try Tools.run("cbd", ["write", img, "-o", "\(off)"], stdin: chunk).status == 0)
        }
        #expect(try Tools.run("fsck.cbd", ["-fn", img]).status == 0)
        let back = s.file("independent.raw")
        #expect(try Tools.run("python3", [Self.cbdimg, img, "read-image", back]).status == 0)
        #expect(try FileFacts.bytes(back) == want, "independent reader disagrees after cbd write")

        // A resize that moves the foreign placement out of the cut, then both readers agree.
        let r = try Tools.run("cbd", ["resize", "-M", "-z", s.file("undo"), img])
        #expect(r.status == 0, "resize -M: \(r.stderr)")
        #expect(try Tools.run("fsck.cbd", ["-fn", img]).status == 0)
        #expect(try Tools.run("python3", [Self.cbdimg, img, "read-image", back]).status == 0)
        #expect(try FileFacts.bytes(back) == want, "independent reader disagrees after resize -M")
        #expect(try Tools.run("cbd", ["read", img]).out == want, "cbd read disagrees after resize -M")
    }
}

/// Random damage to devices of the independent writer, repaired through the command line:
/// fsck.cbd -fy -c terminates, a second run is clean, cbdimg.py's own checker agrees the
/// result is consistent, and every block neither damaged nor reported reads its old bytes.
@Suite struct ForeignDamageTests {
    @Test(arguments: [(4, UInt64(1)), (4, 2), (0, 3), (6, 4), (2, 5), (4, 6), (3, 7), (5, 8), (4, 9), (1, 10)])
    func randomDamageIsRepaired(lblkShift: Int, seed: UInt64) throws {
        let s = try Scratch()
        let cbdimg = ForeignWriterTests.cbdimg
        let raw = s.file("raw.img"), img = s.file("d.cbd")
        let lblk = 4096 << lblkShift
        try #require(try Tools.run("python3", [cbdimg, raw, "make-raw", "\(96 * lblk)", "\(seed)"]).status == 0)
        try #require(
            try Tools.run(
                "python3",
                [
                    cbdimg, img, "write-image", raw, "\(96 * lblk + (1 << 20))",
                    "\(lblkShift)", "7", "\(seed)"
                ]
            ).status == 0)
        let before = try FileFacts.bytes(raw)
        // Who owns each data pblk, by the independent reader.
        var owners: [(pblk: Int, lblk: Int)] = []
        for line in try Tools.run("python3", [cbdimg, img, "used"]).stdout.split(separator: "\n") {
            let f = line.split(separator: " ").compactMap { Int($0) }
            if f.count == 2 { owners.append((f[0], f[1])) }
        }
        let info = try Tools.run("python3", [cbdimg, img, "info"]).stdout
        func field(_ k: String) -> Int {
            info.split(separator: "\n").first { $0.hasPrefix(k + "=") }.flatMap { Int($0.dropFirst(k.count + 1)) } ?? 0
        }
        let zones = field("nr_zones"), tableBlocks = field("table_blocks"), entryLen = field("entry_len")
        let zoneSpan = 1 + tableBlocks + 32768
        // Damage: random bytes in bitmaps, in used table entries and in used data pblks.
        var rng = SplitMix(seed: seed &* 7919)
        var damaged = Set<Int>()
        var log: [String] = []
        let fh = try FileHandle(forUpdating: URL(fileURLWithPath: img))
        for _ in 0..<14 {
            let z = Int(rng.next() % UInt64(zones))
            let offset: Int
            switch rng.next() % 3 {
            case 0: offset = (1 + z * zoneSpan) * 4096 + Int(rng.next() % 64)
            case 1:
                // A changed entry may still be well formed (a slot now naming a freed pblk):
                // its block counts as damaged, like a changed data byte.
                let within = Int(rng.next() % UInt64(min(96, 128) * entryLen))
                damaged.insert(z * 128 + within / entryLen)
                offset = (2 + z * zoneSpan) * 4096 + within
            default:
                guard !owners.isEmpty else { continue }
                let o = owners[Int(rng.next() % UInt64(owners.count))]
                damaged.insert(o.lblk)
                offset = o.pblk * 4096 + Int(rng.next() % 4096)
            }
            log.append("\(offset / 4096):\(offset % 4096)")
            try fh.seek(toOffset: UInt64(offset))
            try fh.write(contentsOf: Data([UInt8(truncatingIfNeeded: rng.next())]))
        }
        try fh.close()

        let first = try Tools.run("fsck.cbd", ["-fy", "-c", "--json", img])
        #expect(first.status == 0 || first.status == 1, "first run exit \(first.status): \(first.stderr)")
        let report = try #require(JSONSerialization.jsonObject(with: first.out) as? [String: Any])
        let reported = Set(
            ((report["problems"] as? [[String: Any]]) ?? []).flatMap { ($0["suspect_lblks"] as? [Int]) ?? [] })
        let second = try Tools.run("fsck.cbd", ["-fy", "-c", img])
        #expect(second.status == 0, "second run: \(second.stdout)")
        let check = try Tools.run("python3", [cbdimg, img, "check"])
        #expect(check.status == 0, "independent check: \(check.stdout)\(check.stderr)")
        let out = s.file("after.raw")
        #expect(try Tools.run("python3", [cbdimg, img, "read-image", out]).status == 0)
        let after = try FileFacts.bytes(out)
        for n in 0..<96 where !reported.contains(n) && !damaged.contains(n) {
            #expect(
                after[n * lblk..<(n + 1) * lblk] == before[n * lblk..<(n + 1) * lblk],
                "lblk \(n) changed without a report (seed \(seed)); damage \(log); fsck: \(first.stdout)")
        }
    }
}
