// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// raw->cbd into an image file writes the packed data straight where a layout guessed before
/// pass 1 puts it. Whatever the guess, the image is one the data's size calls for: a right
/// guess writes the data once, a wrong one copies it once, and both give the same bytes.
@Suite struct PlacedConvertTests {
    func convert(_ raw: String, _ out: String, guess: Int?) throws -> ConvertSummary {
        var c = RawToCBD()
        c.packedPblksGuess = guess
        return try c.convert(input: FileDevice(path: raw, mode: .readOnly), to: OutputFile(path: out, overwrite: false))
    }

    @Test func rightAndWrongGuessesGiveTheSameImage() throws {
        let s = try Scratch()
        let img = try ConvertTests().ext4Image(s)
        let estimated = try convert(img, s.file("estimated.cbd"), guess: nil)
        let exact = try convert(img, s.file("exact.cbd"), guess: estimated.dataPblks)
        // 10 million pblks: hundreds of zones, 32-bit pblk numbers, tables of another size.
        let wrong = try convert(img, s.file("wrong.cbd"), guess: 10_000_000)
        #expect(!estimated.dataCopied && !exact.dataCopied && wrong.dataCopied)
        #expect(try FileFacts.bytes(s.file("exact.cbd")) == FileFacts.bytes(s.file("wrong.cbd")))
        #expect(try FileFacts.bytes(s.file("estimated.cbd")) == FileFacts.bytes(s.file("exact.cbd")))
        try ConvertTests().expectSameContent(s.file("wrong.cbd"), img)
        let fsck = try Tools.run("fsck.cbd", ["-fn", "-c", s.file("wrong.cbd")])
        #expect(fsck.status == 0, "\(fsck.stdout)")
        // The abandoned guess lost its name when given up: nothing else is left.
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: s.path).sorted()
                == ["estimated.cbd", "exact.cbd", "fs.img", "wrong.cbd"])
    }

    /// The estimate, from 64 sampled blocks, lands near the packed size of a real image.
    @Test func estimateIsNearThePackedSize() throws {
        let s = try Scratch()
        let img = try ConvertTests().ext4Image(s)
        let input = try FileDevice(path: img, mode: .readOnly)
        let estimate = try RawToCBD().estimatePackedPblks(input)
        let real = try convert(img, s.file("a.cbd"), guess: nil).dataPblks
        #expect(abs(estimate - real) * 4 <= real, "estimate \(estimate), real \(real)")
        // Nothing to sample in a file of holes.
        #expect(try Tools.run("truncate", ["-s", "1G", s.file("holes.img")]).status == 0)
        #expect(try RawToCBD().estimatePackedPblks(FileDevice(path: s.file("holes.img"), mode: .readOnly)) == 0)
    }

    /// Where the smallest layout changes between the guess and the real size (here at 100 GiB
    /// of 64 KiB blocks: three zones of 2^20 entries, or four of 2^19), the guessed one is
    /// kept if it costs at most 1/64 more space; one far off is not.
    @Test func aNearbyGuessedLayoutIsKept() throws {
        let c = RawToCBD()
        let nrLblk = 1_638_400, d = 81_917
        let best = try c.chooseGeometry(dataPblks: d, nrLblk: nrLblk, for: "out.cbd")
        let guess = try c.chooseGeometry(dataPblks: 79_891, nrLblk: nrLblk, for: "out.cbd")
        #expect(guess.tableBlocks != best.tableBlocks)
        let kept = try c.chooseGeometry(dataPblks: d, nrLblk: nrLblk, near: guess, for: "out.cbd")
        #expect(kept.tableBlocks == guess.tableBlocks && kept.lblkPerZoneShift == guess.lblkPerZoneShift)
        #expect(kept.totalDataPblks >= d + d / 64 && kept.nrLblk == nrLblk)
        #expect(kept.nrPblk <= best.nrPblk + best.nrPblk / 64)
        let far = try c.chooseGeometry(dataPblks: 10_000_000, nrLblk: nrLblk, for: "out.cbd")
        #expect(try c.chooseGeometry(dataPblks: d, nrLblk: nrLblk, near: far, for: "out.cbd") == best)
    }
}
