// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing
@testable import CBDTestSupport

/// One contract for every tool and subcommand (thin-provisioning-tools' `tests/common`): a
/// table of standard bad inputs (missing, a directory, empty, tiny, another kind of file, a CBD
/// with a bad magic, a read-only device for the writers), each answered with the tool's
/// documented failure status and one line on stderr that starts with the tool's name and names
/// the file, the input left byte for byte as it was; `--help` and `--version` succeed; a reader
/// whose output pipe closes stops without a word.
@Suite struct BadInputContractTests {
    enum Input: String, CaseIterable, Sendable {
        case missing, directory, empty, tiny, foreign, badMagic
    }

    struct Command: Sendable, CustomStringConvertible {
        let tool: String
        /// Arguments; "IN" is the bad input, "OUT" an output that does not exist, "GOOD" a valid CBD.
        let args: [String]
        /// The bad inputs it must refuse (others are valid for it: a raw image is any file).
        let refuses: Set<Input>
        var failure: Int32 = 1
        /// fsck.cbd explains a device it cannot open in a few lines (the first names it).
        var explains = false
        var description: String { ([tool] + args).joined(separator: " ") }
    }

    static let cbdOnly = Set(Input.allCases)
    static let commands: [Command] = [
        Command(tool: "mkfs.cbd", args: ["-n", "IN"], refuses: [.missing, .directory, .empty, .tiny]),
        Command(tool: "fsck.cbd", args: ["-n", "IN"], refuses: cbdOnly, failure: 8, explains: true),
        Command(tool: "cbddump", args: ["IN"], refuses: cbdOnly),
        Command(tool: "cbd", args: ["info", "IN"], refuses: cbdOnly),
        Command(tool: "cbd", args: ["map", "IN"], refuses: cbdOnly),
        Command(tool: "cbd", args: ["image", "--metadata", "IN", "OUT"], refuses: cbdOnly),
        Command(tool: "cbd", args: ["convert", "IN", "OUT"], refuses: [.missing, .directory, .empty]),
        Command(tool: "cbd", args: ["measure", "IN"], refuses: [.missing, .directory, .empty]),
        Command(tool: "cbd", args: ["compare", "GOOD", "IN"], refuses: [.missing, .directory], failure: 2),
        Command(tool: "cbd", args: ["resize", "IN"], refuses: cbdOnly),
        Command(tool: "cbd", args: ["undo", "IN", "GOOD"], refuses: cbdOnly),
        Command(tool: "cbd", args: ["read", "-l", "4K", "IN"], refuses: cbdOnly),
        Command(tool: "cbd", args: ["write", "-o", "0", "IN"], refuses: cbdOnly),
        Command(tool: "cbd", args: ["discard", "-l", "64K", "IN"], refuses: cbdOnly),
        Command(tool: "cbd", args: ["serve", "--run", "true", "IN"], refuses: cbdOnly)
    ]

    /// The bad input `kind` made in `s`, and the valid CBD beside it.
    static func make(_ kind: Input, in s: Scratch) throws -> (input: String, good: String) {
        let good = s.file("good.cbd"), path = s.file("in-\(kind.rawValue)")
        try #require(try Tools.run("mkfs.cbd", ["-q", good, "8M"]).status == 0)
        var rng = SystemRandomNumberGenerator()
        switch kind {
        case .missing: break
        case .directory: try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        case .empty: try Data().write(to: URL(fileURLWithPath: path))
        case .tiny:
            try Data((0..<100).map { _ in UInt8.random(in: 0...255, using: &rng) }).write(
                to: URL(fileURLWithPath: path))
        case .foreign:
            try Data((0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }).write(
                to: URL(fileURLWithPath: path))
        case .badMagic:
            var bytes = try Data(contentsOf: URL(fileURLWithPath: good))
            bytes.replaceSubrange(0..<4, with: Array("XXXX".utf8))
            try bytes.write(to: URL(fileURLWithPath: path))
        }
        return (path, good)
    }

