// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// The tests/f_* corpus of Tests/fsck, and randomized damage.
@Suite struct FsckTests {
    /// Where repairs save orphaned data (fsck never frees data without saving it).
    let lostFound: Scratch
    init() throws { lostFound = try Scratch() }

    static let corpus: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fsck").path
    }()

    static var cases: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: corpus)) ?? []).filter { $0.hasPrefix("f_") }.sorted()
    }

    @Test func corpusIsThere() { #expect(Self.cases.count >= 15) }

    /// Each case: damaged image, first run as expected, second run as expected (clean).
    @Test(arguments: FsckTests.cases)
    func corpusCase(_ name: String) throws {
        try Tools.require("python3")
        let s = try Scratch()
        let dir = "\(Self.corpus)/\(name)"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["\(Self.corpus)/run_case.sh", dir, s.path]
        p.environment = ProcessInfo.processInfo.environment.merging(["BIN": Tools.binDir]) { $1 }
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "case script failed")
        for n in [1, 2] {
            let got = (try? String(contentsOfFile: "\(s.path)/out.\(n)", encoding: .utf8)) ?? "(missing)"
            let want = try String(contentsOfFile: "\(dir)/expect.\(n)", encoding: .utf8)
            #expect(got == want, "\(name) run \(n):\n\(got)")
        }
        if FileManager.default.fileExists(atPath: "\(dir)/untouched") {
            #expect(try FileFacts.bytes("\(s.path)/image.cbd") == FileFacts.bytes("\(s.path)/image.before"))
        } else {
            // After the second run the device is consistent, by the independent checker too, and clean.
            #expect(try headerAndGeometry(FileDevice(path: "\(s.path)/image.cbd", mode: .readOnly)).0.isDirty == false)
            let check = try Tools.run("python3", [Self.corpus + "/cbdimg.py", s.path + "/image.cbd", "check"])
            #expect(check.status == 0, "\(name): independent check: \(check.stdout)\(check.stderr)")
        }
    }

    /// Random byte damage in bitmaps, tables and data of a populated device: -y terminates,
    /// a second run is clean, and every block fsck did not report reads its original bytes.
    @Test(arguments: [(4, 1), (4, 2), (4, 3), (0, 4), (5, 5), (4, 6), (2, 7), (4, 8)])
    func randomDamageConverges(lblkShift: Int, seed: UInt64) throws {
        var rng = SplitMix(seed: seed)
        let bs = 4096 << lblkShift
        let nrLblk = 96
        let mem = try memoryDevice(physical: max(nrLblk * bs / 2, 1 << 20), logical: nrLblk * bs, lblkShift: lblkShift)
        let vol = try Volume(device: mem)
        var original: [[UInt8]] = []
        for n in 0..<nrLblk {
            let kind = rng.next() % 4
            let block: [UInt8] = (0..<bs).map { i in
                kind == 0
                    ? 0 : kind == 1 ? UInt8(truncatingIfNeeded: rng.next()) : UInt8(truncatingIfNeeded: (i / 13) &+ n)
            }
            try block.withUnsafeBytes { try vol.write($0, at: n * bs) }
            original.append(block)
        }
        try vol.close()
        let g = vol.geometry
        // Which data pblks each block uses, before damage.
        var owners: [Int: Int] = [:]
        let clean = try Volume(device: mem)
        for n in 0..<nrLblk { for p in try clean.entry(n).pblks { owners[Int(p)] = n } }
        // Damage: random bytes of bitmaps, tables and used data pblks.
        var damagedBlocks = Set<Int>()
        for _ in 0..<12 {
            let z = Int(rng.next() % UInt64(g.nrZones))
            let target: Int
            switch rng.next() % 3 {
            case 0: target = g.bitmapPblk(z) * 4096 + Int(rng.next() % 64)
            case 1:
                // A changed entry may stay well formed (a slot naming a pblk freed by another
                // repair): that block counts as damaged.
                let within = Int(rng.next() % UInt64(min(nrLblk, g.lblkPerZone) * g.entryLen))
                damagedBlocks.insert(z * g.lblkPerZone + within / g.entryLen)
                target = g.tablePblks(z).lowerBound * 4096 + within
            default:
                guard let (p, n) = owners.randomElement(using: &rng) else { continue }
                damagedBlocks.insert(n)
                target = p * 4096 + Int(rng.next() % 4096)
            }
            try [UInt8(truncatingIfNeeded: rng.next())].withUnsafeBytes { try mem.write($0, at: target) }
        }
        var options = Checker.Options()
        options.mode = .fixAll
        options.verifyData = true
        options.lostFound = LostFound(directory: lostFound.file("lost+found"))
        let first = try Checker(device: mem, options: options)
        try first.run()
        #expect(first.problems.allSatisfy { $0.fixed })
        let second = try Checker(device: mem, options: options)
        try second.run()
        #expect(second.problems.isEmpty, "second run: \(second.problems.map { $0.message })")
        #expect(second.exitCode == 0)
        let reported = Set(first.problems.flatMap { $0.suspectLblks })
        let after = try Volume(device: mem)
        for n in 0..<nrLblk where !reported.contains(n) && !damagedBlocks.contains(n) {
            var got = [UInt8](repeating: 0, count: bs)
            try got.withUnsafeMutableBytes { try after.read(into: $0, at: n * bs) }
            #expect(got == original[n], "block \(n) changed without a report (seed \(seed))")
        }
        #expect(try bitmapMismatches(after).isEmpty)
    }

    @Test func readOnlyChangesNothingAndJSONMatchesText() throws {
        let s = try Scratch()
        let img = s.file("a.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", img, "8M"]).status == 0)
        let data = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 / 7) })
        #expect(try Tools.run("cbd", ["write", img, "-o", "0"], stdin: data).status == 0)
        // Leak two pblks by hand (and close the device: it is locked while open for writing).
        let g = try { () throws -> Geometry in
            let dev = try FileDevice(path: img, mode: .readWrite)
            let (_, g) = try headerAndGeometry(dev)
            var bm = Bitmap(bytes: try dev.readPblks(g.bitmapPblk(0)))
            bm.set(1000); bm.set(1001)
            try dev.writePblks(bm.bytes, at: g.bitmapPblk(0))
            // A second writer is refused while this one holds the image.
            let busy = try Tools.run("fsck.cbd", ["-y", img])
            #expect(busy.status == 8 && busy.stderr.contains("in use"), "\(busy.stderr)")
            return g
        }()
        let before = try FileFacts.bytes(img)
        let text = try Tools.run("fsck.cbd", ["-n", img])
        #expect(text.status == 4 && text.stdout.contains("used by no entry"), "\(text.stdout)")
        let json = try Tools.run("fsck.cbd", ["-n", "--json", img])
        #expect(json.status == 4)
        #expect(try FileFacts.bytes(img) == before)
        let obj = try JSONSerialization.jsonObject(with: json.out) as? [String: Any]
        let problems = obj?["problems"] as? [[String: Any]] ?? []
        #expect(problems.count == 1 && problems.first?["kind"] as? String == "leaked_pblks")
        #expect(problems.first?["pblks"] as? [Int] == [g.dataStart(0) + 1000, g.dataStart(0) + 1001])
        #expect(obj?["exit_code"] as? Int == 4)
        let summary = obj?["summary"] as? [String: Any]
        #expect(text.stdout.contains("\(summary?["used_pblks"] as? Int ?? -1)/\(g.totalDataPblks) data pblks used"))
        let fix = try Tools.run("fsck.cbd", ["-y", "--json", img])
        #expect(fix.status == 1)
        #expect(try Tools.run("fsck.cbd", ["-fn", img]).status == 0)
        #expect(try Tools.run("cbd", ["read", img, "-l", "300000"]).out == data)
    }

    /// Without -n/-y/-p and with a terminal on stdin, fsck asks per problem (yes/no/all/quit);
    /// `script` gives it a pseudo-terminal.
    @Test func interactiveAnswers() throws {
        try Tools.require("script")
        let s = try Scratch()
        let img = s.file("a.cbd"), cbdimg = Self.corpus + "/cbdimg.py"
        #expect(try Tools.run("mkfs.cbd", ["-q", img, "8M"]).status == 0)
        #expect(
            try Tools.run(
                "cbd", ["write", img, "-o", "0"], stdin: Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 / 7) })
            ).status == 0)
        // Three problems: lblk 3 malformed, lblk 4 malformed, two leaked pblks.
        #expect(try Tools.run("python3", [cbdimg, img, "set-entry", "3", "5", "0,7"]).status == 0)
        #expect(try Tools.run("python3", [cbdimg, img, "set-entry", "4", "5", "0"]).status == 0)
        #expect(try Tools.run("python3", [cbdimg, img, "set-bit", "0", "900", "1"]).status == 0)
        func ask(_ answers: String) throws -> Tools.Result {
            try Tools.run(
                "script", ["-qec", "\(Tools.binDir)/fsck.cbd -f \(img)", "/dev/null"], stdin: Data(answers.utf8))
        }
        let before = try FileFacts.bytes(img)
        // quit at the third question: cancelled (32) with problems left (4), nothing written
        let quit = try ask("n\ny\nq\n")
        #expect(quit.status == 36, "\(quit.stdout)")
        #expect(quit.stdout.contains("Clear<y>? [y/n/a(ll)/q(uit)]") && quit.stdout.contains("nothing was written"))
        #expect(try FileFacts.bytes(img) == before)
        // an unknown answer asks again; no to the first, all for the rest: 1 | 4
        let some = try ask("x\nn\na\n")
        #expect(some.status == 5, "\(some.stdout)")
        #expect(some.stdout.contains("Free? yes"), "after 'all' the rest is fixed without asking: \(some.stdout)")
        let left = try Tools.run("fsck.cbd", ["-fn", img])
        #expect(
            left.status == 4 && left.stdout.contains("Logical block 3 ") && !left.stdout.contains("Logical block 4 "),
            "\(left.stdout)")
    }

    @Test func exitCodesForUsageAndOperationalErrors() throws {
        let s = try Scratch()
        #expect(try Tools.run("fsck.cbd", ["-n", "-y", s.file("x")]).status == 16)
        #expect(try Tools.run("fsck.cbd", ["--bogus", s.file("x")]).status == 16)
        let missing = try Tools.run("fsck.cbd", ["-n", s.file("x")])
        #expect(missing.status == 8 && missing.stderr.split(separator: "\n").count == 1)
        #expect(try Tools.run("fsck.cbd", ["-n", s.path]).status == 8)
        #expect(try Tools.run("fsck.cbd", ["-n", "/dev/null"]).status == 8)
    }

    @Test func preenSkipsACleanDeviceUnlessForced() throws {
        let s = try Scratch()
        let img = s.file("a.cbd")
        #expect(try Tools.run("mkfs.cbd", ["-q", img, "8M"]).status == 0)
        let skip = try Tools.run("fsck.cbd", ["-p", img])
        #expect(skip.status == 0 && skip.stdout.split(separator: "\n").count == 1 && skip.stdout.contains("clean"))
        let forced = try Tools.run("fsck.cbd", ["-fp", img])
        #expect(forced.status == 0 && forced.stdout.contains("0 problems found"))
        let progress = try Tools.run("fsck.cbd", ["-fn", "-C", "1", img])
        #expect(progress.stdout.contains("1 1 1 \(img)"))
    }
}
