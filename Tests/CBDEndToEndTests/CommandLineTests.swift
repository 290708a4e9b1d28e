// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDCLI
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout

/// The small things a new user meets on the command line.
@Suite struct CommandLineTests {
    /// Every argument that names a file completes as a path: bash's generated completion of
    /// each tool, sourced, offers the file for its first letters (before: nothing).
    @Test(arguments: [
        ["cbd", "info"], ["cbd", "convert"], ["cbd", "serve"], ["fsck.cbd"], ["mkfs.cbd"], ["cbddump"],
        ["cbd", "undo"]
    ])
    func pathArgumentsCompleteAsFiles(_ words: [String]) throws {
        let s = try Scratch()
        FileManager.default.createFile(atPath: s.file("zzfile1.cbd"), contents: Data())
        let tool = words[0]
        let script = try Tools.run(tool, ["--generate-completion-script", "bash"])
        try #require(script.status == 0)
        try script.out.write(to: URL(fileURLWithPath: s.file("complete.bash")))
        let line = (words + ["zz"]).joined(separator: " ")
        let function = "_" + tool
        let probe = """
            source \(s.file("complete.bash")) 2>/dev/null
            cd \(s.path)
            COMP_WORDS=(\(line)); COMP_CWORD=\(words.count); COMP_LINE="\(line)"; COMP_POINT=${#COMP_LINE}
            \(function) 2>/dev/null
            printf '%s\\n' "${COMPREPLY[@]}"
            """
        let r = try Tools.run("bash", ["-c", probe])
        #expect(
            r.stdout.split(separator: "\n").contains("zzfile1.cbd"), "\(line)<TAB> offered: \(r.stdout) \(r.stderr)")
    }

    /// What a killed convert left (`.NAME.tmp-PID` of a process that is gone) is removed by the
    /// next run on the same output; a live process's file is left alone.
    @Test func staleTemporaryOutputsAreRemoved() throws {
        let s = try Scratch()
        let raw = s.file("in.img"), out = s.file("out.cbd")
        try Data(repeating: 7, count: 1 << 20).write(to: URL(fileURLWithPath: raw))
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        let stale = s.file(".out.cbd.tmp-\(gone.processIdentifier)"), live = s.file(".out.cbd.tmp-1")
        for f in [stale, live] { FileManager.default.createFile(atPath: f, contents: Data(count: 4096)) }
        #expect(try Tools.run("cbd", ["convert", "-q", raw, out]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: stale), "a dead process's temporary output is left")
        #expect(FileManager.default.fileExists(atPath: live), "pid 1 is alive: its file is not ours to remove")
    }

    /// -V is --version, as in e2fsprogs, for every tool; after -- it is an operand.
    @Test(arguments: ["cbd", "mkfs.cbd", "fsck.cbd", "cbddump"])
    func dashVIsVersion(_ tool: String) throws {
        let long = try Tools.run(tool, ["--version"]), short = try Tools.run(tool, ["-V"])
        #expect(
            short.status == 0 && short.stdout == long.stdout && long.stdout.hasPrefix(tool + " "), "\(short.stderr)")
        #expect(ToolVersion.arguments(["-f", "--", "-V"]) == ["-f", "--", "-V"])
    }

    /// Errors about a range or a size name the file they are about (they did not).
    @Test func sizeAndRangeErrorsNameTheFile() throws {
        let s = try Scratch()
        let dev = s.file("d.cbd"), raw = s.file("in.img"), out = s.file("small.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", dev, "4M"]).status == 0)
        for args in [["read", dev, "-o", "1T"], ["read", dev, "-o", "0", "-l", "1T"], ["write", dev, "-o", "1T"]] {
            let r = try Tools.run("cbd", args)
            #expect(
                r.status == 1 && r.stderr.hasPrefix("cbd: \(dev): ") && r.stderr.contains("past the logical size"),
                "\(args): \(r.stderr)")
        }
        try Data((0..<(4 << 20)).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: raw))
        let r = try Tools.run("cbd", ["convert", "-q", "-s", "1M", raw, out])
        #expect(r.status == 1 && r.stderr.contains("\(out): physical size"), "\(r.stderr)")
    }

    /// A script that asked for JSON gets JSON on failure too, from every tool that takes --json
    /// (map, measure and cbddump printed nothing on standard output); `cbd image`'s help shows
    /// --metadata as required (it showed [--metadata]).
    @Test func jsonOnErrorAndRequiredFlags() throws {
        let s = try Scratch()
        let missing = s.file("missing.cbd")
        for (tool, args) in [
            ("cbd", ["info", "--json", missing]), ("cbd", ["map", "--json", missing]),
            ("cbd", ["measure", "--json", missing]), ("cbddump", ["--json", missing])
        ] {
            let r = try Tools.run(tool, args)
            let object = try? JSONSerialization.jsonObject(with: r.out) as? [String: Any]
            #expect(
                r.status == 1 && object?["error"] is String && object?["exit_code"] as? Int == 1,
                "\(tool) \(args): \(r.stdout)")
        }
        let help = try Tools.run("cbd", ["image", "--help"]).stdout
        #expect(help.contains("<output> --metadata") && !help.contains("[--metadata]"), "\(help)")
    }

    /// cbd resize takes the table's spellings: -q/--quiet (it had none) and -p/--progress (only -p).
    @Test func resizeTakesQuietAndProgress() throws {
        let s = try Scratch()
        let dev = s.file("d.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", dev, "16M"]).status == 0)
        let quiet = try Tools.run("cbd", ["resize", "-q", dev, "20M"])
        #expect(quiet.status == 0 && quiet.stdout.isEmpty && quiet.stderr.isEmpty, "\(quiet.stdout)\(quiet.stderr)")
        let loud = try Tools.run("cbd", ["resize", "--progress", dev, "24M"])
        #expect(loud.status == 0 && loud.stdout.contains("resized to"), "\(loud.stdout)\(loud.stderr)")
        #expect(try Tools.run("fsck.cbd", ["-fn", dev]).status == 0)
    }

    /// `-p, --progress` on every long-running command draws the one progress bar on stderr
    /// (to 100 %), stdout unchanged; without it, and stderr not a terminal, no bar.
    @Test func progressOnEveryLongRunningCommand() throws {
        let s = try Scratch()
        let raw = s.file("in.img"), dev = s.file("d.cbd"), undo = s.file("undo")
        var bytes = [UInt8](repeating: 0, count: 8 << 20)
        for i in stride(from: 0, to: bytes.count, by: 7) { bytes[i] = UInt8(truncatingIfNeeded: i / 4096) }
        try Data(bytes).write(to: URL(fileURLWithPath: raw))
        #expect(try Tools.run("cbd", ["convert", "-q", raw, dev]).status == 0)
        let runs: [[String]] = [
            ["convert", "-p", raw, s.file("again.cbd")], ["compare", "-p", raw, dev], ["measure", "-p", "--exact", raw],
            ["image", "-p", "--metadata", dev, s.file("meta")], ["resize", "-p", "-z", undo, dev, "-L", "1G"],
            ["undo", "-p", undo, dev]
        ]
        for args in runs {
            let r = try Tools.run("cbd", args)
            #expect(r.status == 0 && r.stderr.contains("] 100%"), "\(args): \(r.stderr)")
        }
        for args in runs.prefix(4) {  // again, without -p, to new outputs: no bar
            let plain = try Tools.run(
                "cbd", args.filter { $0 != "-p" }.map { $0.hasPrefix(s.path) && $0 != raw && $0 != dev ? $0 + "2" : $0 }
            )
            #expect(plain.status == 0 && !plain.stderr.contains("%"), "\(args) without -p: \(plain.stderr)")
        }
    }

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
        // It shows the plan, then exits as the run would: refused without -f (it said 0).
        #expect(r.status == 1 && r.stderr.contains("ext4") && r.stderr.contains("-f"), "\(r.stderr)")
        #expect(try Tools.run("mkfs.cbd", ["-n", "-f", img]).status == 0)
        #expect(r.stdout.contains("Would wipe an ext4 filesystem") && r.stdout.contains("needs -f"), "\(r.stdout)")
        #expect(r.stdout.contains("provisioning ratio") && r.stdout.contains("Dry run: nothing written."))
        #expect(try FileFacts.bytes(img) == before)
    }

    /// 4 KiB blocks never compress: both tools that choose a block size say so.
    @Test func fourKiBBlocksAreExplained() throws {
        let s = try Scratch()
        let m = try Tools.run("mkfs.cbd", ["-b", "4K", s.file("a.cbd"), "8M"])
        #expect(m.status == 0 && m.stdout.contains("nothing is compressed"), "\(m.stdout)")
        try #require(
            FileManager.default.createFile(atPath: s.file("raw"), contents: Data(repeating: 1, count: 100_000)))
        let c = try Tools.run("cbd", ["convert", "-b", "4K", s.file("raw"), s.file("b.cbd")])
        #expect(c.status == 0 && c.stderr.contains("nothing is compressed"), "\(c.stderr)")
    }

    /// Converting a device that was not closed cleanly warns and names fsck.cbd.
    @Test func convertingADirtyDeviceWarns() throws {
        let s = try Scratch()
        try #require(
            FileManager.default.createFile(atPath: s.file("raw"), contents: Data(repeating: 3, count: 300_000)))
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