    static func contents(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    @Test(arguments: BadInputContractTests.commands)
    func badInputsAreRefusedWithOneLine(_ command: Command) throws {
        for kind in Input.allCases {
            let s = try Scratch()
            let (input, good) = try Self.make(kind, in: s)
            let before = Self.contents(input), goodBefore = Self.contents(good)
            let args = command.args.map { $0 == "IN" ? input : $0 == "GOOD" ? good : $0 == "OUT" ? s.file("out") : $0 }
            let r = try Tools.run(command.tool, args, stdin: Data())
            let what = "\(command) on \(kind.rawValue)"
            #expect(Self.contents(input) == before && Self.contents(good) == goodBefore, "\(what) changed its input")
            guard command.refuses.contains(kind) else { continue }
            let lines = r.stderr.split(separator: "\n")
            #expect(r.status == command.failure, "\(what): exit \(r.status), not \(command.failure): \(r.stderr)")
            #expect(command.explains ? !lines.isEmpty : lines.count == 1, "\(what): \(lines.count) lines: \(r.stderr)")
            let first = lines.first.map(String.init) ?? ""
            let name = (input as NSString).lastPathComponent
            #expect(first.hasPrefix("\(command.tool): ") && first.contains(name), "\(what): \(first)")
        }
    }

    /// The writers refuse a device they may not write (a read-only file), unchanged, in one line.
    @Test(arguments: [
        ["fsck.cbd", "-fy"], ["mkfs.cbd", "-f", "-q"], ["cbd", "resize"], ["cbd", "write", "-o", "0"],
        ["cbd", "discard", "-l", "64K"], ["cbd", "undo", "UNDO"]
    ])
    func readOnlyDevicesAreRefused(_ command: [String]) throws {
        let s = try Scratch()
        let dev = s.file("ro.cbd")
        try #require(try Tools.run("mkfs.cbd", ["-q", dev, "8M"]).status == 0)
        // An undo file that matches it: written by a resize of a copy, applied to the original.
        let copy = s.file("copy.cbd"), undo = s.file("undo")
        try FileManager.default.copyItem(atPath: dev, toPath: copy)
        try #require(try Tools.run("cbd", ["resize", "-q", "-z", undo, copy, "16M"]).status == 0)
        chmod(dev, 0o444)
        defer { chmod(dev, 0o644) }
        let before = Self.contents(dev)
        let args =
            Array(command.dropFirst()).map { $0 == "UNDO" ? undo : $0 } + [dev]
            + (command.first == "mkfs.cbd" ? ["8M"] : [])
        let r = try Tools.run(command[0], args, stdin: Data([1, 2, 3]))
        let lines = r.stderr.split(separator: "\n")
        #expect(r.status == (command[0] == "fsck.cbd" ? 8 : 1), "\(command): \(r.status) \(r.stderr)")
        #expect(
            lines.count == 1 && lines[0].hasPrefix("\(command[0]): ") && lines[0].contains("ro.cbd"),
            "\(command): \(r.stderr)")
        #expect(Self.contents(dev) == before, "\(command) changed a read-only device")
    }

    /// `--help` and `--version` on every tool and subcommand: exit 0, on stdout.
    @Test(
        arguments: ["mkfs.cbd", "fsck.cbd", "cbddump", "cbd"]
            + [
                "convert", "measure", "compare", "map", "image",
                "info", "resize", "undo", "read", "write", "discard", "serve"
            ].map { "cbd \($0)" })
    func helpAndVersion(_ command: String) throws {
        let words = command.split(separator: " ").map(String.init)
        let help = try Tools.run(words[0], Array(words.dropFirst()) + ["--help"])
        #expect(help.status == 0 && help.stdout.contains("USAGE:") && help.stderr.isEmpty, "\(command) --help")
        let version = try Tools.run(words[0], Array(words.dropFirst()) + ["--version"])
        let number = try String(contentsOfFile: Self.root + "/VERSION", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(
            version.status == 0 && version.stdout.hasPrefix("\(words[0]) \(number)"),
            "\(command) --version: \(version.stdout)")
    }

    /// A reader whose standard output is closed early (`| head`) stops without a word on stderr
    /// (by SIGPIPE or exit 0), as cat does.
    @Test(arguments: [["cbd", "read"], ["cbd", "map"], ["cbddump", "--zone", "0", "--json"], ["cbd", "info"]])
    func closedPipeIsSilent(_ command: [String]) throws {
        let s = try Scratch()
        let dev = s.file("d.cbd")
        try #require(try Tools.run("mkfs.cbd", ["-q", dev, "64M"]).status == 0)
        let line = ([Tools.binDir + "/" + command[0]] + command.dropFirst() + [dev]).map { "'\($0)'" }.joined(
            separator: " ")
        let r = try Tools.run(
            "bash", ["-c", "\(line) 2>\(s.file("err")) | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}"])
        let status = Int32(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        let err = (try? String(contentsOfFile: s.file("err"), encoding: .utf8)) ?? "?"
        #expect([0, 141].contains(status) && err.isEmpty, "\(command): exit \(status), stderr: \(err)")
    }

    /// A closed standard output (`>&-`) or a full one (/dev/full) is a write error, one line and
    /// the tool's failure status (fsck.cbd: 8), as coreutils' tools say; the output was lost, so
    /// the tool must not exit 0.
    @Test(arguments: [
        (["cbd", "info"], 1), (["fsck.cbd", "-n"], 8), (["cbd", "map"], 1), (["cbddump"], 1), (["cbd", "read"], 1)
    ])
    func lostStandardOutputIsAnError(_ command: [String], _ status: Int) throws {
        let s = try Scratch()
        let dev = s.file("d.cbd")
        try #require(try Tools.run("mkfs.cbd", ["-q", dev, "64M"]).status == 0)
        let line = ([Tools.binDir + "/" + command[0]] + command.dropFirst() + [dev]).map { "'\($0)'" }.joined(
            separator: " ")
        for redirect in [">&-", ">/dev/full"] {
            let r = try Tools.run("bash", ["-c", "\(line) \(redirect)"])
            let lines = r.stderr.split(separator: "\n")
            #expect(
                Int(r.status) == status && lines.count == 1 && lines[0].contains("standard output: write error: "),
                "\(command) \(redirect): exit \(r.status), stderr: \(r.stderr)")
        }
    }
}
