// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout

/// The small things a new user meets on the command line.
@Suite struct CommandLineTests {
    @Test func cbdWithoutOrWithAWrongCommandIsAUsageError() throws {
        let none = try Tools.run("cbd", [])
        #expect(none.status == 64 && none.stderr.contains("Usage: cbd"), "\(none.stderr)")
        let typo = try Tools.run("cbd", ["conver", "a", "b"])
        #expect(typo.status == 64 && typo.stderr.contains("did you mean 'convert'"), "\(typo.stderr)")
        let far = try Tools.run("cbd", ["xyzzy"])
        #expect(far.status == 64 && !far.stderr.contains("did you mean"), "\(far.stderr)")
    }

    /// mkfs -n shows the geometry and what it would wipe, even where a real run needs -f.
    @Test func dryRunShowsWhatItWouldWipe() throws {
        try Tools.require("mkfs.ext4")
        let s = try Scratch()
        let img = s.file("fs.img")
        try #require(try Tools.run("truncate", ["-s", "32M", img]).status == 0)
        try #require(try Tools.run("mkfs.ext4", ["-q", "-F", img]).status == 0)
        let before = try FileFacts.bytes(img)
        let r = try Tools.run("mkfs.cbd", ["-n", img])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Would wipe an ext4 filesystem") && r.stdout.contains("needs -f"), "\(r.stdout)")
        #expect(r.stdout.contains("provisioning ratio") && r.stdout.contains("Dry run: nothing written."))
        #expect(try FileFacts.bytes(img) == before)
    }

    /// 4 KiB blocks never compress: both tools that choose a block size say so.
    @Test func fourKiBBlocksAreExplained() throws {
        let s = try Scratch()
        let m = try Tools.run("mkfs.cbd", ["-b", "4K", s.file("a.cbd"), "8M"])
        #expect(m.status == 0 && m.stdout.contains("nothing is compressed"), "\(m.stdout)")
        try #require(FileManager.default.createFile(atPath: s.file("raw"), contents: Data(repeating: 1, count: 100_000)))
        let c = try Tools.run("cbd", ["convert", "-b", "4K", s.file("raw"), s.file("b.cbd")])
        #expect(c.status == 0 && c.stderr.contains("nothing is compressed"), "\(c.stderr)")
    }

    /// Converting a device that was not closed cleanly warns and names fsck.cbd.
    @Test func convertingADirtyDeviceWarns() throws {
        let s = try Scratch()
        try #require(FileManager.default.createFile(atPath: s.file("raw"), contents: Data(repeating: 3, count: 300_000)))
        try #require(try Tools.run("cbd", ["convert", "-q", s.file("raw"), s.file("d.cbd")]).status == 0)
        try Tools.run("python3", [FsckTests.corpus + "/cbdimg.py", s.file("d.cbd"), "set-dirty", "1"])
        let r = try Tools.run("cbd", ["convert", s.file("d.cbd"), s.file("back")])
        #expect(r.status == 0 && r.stderr.contains("DIRTY") && r.stderr.contains("fsck.cbd"), "\(r.stderr)")
    }

    /// One size grammar and singular counts.
    @Test func sizesAndCounts() throws {
        let s = try Scratch()
        let r = try Tools.run("mkfs.cbd", ["-n", "-L", "64KiB", s.file("x.cbd"), "10MB"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("(1 block)") && r.stdout.contains("2441 pblks"), "\(r.stdout)")
    }
}
