// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
import CBDCLI
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// cbddump and cbd info: every view in text and JSON, on several geometries.
@Suite struct InspectTests {
    /// The top-level `key: value` lines of a text view.
    func textFields(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix(" ") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            out[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }

    func json(_ r: Tools.Result) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: r.out) as? [String: Any])
    }

    /// Every scalar JSON field appears in the text view with the same value.
    func expectSame(text: Tools.Result, json: [String: Any], sourceLocation: SourceLocation = #_sourceLocation) {
        let t = textFields(text.stdout)
        for (k, v) in json {
            let want: String
            let shown = t[k] ?? ""
            switch v {
            case let n as NSNumber where shown == "yes" || shown == "no": want = n.boolValue ? "yes" : "no"
            case let n as NSNumber where shown.hasSuffix("bytes)"):
                want = "\(ByteSize.format(n.intValue)) (\(n.intValue) bytes)"  // a size: human, then exact
            case let n as NSNumber where shown.hasSuffix("bytes") || shown.hasSuffix("byte"):
                want = "\(n.intValue) \(n.intValue == 1 ? "byte" : "bytes")"
            case let r as [String: Int] where r.keys.sorted() == ["first", "last"]:
                want = r["first"] == r["last"] ? "\(r["first"]!)" : "\(r["first"]!)-\(r["last"]!)"
            case let n as NSNumber where shown.contains("."): want = String(format2: n.doubleValue)
            case let n as NSNumber: want = n.stringValue
            case let s as String: want = s
            case let a as [Any] where a.allSatisfy({ $0 is NSNumber || $0 is String }):
                if a.isEmpty { continue }
                want = a.map { "\($0)" }.joined(separator: ",")
            default: continue
            }
            #expect(t[k] == want, "field \(k): text \(t[k] ?? "-") json \(want)", sourceLocation: sourceLocation)
        }
    }

    /// An image with blocks written at scattered offsets across zones.
    func populated(_ s: Scratch, size: String, block: String) throws -> String {
        let img = s.file("d.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", "-b", block, img, size]).status == 0)
        let logical = try headerAndGeometry(FileDevice(path: img, mode: .readOnly)).1.logicalBytes
        for (i, frac) in [0.0, 0.1, 0.37, 0.5, 0.77, 0.99].enumerated() {
            let off = Int(Double(logical - 300_000) * frac)
            let data = Data(
                (0..<300_000).map { j in
                    i % 2 == 0 ? UInt8(truncatingIfNeeded: j / 9) : UInt8(truncatingIfNeeded: j &* 2654435761 >> 13)
                })
            #expect(try Tools.run("cbd", ["write", img, "-o", "\(off)"], stdin: data).status == 0)
        }
        return img
    }

    @Test(arguments: [("1G", "64K"), ("300M", "4K"), ("600M", "1M"), ("64M", "128K")])
    func headerAndZoneViews(size: String, block: String) throws {
        let s = try Scratch()
        let img = try populated(s, size: size, block: block)
        let (h, g) = try headerAndGeometry(FileDevice(path: img, mode: .readOnly))
        let text = try Tools.run("cbddump", [img])
        let js = try json(try Tools.run("cbddump", ["--json", img]))
        #expect(text.status == 0)
        expectSame(text: text, json: js)
        #expect(js["nr_physical_sectors"] as? Int == Int(h.nrPhysicalSectors))
        #expect(js["lblk_per_zone_shift"] as? Int == Int(h.lblkPerZoneShift))
        #expect(js["entry_variant"] as? String == g.variantName)
        #expect(js["nr_zones"] as? Int == g.nrZones && js["table_blocks"] as? Int == g.tableBlocks)
        // The independent reader agrees on the geometry.
        do {
            try Tools.require("python3")
            let info = try Tools.run("python3", [FsckTests.corpus + "/cbdimg.py", img, "info"]).stdout
            for key in ["nr_pblk", "nr_lblk", "entry_len", "table_blocks", "nr_zones"] {
                #expect(info.contains("\(key)=\(js[key] as? Int ?? -1)\n"), "\(key)")
            }
        }
        for z in Set([0, min(3, g.nrZones - 1), g.nrZones - 1]) {
            let zt = try Tools.run("cbddump", ["--zone", "\(z)", img])
            let zj = try json(try Tools.run("cbddump", ["--zone", "\(z)", "--json", img]))
            expectSame(text: zt, json: zj)
            let bitmap = Bitmap(bytes: try FileDevice(path: img, mode: .readOnly).readPblks(g.bitmapPblk(z)))
            #expect(zj["used_pblks"] as? Int == bitmap.countSet(below: g.dataPblkCount(z)))
            let entries = zj["entries_in_use"] as? [[String: Any]] ?? []
            let vol = try Volume(device: try FileDevice(path: img, mode: .readOnly))
            for e in entries {
                let n = e["lblk"] as? Int ?? -1
                #expect(e["pblks"] as? [Int] == (try vol.entry(n)).pblks.map { Int($0) })
                #expect(e["class"] as? String == (try vol.entry(n)).className)
            }
            let inUse = try g.lblks(inZone: z).filter { try vol.entry($0) != .unallocated }
            #expect(entries.map { $0["lblk"] as? Int ?? -1 } == inUse)
        }
    }

    @Test func deviceWithMoreThanFourZones() throws {
        let s = try Scratch()
        let img = try populated(s, size: "1G", block: "64K")
        let g = try headerAndGeometry(FileDevice(path: img, mode: .readOnly)).1
        #expect(g.nrZones > 4)
        let z3 = try json(try Tools.run("cbddump", ["--zone", "3", "--json", img]))
        #expect(z3["zone"] as? Int == 3 && z3["bitmap_pblk"] as? Int == g.bitmapPblk(3))
        #expect(z3["data_pblks"] as? [String: Int] == ["first": g.dataStart(3), "last": g.dataEnd(3) - 1])
        #expect((z3["entries_in_use"] as? [Any])?.isEmpty == false)
    }

    @Test func lblkAndPblkViews() throws {
        let s = try Scratch()
        let img = try populated(s, size: "256M", block: "64K")
        let vol = try Volume(device: try FileDevice(path: img, mode: .readOnly))
        let g = vol.geometry
        let n = try (0..<g.nrLblk).first { try vol.entry($0) != .unallocated } ?? 0
        let e = try vol.entry(n)
        let lt = try Tools.run("cbddump", ["--lblk", "\(n)", img])
        let lj = try json(try Tools.run("cbddump", ["--lblk", "\(n)", "--json", img]))
        expectSame(text: lt, json: lj)
        #expect(lj["class"] as? String == e.className)
        #expect(lj["pblks"] as? [Int] == e.pblks.map { Int($0) })
        #expect(lj["zone"] as? Int == g.zone(ofLblk: n))
        let p = Int(e.pblks[0])
        let pj = try json(try Tools.run("cbddump", ["--pblk", "\(p)", "--json", img]))
        #expect(pj["kind"] as? String == "data" && pj["owners"] as? [Int] == [n] && pj["marked"] as? Bool == true)
        #expect(try json(try Tools.run("cbddump", ["--pblk", "0", "--json", img]))["kind"] as? String == "header")
        #expect(try json(try Tools.run("cbddump", ["--pblk", "1", "--json", img]))["kind"] as? String == "bitmap")
        let table = try json(try Tools.run("cbddump", ["--pblk", "\(g.tablePblks(0).lowerBound)", "--json", img]))
        #expect(table["kind"] as? String == "table" && table["table_block"] as? Int == 0)
        let hex = try Tools.run("cbddump", ["--pblk", "0", "--hex", img])
        #expect(hex.stdout.contains("00000000  43 42 44 2a"))
        for args in [["--zone", "99"], ["--lblk", "\(g.nrLblk)"], ["--pblk", "\(g.nrPblk)"]] {
            let r = try Tools.run("cbddump", args + [img])
            #expect(
                r.status == 1 && r.stderr.contains("out of range") && r.stderr.split(separator: "\n").count == 1,
                "\(args) \(r.stderr)")
        }
        #expect(try Tools.run("cbddump", ["--hex", img]).status == 64)
        #expect(try Tools.run("cbddump", ["--lblk", "-1", img]).status == 64)
    }

    @Test func damagedHeaderStillDumps() throws {
        let s = try Scratch()
        let img = s.file("d.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", img, "8M"]).status == 0)
        try { () throws in
            let dev = try FileDevice(path: img, mode: .readWrite)
            try [UInt8(7)].withUnsafeBytes { try dev.write($0, at: 30) }  // algorithm 7: unknown
        }()
        let r = try Tools.run("cbddump", [img])
        #expect(r.status == 1)
        #expect(r.stdout.contains("algorithm:") && r.stdout.contains("7") && r.stderr.contains("algorithm"))
    }

    @Test func infoNamesTheFilesystemInside() throws {
        try Tools.require("mke2fs", "blkid")
        let s = try Scratch()
        let raw = s.file("fs.img"), img = s.file("fs.cbd")
        #expect(
            try Tools.run("mke2fs", ["-q", "-F", "-t", "ext4", "-L", "cbdlabel", "-d", "/usr/share/perl5", raw, "16M"])
                .status == 0)
        #expect(try Tools.run("cbd", ["convert", "-q", raw, img]).status == 0)
        let uuid = try Tools.run("blkid", ["-p", "-s", "UUID", "-o", "value", raw]).stdout.trimmingCharacters(
            in: .whitespacesAndNewlines)
        let text = try Tools.run("cbd", ["info", img])
        let js = try json(try Tools.run("cbd", ["info", "--json", img]))
        #expect(text.status == 0)
        expectSame(text: text, json: js)
        let contents = js["contents"] as? String ?? ""
        #expect(
            contents.hasPrefix("ext4") && contents.contains("UUID=\(uuid)") && contents.contains("LABEL=cbdlabel"),
            "\(contents)")
        // Counted without the checker: no verdict unless asked (`--check`, as fsck.cbd -n).
        #expect(js["state"] as? String == "clean" && js["consistent"] == nil && js["repair"] == nil)
        let checked = try json(try Tools.run("cbd", ["info", "--check", "--json", img]))
        #expect(checked["consistent"] as? Bool == true && checked["repair"] == nil)
        #expect(checked["used"] as? Int == js["used"] as? Int)
        let vol = try Volume(device: try FileDevice(path: img, mode: .readOnly))
        var compressed = 0, raws = 0
        for n in 0..<vol.geometry.nrLblk {
            switch try vol.entry(n) {
            case .compressed: compressed += 1;
            case .raw: raws += 1;
            default: break
            }
        }
        #expect(js["compressed_blocks"] as? Int == compressed && js["raw_blocks"] as? Int == raws)
        #expect(js["logical_size"] as? Int == 16 << 20)
        // An empty device holds nothing blkid knows.
        let empty = s.file("e.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", empty, "4M"]).status == 0)
        #expect(try json(try Tools.run("cbd", ["info", "--json", empty]))["contents"] as? String == "unknown")
    }

    /// Block 0 that does not decompress: cbd info still prints every figure, says the device is
    /// not consistent and names what it could not read (it printed one error line before).
    @Test func infoOnADeviceWhoseFirstBlockIsCorrupt() throws {
        let s = try Scratch()
        let (_, dev) = try convertedExt4(s)
        let first = try #require(
            Int(
                try Tools.run("python3", [FsckTests.corpus + "/cbdimg.py", dev, "entry", "0"])
                    .stdout.split(separator: " ")[1].split(separator: ",")[0]))
        try overwrite(dev, at: first * 4096, with: Data(repeating: 0xFF, count: 64))
        for args in [["--json"], ["--check", "--json"]] {
            let r = try Tools.run("cbd", ["info"] + args + [dev])
            #expect(r.status == 0, "\(r.stderr)")
            let j = try json(r)
            #expect(j["blocks"] as? Int == 384 && j["compressed_blocks"] != nil && j["used"] != nil)
            #expect(j["consistent"] as? Bool == (args.contains("--check") ? false : nil))
            #expect(j["repair"] as? String == "fsck.cbd -f \(dev)", "not consistent says what to run")
            #expect((j["unreadable"] as? String)?.contains("logical block 0") == true, "\(j)")
        }
    }

    /// cbd info counts what the bitmaps and tables hold and runs no check: a leaked pblk (a
    /// bit set that no entry names) is seen only with `--check`, as `fsck.cbd -n` sees it. An
    /// entry that does not decode and a DIRTY mark are known without a check: both say to
    /// run fsck.cbd.
    @Test func infoCountsWithoutTheCheckerAndChecksWhenAsked() throws {
        let s = try Scratch()
        let (_, dev) = try convertedExt4(s)
        let before = try json(try Tools.run("cbd", ["info", "--json", dev]))
        let used = try #require(before["used"] as? Int) / 4096
        // Mark the first free data pblk of zone 0 in its bitmap (pblk 1): a leak.
        let g = try OpenedDevice(try FileDevice(path: dev, mode: .readOnly)).geometry
        var bitmap = Bitmap(bytes: try FileDevice(path: dev, mode: .readOnly).readPblks(g.bitmapPblk(0)))
        let free = try #require(bitmap.firstClear(below: g.dataPblkCount(0)))
        bitmap.set(free)
        try overwrite(dev, at: g.bitmapPblk(0) * 4096, with: Data(bitmap.bytes))
        let plain = try json(try Tools.run("cbd", ["info", "--json", dev]))
        #expect(plain["used"] as? Int == (used + 1) * 4096, "the bitmaps are what info counts")
        #expect(plain["consistent"] == nil && plain["repair"] == nil, "\(plain)")
        let checked = try json(try Tools.run("cbd", ["info", "--check", "--json", dev]))
        #expect(checked["consistent"] as? Bool == false && checked["repair"] as? String == "fsck.cbd -f \(dev)")
        // A damaged entry (a length no entry may hold) is counted as such and asks for fsck.
        let entry0 = g.entryOffset(zone: 0, index: 0)
        try overwrite(dev, at: entry0, with: Data(repeating: 0xFE, count: g.lenBytes))
        let damaged = try json(try Tools.run("cbd", ["info", "--json", dev]))
        #expect(damaged["damaged_entries"] as? Int == 1 && damaged["repair"] as? String == "fsck.cbd -f \(dev)")
        #expect(damaged["consistent"] == nil)
    }
}
