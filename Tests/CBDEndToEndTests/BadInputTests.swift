// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDFormat
@testable import CBDTestSupport
@testable import CBDDevice
@testable import CBDVolume
@testable import CBDLayout
@testable import CBDCheck

/// The bad-input matrix: every tool against missing, wrong, damaged and hostile targets.
/// Each row: the documented exit code, one clear line naming the thing, no change to the target.
@Suite struct BadInputTests {
    struct Row: CustomStringConvertible, Sendable {
        var tool: String
        var args: [String]
        var status: Int32
        var words: String
        var description: String { "\(tool) \(args.joined(separator: " "))" }
    }

    /// Targets made fresh for each row, named by the placeholders used in the rows.
    static func targets(_ s: Scratch) throws -> [String: String] {
        let fm = FileManager.default
        var t: [String: String] = [:]
        t["MISSING"] = s.file("missing.cbd")
        t["DIR"] = s.path
        let good = s.file("good.cbd")
        _ = try Tools.run("mkfs.cbd", ["-q", good, "4M"])
        _ = try Tools.run("cbd", ["write", good, "-o", "0"], stdin: Data(repeating: 7, count: 100_000))
        t["GOOD"] = good
        let ro = s.file("ro.cbd")
        try fm.copyItem(atPath: good, toPath: ro)
        chmod(ro, 0o444)
        t["RO"] = ro
        let empty = s.file("empty.img")
        try #require(fm.createFile(atPath: empty, contents: Data()))
        t["EMPTY"] = empty
        let truncated = s.file("truncated.cbd")
        try fm.copyItem(atPath: good, toPath: truncated)
        truncate(truncated, 1 << 20)
        t["TRUNC"] = truncated
        // Header fields at and past their limits, one image each.
        let fields: [(String, Int, Int, UInt64)] = [
            ("MAGIC", 0, 1, 0x58), ("MAJOR", 4, 2, 2), ("MINOR", 6, 2, 1), ("FLAGS", 28, 2, 4), ("ALGO", 30, 1, 1),
            ("LSHIFT", 24, 2, 19), ("ZSHIFT", 26, 2, 25), ("PHYS8", 8, 8, 8 * 1024 + 3), ("PHYSHUGE", 8, 8, 8 << 48),
            ("PHYSMAX", 8, 8, UInt64.max), ("LOGZERO", 16, 8, 0), ("LOGODD", 16, 8, 8 * 16 + 8),
            ("CLAIMS", 8, 8, 8 * (1 << 40)), ("RESERVED", 200, 1, 1)
        ]
        for (name, offset, width, value) in fields {
            let path = s.file("\(name).cbd")
            try fm.copyItem(atPath: good, toPath: path)
            var h = [UInt8](try FileFacts.bytes(path).prefix(4096))
            LE.put(value, width, &h, offset)
            let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try fh.write(contentsOf: Data(h))
            try fh.close()
            t[name] = path
        }
        return t
    }

    static let headerImages = [
        "MAGIC", "MAJOR", "MINOR", "FLAGS", "ALGO", "LSHIFT", "ZSHIFT", "PHYS8", "PHYSHUGE",
        "PHYSMAX", "LOGZERO", "LOGODD", "CLAIMS", "RESERVED", "TRUNC", "EMPTY"
    ]
    /// Damage fsck.cbd repairs (HeaderRecoveryTests): a field out of range or a wrong magic (the
    /// geometry found from the zones), reserved bytes, a truncated file. -n reports it (exit 4)
    /// and changes nothing; the other tools refuse these as they refuse every header image.
    /// A header of another version, with unknown flags or algorithm, is never rewritten.
    static let repairableHeaders: Set = [
        "MAGIC", "LSHIFT", "ZSHIFT", "PHYS8", "PHYSHUGE", "PHYSMAX", "LOGZERO",
        "LOGODD", "CLAIMS", "RESERVED", "TRUNC"
    ]

