// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// Writers never trust a bitmap blindly, nor guess an entry: a zone whose bitmap does not mark
/// what its entries use, or a block whose entry does not decode, is refused before anything is
/// written (one line naming fsck.cbd); after fsck.cbd -fy the same write succeeds.
@Suite struct WriterTrustTests {
    static let cbdimg = FsckTests.corpus + "/cbdimg.py"

    func expectRefused(_ dev: String, at offset: Int, _ words: String) throws {
        let before = try FileFacts.bytes(dev)
        var rng = SplitMix(seed: 9)
        let data = Data((0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        let w = try Tools.run("cbd", ["write", dev, "-o", "\(offset)"], stdin: data)
        #expect(w.status == 1, "\(w.stdout)")
        let lines = w.stderr.split(separator: "\n")
        #expect(lines.count == 1 && w.stderr.contains(words) && w.stderr.contains("fsck.cbd"), "\(w.stderr)")
        #expect(try FileFacts.bytes(dev) == before, "a refused write changed the device")
        // Repaired, the same write goes through and the device stays consistent.
        let lf = dev + ".lf"
        #expect(try Tools.run("fsck.cbd", ["-fy", "--lost-found", lf, dev]).status == 1)
        #expect(try Tools.run("cbd", ["write", dev, "-o", "\(offset)"], stdin: data).status == 0)
        let check = try Tools.run("fsck.cbd", ["-fn", dev])
        #expect(check.status == 0, "\(check.stdout)")
        let r = try Tools.run("cbd", ["read", dev, "-o", "\(offset)", "-l", "\(1 << 20)"])
        #expect(r.out == data)
    }

    /// The case: zone 0's bitmap pblk zeroed on a clean device, then a write.
    @Test func zeroedBitmapIsRefused() throws {
        let s = try Scratch()
        let (_, dev) = try convertedExt4(s)
        try overwrite(dev, at: 4096, with: Data(count: 4096))
        try expectRefused(dev, at: 20 << 20, "bitmap does not mark")
    }

    /// One bit cleared under a block's pblk: refused as well.
    @Test func oneClearedBitIsRefused() throws {
        let s = try Scratch()
        let (_, dev) = try convertedExt4(s)
        let used = try Tools.run("python3", [Self.cbdimg, dev, "used"]).stdout.split(separator: "\n")
        let p = try #require(used.first.flatMap { Int($0.split(separator: " ")[0]) })
        let start = try #require(
            Int(
                try Tools.run("python3", [Self.cbdimg, dev, "info"]).stdout
                    .split(separator: "\n").first { $0.hasPrefix("zone0_data=") }?.split(separator: "=")[1].split(
                        separator: "-")[0] ?? ""))
        #expect(try Tools.run("python3", [Self.cbdimg, dev, "set-bit", "0", "\(p - start)", "0"]).status == 0)
        try expectRefused(dev, at: 20 << 20, "bitmap does not mark")
    }

    /// A malformed entry in the range written: refused, not taken as unallocated.
    @Test func malformedEntryIsRefused() throws {
        let s = try Scratch()
        let (_, dev) = try convertedExt4(s)
        #expect(try Tools.run("python3", [Self.cbdimg, dev, "set-entry", "320", "65000", "1,2"]).status == 0)
        try expectRefused(dev, at: 320 << 16, "logical block 320")
    }
}
