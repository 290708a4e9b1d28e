// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// `cbd map` (runs of lblks and their pblks) and `cbd compare` (qemu-img compare's exit codes).
@Suite struct MapCompareTests {
    func json(_ r: Tools.Result) throws -> Any { try JSONSerialization.jsonObject(with: r.out) }

    /// A device with data at three places: compressible, random (raw) and a zero block between.
    func device(_ s: Scratch) throws -> String {
        let dev = s.file("d.cbd")
        try #require(try Tools.run("mkfs.cbd", ["-q", "-L", "1G", dev, "64M"]).status == 0)
        var rng = SplitMix(seed: 5)
        let text = Data((0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 / 7 % 26 + 97) })
        let random = Data((0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        for (off, data) in [(0, text), (100 << 20, random), ((1 << 30) - (1 << 20), text.prefix(1 << 20))] {
            try #require(try Tools.run("cbd", ["write", "-o", "\(off)", dev], stdin: data).status == 0)
        }
        return dev
    }

    @Test func mapCoversEveryBlockAndAgreesWithInfo() throws {
        let s = try Scratch()
        let dev = try device(s)
        let runs = try #require(try json(try Tools.run("cbd", ["map", "--json", dev])) as? [[String: Any]])
        let info = try #require(try json(try Tools.run("cbd", ["info", "--json", dev])) as? [String: Any])
        // The runs tile the logical device in order.
        var next = 0
        for r in runs {
            #expect(r["start"] as? Int == next, "\(r)")
            next += try #require(r["length"] as? Int)
        }
        #expect(next == info["logical_size"] as? Int)
        func blocks(_ state: String) -> Int {
            runs.filter { $0["state"] as? String == state }.reduce(0) { $0 + ($1["blocks"] as? Int ?? 0) }
        }
        #expect(blocks("compressed") == info["compressed_blocks"] as? Int)
        #expect(blocks("raw") == info["raw_blocks"] as? Int)
        #expect(blocks("unallocated") == info["unallocated_blocks"] as? Int)
        #expect(runs.reduce(0) { $0 + ($1["pblks"] as? Int ?? 0) } * 4096 == info["used"] as? Int)
        // Neighbouring runs are merged: a state change or a break in the pblks separates them.
        #expect(
            zip(runs, runs.dropFirst()).allSatisfy { a, b in
                a["state"] as? String != b["state"] as? String || a["state"] as? String != "unallocated"
            })
        let text = try Tools.run("cbd", ["map", dev])
        #expect(text.status == 0 && text.stdout.split(separator: "\n").count == runs.count + 1)
    }

    @Test func compareExitCodes() throws {
        let s = try Scratch()
        let dev = try device(s)
        let raw = s.file("d.raw")
        #expect(try Tools.run("cbd", ["convert", "-q", dev, raw]).status == 0)
        #expect(try Tools.run("cbd", ["compare", dev, raw]).status == 0)
        #expect(try Tools.run("cbd", ["compare", raw, dev]).status == 0)
        // A zero block written on the raw side: equal, but not in strict mode (it is allocated).
        let h = try #require(FileHandle(forWritingAtPath: raw))
        try h.seek(toOffset: 500 << 20)
        h.write(Data(count: 65536))
        try h.close()
        #expect(try Tools.run("cbd", ["compare", dev, raw]).status == 0)
        let strict = try Tools.run("cbd", ["compare", "-s", dev, raw])
        #expect(strict.status == 1 && strict.stdout.contains("offset \(500 << 20)"), "\(strict.stdout)")
        // One byte changed.
        let h2 = try #require(FileHandle(forWritingAtPath: raw))
        try h2.seek(toOffset: (100 << 20) + 12345)
        h2.write(Data([0x55]))
        try h2.close()
        let differ = try Tools.run("cbd", ["compare", dev, raw])
        #expect(
            differ.status == 1 && differ.stdout == "Content mismatch at offset \((100 << 20) + 12345)!\n",
            "\(differ.stdout)")
        // A larger raw image: equal while the extra part is zeros; strict sizes differ.
        #expect(try Tools.run("truncate", ["-s", "2G", raw]).status == 0)
        #expect(try Tools.run("cbd", ["compare", "-q", raw, raw]).status == 0)
        #expect(try Tools.run("cbd", ["compare", "-s", dev, raw]).status == 1)
        // An error: 2.
        let missing = try Tools.run("cbd", ["compare", dev, s.file("nope")])
        #expect(missing.status == 2 && missing.stderr.contains("no such file"), "\(missing.stderr)")
    }
}