    static let rows: [Row] = {
        var r: [Row] = []
        // Readers and writers of an existing device, with their failure codes.
        let uses: [(String, [String], Int32)] = [
            ("fsck.cbd", ["-n"], 8), ("fsck.cbd", ["-y"], 8), ("cbddump", [], 1), ("cbd", ["info"], 1),
            ("cbd", ["read"], 1), ("cbd", ["discard", "-o", "0", "-l", "4096"], 1), ("cbd", ["resize"], 1),
            ("cbd", ["convert", "-q"], 1)
        ]
        for (tool, args, code) in uses {
            let tail = args.first == "convert" ? ["OUT"] : []
            r.append(Row(tool: tool, args: args + ["MISSING"] + tail, status: code, words: "no such file"))
            r.append(Row(tool: tool, args: args + ["DIR"] + tail, status: code, words: "is a directory"))
            r.append(
                Row(
                    tool: tool, args: args + ["/dev/null"] + tail, status: code,
                    words: "not a regular file or block device"))
            r.append(
                Row(
                    tool: tool, args: args + ["/dev/zero"] + tail, status: code,
                    words: "not a regular file or block device"))
            if args.first == "convert" { continue }  // convert takes any raw input
            for img in headerImages where !(tool == "fsck.cbd" && repairableHeaders.contains(img)) {
                r.append(Row(tool: tool, args: args + [img], status: code, words: ""))
            }
            if tool == "fsck.cbd" && args == ["-n"] {
                for img in repairableHeaders.sorted() {
                    r.append(Row(tool: tool, args: args + [img], status: 4, words: ""))
                }
            }
        }
        // Writers refuse a read-only image.
        for (tool, args) in [
            ("fsck.cbd", ["-y"]), ("cbd", ["discard", "-o", "0", "-l", "4096"]), ("cbd", ["resize"]),
            ("mkfs.cbd", ["-f"])
        ] {
            r.append(Row(tool: tool, args: args + ["RO"], status: tool == "fsck.cbd" ? 8 : 1, words: "read-only"))
        }
        r.append(Row(tool: "cbd", args: ["write", "RO", "-o", "0"], status: 1, words: "read-only"))
        // Garbage and negative sizes, conflicting options.
        r += [
            Row(tool: "mkfs.cbd", args: ["MISSING", "12Q"], status: 64, words: "'12Q' is invalid"),
            Row(tool: "mkfs.cbd", args: ["MISSING", "-5M"], status: 64, words: "Error"),
            Row(tool: "mkfs.cbd", args: ["-b", "-4K", "MISSING", "1M"], status: 64, words: "Error"),
            Row(tool: "mkfs.cbd", args: ["-l", "1G", "-r", "2", "MISSING", "1M"], status: 64, words: "exclude"),
            Row(tool: "mkfs.cbd", args: ["-q", "-v", "MISSING", "1M"], status: 64, words: "exclude"),
            Row(tool: "mkfs.cbd", args: ["-r", "-1", "MISSING", "1M"], status: 64, words: "Error"),
            Row(tool: "mkfs.cbd", args: ["-r", "0", "MISSING", "1M"], status: 64, words: "positive"),
            Row(tool: "mkfs.cbd", args: ["GOOD"], status: 1, words: "CBD device"),
            Row(tool: "fsck.cbd", args: ["-n", "-y", "GOOD"], status: 16, words: "only one"),
            Row(tool: "fsck.cbd", args: ["-p", "-n", "GOOD"], status: 16, words: "only one"),
            Row(tool: "cbddump", args: ["--zone", "1", "--lblk", "2", "GOOD"], status: 64, words: "one of"),
            Row(tool: "cbddump", args: ["--zone", "x", "GOOD"], status: 64, words: "Error"),
            Row(tool: "cbddump", args: ["--zone", "99", "GOOD"], status: 1, words: "out of range"),
            Row(tool: "cbd", args: ["read", "GOOD", "-o", "junk"], status: 64, words: "'junk' is invalid"),
            Row(tool: "cbd", args: ["read", "GOOD", "-o", "0x10"], status: 64, words: "'0x10' is invalid"),
            Row(tool: "cbd", args: ["read", "GOOD", "-o", "-1"], status: 64, words: "'-1' is invalid"),
            Row(tool: "cbd", args: ["read", "GOOD", "-o", "1T"], status: 1, words: "past the logical size"),
            Row(tool: "cbd", args: ["read", "GOOD", "-o", "0", "-l", "1T"], status: 1, words: "past the logical size"),
            Row(tool: "cbd", args: ["discard", "GOOD", "-o", "-1"], status: 64, words: "'-1' is invalid"),
            Row(tool: "cbd", args: ["write", "GOOD", "-o", "1T"], status: 1, words: "past the logical size"),
            Row(tool: "cbd", args: ["resize", "GOOD", "abc"], status: 64, words: "'abc' is invalid"),
            Row(tool: "cbd", args: ["resize", "GOOD", "1K"], status: 1, words: ""),
            Row(tool: "cbd", args: ["resize", "-M", "GOOD", "1G"], status: 64, words: "exclude"),
            Row(
                tool: "cbd", args: ["resize", "GOOD", "--logical", "1000"], status: 1,
                words: "multiple of the block size"),
            Row(tool: "cbd", args: ["convert", "-p", "-q", "GOOD", "OUT"], status: 64, words: "exclude"),
            Row(tool: "cbd", args: ["convert", "-b", "5K", "EMPTY", "OUT"], status: 64, words: "'5K' is invalid"),
            Row(tool: "cbd", args: ["convert", "GOOD", "GOOD"], status: 1, words: "is the input itself"),
            Row(tool: "cbd", args: ["undo", "GOOD", "GOOD"], status: 1, words: "not a cbd undo file")
        ]
        return r
    }()

