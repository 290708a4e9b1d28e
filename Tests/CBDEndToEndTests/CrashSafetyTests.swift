// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// What a crash, a concurrent program or a too-long input must not do to a device: the
/// syscall-level crash test (Tests/crash/crashpoints.py, strace fault injection) and one test
/// per way a writer could lose data.
@Suite(.serialized) struct CrashSafetyTests {
    static let crashScript: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("crash/crashpoints.py").path
    }()

    /// A small CBD image made by cbd convert from compressible and random blocks.
    func image(_ s: Scratch, blocks: Int = 64) throws -> String {
        var rng = SplitMix(seed: 3)
        var bytes = [UInt8]()
        for n in 0..<blocks {
            bytes += (0..<65536).map { i in
                n % 3 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : UInt8(truncatingIfNeeded: i / 50 + n)
            }
        }
        let raw = s.file("raw.img"), cbd = s.file("dev.cbd")
        try #require(FileManager.default.createFile(atPath: raw, contents: Data(bytes)))
        try #require(try Tools.run("cbd", ["convert", "-q", "-s", "16M", raw, cbd]).status == 0)
        return cbd
    }

    /// Every pwrite64, fsync and ftruncate of cbd write, discard, fsck -y, resize and convert
    /// (both ways), killed there: fsck -fy makes the device consistent (the independent checker
    /// agrees) and every logical block reads old or new; a conversion leaves no output or all of it.
    @Test func killedAtEverySyscall() throws {
        try Tools.require("strace", "python3")
        let r = try Tools.run("python3", [Self.crashScript, Tools.binDir])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("8 passed, 0 failed"), "\(r.stdout)")
        // Each scenario really was interrupted somewhere.
        for line in r.stdout.split(separator: "\n") where line.contains("kill points") {
            let points = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
            #expect(points >= 5, "\(line)")
        }
    }

    /// Power cuts: every write and sync of cbd write, fsck -y, resize (shrink, grow, -M, a
    /// re-layout with -z), cbd undo, convert (onto an existing output, and back) and cbd serve
    /// (flush, FUA, trim) recorded by an LD_PRELOAD shim (Tests/crash/pwlog.c), crash states
    /// built from any subset of the writes after each file's last sync, torn at 4 KiB; each
    /// recovered as the tools say (cbd undo when fsck asks for it, an interrupted undo run
    /// again), then consistent with every block old or new, flushed blocks new. The control,
    /// a write whose record lost one sync, must be caught.
    @Test func powerCutAnywhere() throws {
        try Tools.require("python3", "nbdkit")
        let s = try Scratch()
        let shim = s.file("pwlog.so")
        let source = URL(fileURLWithPath: Self.crashScript).deletingLastPathComponent().appendingPathComponent(
            "pwlog.c"
        ).path
        let cc = try Tools.run("clang", ["-shared", "-fPIC", "-O2", "-o", shim, source, "-ldl"])
        try #require(cc.status == 0, "the recorder does not build: \(cc.stderr)")
        let script = URL(fileURLWithPath: Self.crashScript).deletingLastPathComponent().appendingPathComponent(
            "powercut.py"
        ).path
        let r = try Tools.run("python3", [script, Tools.binDir, shim])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("12 passed, 0 failed"), "\(r.stdout)")
        #expect(r.stdout.contains("control: without sync event"), "\(r.stdout)")
        for line in r.stdout.split(separator: "\n") where line.contains(" events, ") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            #expect((Int(words[1]) ?? 0) >= 5 && (Int(words[5]) ?? 0) >= 10, "\(line)")
        }
    }

    /// A DIRTY device (a killed writer or fsck) is not written without -f: its bitmaps may lie,
    /// and a write could reuse a pblk a block still needs. fsck -fn reports it (exit 4).
    @Test func writersRefuseADirtyDevice() throws {
        let s = try Scratch()
        let cbd = try image(s)
        try Tools.run("python3", [FsckTests.corpus + "/cbdimg.py", cbd, "set-dirty", "1"])
        let before = try FileFacts.bytes(cbd)
        let input = s.file("in.bin")
        try #require(FileManager.default.createFile(atPath: input, contents: Data(repeating: 7, count: 5000)))
        for args in [["write", "-o", "0", cbd], ["discard", "-o", "0", "-l", "64K", cbd]] {
            let r = try Tools.run("sh", ["-c", "\"$0\" \"$@\" < \(input)", Tools.binDir + "/cbd"] + args)
            #expect(r.status == 1 && r.stderr.contains("DIRTY") && r.stderr.contains("-f"), "\(args): \(r.stderr)")
            #expect(try FileFacts.bytes(cbd) == before, "\(args) changed a DIRTY device")
        }
        let check = try Tools.run("fsck.cbd", ["-fn", cbd])
        #expect(check.status == 4 && check.stdout.contains("not closed cleanly"), "\(check.stdout)")
        // With -f the write goes through; the device is then clean and consistent.
        let forced = try Tools.run("sh", ["-c", "\"$0\" write -f -o 0 \"$1\" < \(input)", Tools.binDir + "/cbd", cbd])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try Tools.run("fsck.cbd", ["-fn", cbd]).status == 0)
    }

    /// cbd write measures its whole input first: one that runs past the end changes nothing,
    /// from a file or a pipe.
    @Test func writePastTheEndChangesNothing() throws {
        let s = try Scratch()
        let cbd = try image(s)
        let (_, g) = try headerAndGeometry(FileDevice(path: cbd, mode: .readOnly))
        let before = try FileFacts.bytes(cbd)
        let input = s.file("big.bin")
        let room = 3 * 65536
        try #require(FileManager.default.createFile(atPath: input, contents: Data(repeating: 9, count: room + 1)))
        let offset = String(g.logicalBytes - room)
        for how in ["\"$0\" write -o \(offset) \"$1\" < \(input)", "cat \(input) | \"$0\" write -o \(offset) \"$1\""] {
            let r = try Tools.run("sh", ["-c", how, Tools.binDir + "/cbd", cbd])
            #expect(
                r.status == 1 && r.stderr.contains("runs past") && r.stderr.contains("nothing written"),
                "\(how): \(r.stderr)")
            #expect(try FileFacts.bytes(cbd) == before, "\(how) changed the device")
        }
        // Exactly the room left fits.
        try FileHandle(forWritingTo: URL(fileURLWithPath: input)).truncate(atOffset: UInt64(room))
        let fits = try Tools.run(
            "sh", ["-c", "cat \(input) | \"$0\" write -o \(offset) \"$1\"", Tools.binDir + "/cbd", cbd])
        #expect(fits.status == 0, "\(fits.stderr)")
    }

    /// A write that runs out of space: the one request that does not fit is refused whole with
    /// `.noSpace` and changes nothing; every request accepted before it is stored (though a
    /// one-block cache commits them one by one), and the device is left clean and consistent.
    @Test func noSpaceLeavesTheDeviceCleanAndSaysHowMuch() throws {
        let bs = 65536
        let mem = try memoryDevice(physical: 1 << 20, logical: 4 << 20, lblkShift: 4)
        let v = try Volume(device: mem, cacheBytes: bs)
        var rng = SplitMix(seed: 11)
        let data = (0..<(4 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        // One request for everything: refused, nothing changes, the device is not even DIRTY.
        #expect(throws: CBDError.self) { try data.withUnsafeBytes { try v.write($0, at: 0) } }
        #expect(try headerAndGeometry(mem).0.isDirty == false)
        // Block by block: accepted until the first that does not fit, then refused.
        var accepted = 0
        do {
            for n in 0..<(data.count / bs) {
                try data.withUnsafeBytes {
                    try v.write(
                        UnsafeRawBufferPointer(rebasing: $0[n * bs..<(n + 1) * bs]),
                        at: n * bs)
                }
                accepted += 1
            }
            Issue.record("a 1 MiB device took 4 MiB of random data")
        } catch let e as CBDError {
            #expect(e.kind == .noSpace, "\(e)")
        }
        #expect(accepted > 0)
        try v.close()
        #expect(try headerAndGeometry(mem).0.isDirty == false)
        var options = Checker.Options()
        options.verifyData = true
        let check = try Checker(device: mem, options: options)
        try check.run()
        #expect(check.problems.isEmpty, "\(check.problems.map(\.message))")
        let back = try Volume(device: mem)
        var got = [UInt8](repeating: 0, count: 4 << 20)
        try got.withUnsafeMutableBytes { try back.read(into: $0, at: 0) }
        #expect(got.prefix(accepted * bs).elementsEqual(data.prefix(accepted * bs)))
        #expect(got.dropFirst(accepted * bs).allSatisfy { $0 == 0 })
        // Through the tool, which writes 1 MiB at a time: on a 2 MiB device the first MiB fits,
        // the second is refused; the tool says how much it wrote, and that much is there.
        let s = try Scratch()
        let img = s.file("small.cbd"), input = s.file("in.bin")
        try #require(try Tools.run("mkfs.cbd", ["-q", img, "2M"]).status == 0)
        try #require(FileManager.default.createFile(atPath: input, contents: Data(data)))
        let r = try Tools.run("sh", ["-c", "\"$0\" write -o 0 \"$1\" < \(input)", Tools.binDir + "/cbd", img])
        #expect(
            r.status == 1 && r.stderr.contains("no space left") && r.stderr.contains("wrote 1048576 of 4194304 bytes"),
            "\(r.stderr)")
        #expect(try Tools.run("fsck.cbd", ["-fn", img]).status == 0, "left DIRTY or inconsistent")
        let read = try Tools.run("cbd", ["read", img])
        #expect(
            read.status == 0 && read.out.prefix(1 << 20).elementsEqual(data.prefix(1 << 20))
                && read.out.dropFirst(1 << 20).allSatisfy { $0 == 0 }, "not what the tool said it wrote")
        // Nothing fits at all: nothing written, the device unchanged, and it says so.
        let full = try Tools.run("sh", ["-c", "\"$0\" write -o 1M \"$1\" < \(input)", Tools.binDir + "/cbd", img])
        #expect(full.status == 1 && full.stderr.contains("nothing written"), "\(full.stderr)")
        #expect(try Tools.run("cbd", ["read", img]).out == read.out, "a refused write changed the device")
    }

    /// convert -f does not replace an image another program is writing (its data would go to a
    /// file with no name) nor a read-only one.
    @Test func convertDoesNotReplaceAHeldOrReadOnlyImage() throws {
        let s = try Scratch()
        let cbd = try image(s)
        let raw = s.file("raw.img")
        let before = try FileFacts.bytes(cbd)
        do {
            let writer = try FileDevice(path: cbd, mode: .readWrite)  // holds LOCK_EX, as cbd write does
            let r = try Tools.run("cbd", ["convert", "-q", "-f", raw, cbd])
            #expect(r.status == 1 && r.stderr.contains("in use"), "\(r.stderr)")
            _ = writer
        }
        #expect(try FileFacts.bytes(cbd) == before)
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: cbd)
        let r = try Tools.run("cbd", ["convert", "-q", "-f", raw, cbd])
        #expect(r.status == 1 && r.stderr.contains("read-only"), "\(r.stderr)")
        #expect(try FileFacts.bytes(cbd) == before)
        // A writable one is replaced, and keeps its mode.
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: cbd)
        #expect(try Tools.run("cbd", ["convert", "-q", "-f", "-b", "16K", raw, cbd]).status == 0)
        let mode = try FileManager.default.attributesOfItem(atPath: cbd)[.posixPermissions] as? Int
        #expect(mode == 0o640)
    }

    /// Readers take a shared lock: while a writer holds the image, a read is refused rather
    /// than served from a half-committed table; two readers share it.
    @Test func readersWaitForNoWriter() throws {
        let s = try Scratch()
        let cbd = try image(s)
        do {
            let writer = try FileDevice(path: cbd, mode: .readWrite)
            for args in [["read", "-l", "4K", cbd], ["info", cbd]] {
                let r = try Tools.run("cbd", args)
                #expect(r.status == 1 && r.stderr.contains("in use"), "\(args): \(r.stderr)")
            }
            #expect(try Tools.run("fsck.cbd", ["-fn", cbd]).status == 8)
            _ = writer
        }
        let reader = try FileDevice(path: cbd, mode: .readOnly)
        #expect(try Tools.run("cbd", ["read", "-l", "4K", cbd]).status == 0)
        let w = try Tools.run("sh", ["-c", "echo x | \"$0\" write -o 0 \"$1\"", Tools.binDir + "/cbd", cbd])
        #expect(w.status == 1 && w.stderr.contains("in use"), "\(w.stderr)")
        _ = reader
    }
}
