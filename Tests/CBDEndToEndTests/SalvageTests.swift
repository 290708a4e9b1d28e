// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// `cbd convert --salvage`: a damaged device's readable blocks come back bit-exact, the
/// damaged ones as zeros, each named (8 at most, then a count); without it, today's refusal.
@Suite struct SalvageTests {
    static let cbdimg = FsckTests.corpus + "/cbdimg.py"

    func img(_ dev: String, _ args: [String]) throws -> String {
        let r = try Tools.run("python3", [Self.cbdimg, dev] + args)
        try #require(r.status == 0, "cbdimg \(args): \(r.stderr)")
        return r.stdout
    }

    @Test func readableBlocksSurviveDamage() throws {
        let s = try Scratch()
        let raw = try ConvertTests().ext4Image(s, size: "24M")
        let dev = s.file("d.cbd")
        try #require(try Tools.run("cbd", ["convert", "-q", raw, dev]).status == 0)
        var info: [String: Int] = [:]
        for line in try img(dev, ["info"]).split(separator: "\n") {
            let kv = line.split(separator: "=")
            if kv.count == 2, let n = Int(kv[1]) { info[String(kv[0])] = n }
        }
        let entryLen = try #require(info["entry_len"]), bs = try #require(info["lblk_size"])
        let nrLblk = try #require(info["nr_lblk"])
        // Compressed blocks, from the map.
        let runs = try #require(
            JSONSerialization.jsonObject(with: try Tools.run("cbd", ["map", "--json", dev]).out) as? [[String: Any]])
        let compressed = runs.filter { $0["state"] as? String == "compressed" }
            .flatMap { r in (r["lblk"] as! Int)..<(r["lblk"] as! Int) + (r["blocks"] as! Int) }
        try #require(compressed.count > 100)
        var damaged = Set<Int>()
        // 1. A malformed entry: length 0 with slots set.
        let a = compressed[10]
        let (_, slotsA) = try entry(dev, a)
        _ = try img(dev, ["set-entry", "\(a)", "0", slotsA.map(String.init).joined(separator: ",")])
        damaged.insert(a)
        // 2. Corrupt LZ4: garbage over the first pblk of a compressed block.
        let b = compressed[20]
        let (_, slotsB) = try entry(dev, b)
        _ = try img(dev, ["poke", "\(slotsB[0] * 4096)", String(repeating: "ff", count: 4096)])
        damaged.insert(b)
        // 3. A table pblk of garbage (zone 0's second table pblk): every entry touching it.
        let tablePblk = 3, start = tablePblk * 4096 - 2 * 4096
        var rng = SplitMix(seed: 3)
        let garbage = (0..<4096).map { _ in String(format: "%02x", UInt8(truncatingIfNeeded: rng.next())) }.joined()
        _ = try img(dev, ["poke", "\(tablePblk * 4096)", garbage])
        for n in 0..<nrLblk where n * entryLen < start + 4096 && (n + 1) * entryLen > start { damaged.insert(n) }

        let refused = try Tools.run("cbd", ["convert", "-q", dev, s.file("plain.raw")])
        #expect(
            refused.status == 1 && !FileManager.default.fileExists(atPath: s.file("plain.raw")), "\(refused.stderr)")

        let out = s.file("salvaged.raw")
        let r = try Tools.run("cbd", ["convert", "-q", "--salvage", dev, out])
        #expect(r.status == 0, "\(r.stderr)")
        let named = r.stderr.split(separator: "\n").filter { $0.contains("written as zeros:") }
        #expect(named.count == 8, "\(r.stderr)")
        let summary = try #require(r.stderr.split(separator: "\n").last)
        let lost = Int(summary.split(separator: " ")[2]) ?? -1
        #expect(summary.hasPrefix("cbd: salvage: ") && lost >= 3 && lost <= damaged.count, "\(summary)")
        #expect(r.stderr.contains("... and \(lost - 8) more"), "\(r.stderr)")
        let want = try FileFacts.bytes(raw), got = try FileFacts.bytes(out)
        for n in 0..<want.count / bs {
            let w = want[n * bs..<(n + 1) * bs], g = got[n * bs..<(n + 1) * bs]
            if damaged.contains(n) {
                #expect(g == w || g.allSatisfy { $0 == 0 }, "damaged block \(n) is neither its data nor zeros")
            } else {
                #expect(g == w, "undamaged block \(n) differs")
            }
        }
        #expect(!got.elementsEqual(want), "nothing was lost")
    }

    func entry(_ dev: String, _ n: Int) throws -> (Int, [Int]) {
        let parts = try img(dev, ["entry", "\(n)"]).split(separator: " ")
        let slots = parts[1].trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").compactMap {
            Int($0)
        }.filter { $0 != 0 }
        return (Int(parts[0]) ?? 0, slots)
    }
}