    @Test(arguments: BadInputTests.rows)
    func row(_ row: Row) throws {
        let s = try Scratch()
        let t = try Self.targets(s)
        let args = row.args.map { t[$0] ?? ($0 == "OUT" ? s.file("out.img") : $0) }
        // Snapshot every file that exists, to check nothing changed.
        let files = try FileManager.default.contentsOfDirectory(atPath: s.path).sorted()
        let before = try files.map { try FileFacts.bytes(s.file($0)) }
        let r = try Tools.run(row.tool, args)
        #expect(r.status == row.status, "\(row): \(r.status) \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        if row.status == 4 {
            // fsck.cbd -n reporting pblk 0's damage: on standard output, as every problem.
            #expect(
                r.stderr.isEmpty && r.stdout.contains("Header:") && r.stdout.contains("fsck.cbd -fy"),
                "\(row): \(r.stdout)\(r.stderr)")
        } else if row.status == 64 || row.status == 16 {
            #expect(
                lines.first?.contains("Error") == true || lines.first?.contains(row.words) == true,
                "\(row): \(r.stderr)")
        } else {
            #expect(lines.count == 1, "\(row): \(r.stderr)")
        }
        #expect(row.words.isEmpty || r.stderr.contains(row.words), "\(row): \(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path).sorted() == files, "\(row): files appeared")
        for (f, b) in zip(files, before) { #expect(try FileFacts.bytes(s.file(f)) == b, "\(row): \(f) changed") }
    }

    /// A header claiming 2^48 pblks on a small file is refused before anything is sized by it.
    @Test func hostileGeometryIsRefusedWithoutAllocating() throws {
        let s = try Scratch()
        let t = try Self.targets(s)
        for tool in [["fsck.cbd", "-fn"], ["cbddump"], ["cbd", "info"], ["cbd", "read"]] {
            let r = try Tools.run(
                "/usr/bin/time", ["-f", "%M"] + [Tools.binDir + "/" + tool[0]] + tool.dropFirst() + [t["CLAIMS"]!])
            let rssKB = Int(r.stderr.split(separator: "\n").last ?? "") ?? Int.max
            #expect(r.status != 0 && rssKB < 100_000, "\(tool): rss \(rssKB) KB, \(r.stderr)")
        }
    }
}
