// SPDX-License-Identifier: Apache-2.0
import Foundation
import Testing

/// One vocabulary: each tool's (and each cbd subcommand's) options as its --help lists them
/// are the options its manual page documents, in the SYNOPSIS and in its option list
/// (`.It Fl ...`), and the reverse. Old spellings a tool still takes are hidden from --help
/// and named only in cbd.8's table of options across the tools, which is not read here.
@Suite struct VocabularyTests {
    static let man = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("man").path

    /// What every tool takes from swift-argument-parser, and need not be in each page.
    static let standard: Set<String> = ["-h", "--help", "--version", "-V", "--generate-completion-script"]

    static let commands: [(tool: String, sub: String?)] =
        [
            ("mkfs.cbd", nil), ("fsck.cbd", nil), ("cbddump", nil)
        ]
        + [
            "convert", "measure", "compare", "map", "image", "info", "resize", "undo", "read", "write", "discard",
            "serve"
        ].map { ("cbd", $0) }

    @Test(arguments: VocabularyTests.commands.map { [$0.tool, $0.sub ?? ""] })
    func helpAndManualAgree(_ command: [String]) throws {
        let (tool, sub) = (command[0], command[1].isEmpty ? nil : command[1])
        let r = try Tools.run(tool, (sub.map { [$0] } ?? []) + ["--help"])
        #expect(r.status == 0)
        let help = Self.helpOptions(r.stdout).subtracting(Self.standard)
        let page = try String(contentsOfFile: "\(Self.man)/\(tool).8", encoding: .utf8)
        let manual = Self.manualOptions(page, sub: sub).subtracting(Self.standard)
        let name = ([tool] + (sub.map { [$0] } ?? [])).joined(separator: " ")
        #expect(
            help.subtracting(manual).isEmpty,
            "\(name): in --help, not in the manual: \(help.subtracting(manual).sorted())")
        #expect(
            manual.subtracting(help).isEmpty,
            "\(name): in the manual, not in --help: \(manual.subtracting(help).sorted())")
    }

    /// Options of an OPTIONS list: "-b, --block-size <size>", "--json", "-C <fd>".
    static func helpOptions(_ text: String) -> Set<String> {
        var out = Set<String>()
        for line in text.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " }
            guard trimmed.hasPrefix("-"), line.count - trimmed.count <= 4 else { continue }
            let words = trimmed.split(separator: " ").map(String.init)
            var names = [words[0]]
            // "-b, --block-size <size>": the long form after the comma.
            if words[0].hasSuffix(","), words.count > 1 { names.append(words[1]) }
            names = names.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: ",")) }
            for n in names where n.hasPrefix("-") { out.insert(n) }
        }
        return out
    }

    /// Options a manual page documents for `sub` (nil: the whole page): the `.Op Fl`/`.Fl` lines
    /// of its SYNOPSIS entry and the `.It Fl` lines of its section.
    static func manualOptions(_ page: String, sub: String?) -> Set<String> {
        let lines = page.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var chosen: [String] = []
        var section = "", inEntry = sub == nil
        for line in lines {
            if line.hasPrefix(".Sh ") { section = String(line.dropFirst(4)); inEntry = sub == nil; continue }
            if section == "SYNOPSIS" {
                if let s = sub {
                    if line.hasPrefix(".Cm ") { inEntry = line == ".Cm \(s)" } else if line == ".Nm" { inEntry = false }
                }
                if inEntry && (line.hasPrefix(".Op Fl") || line.hasPrefix(".Fl")) { chosen.append(line) }
            } else if let s = sub {
                if line.hasPrefix(".Ss ") { inEntry = line == ".Ss \(s)" }
                if inEntry && line.hasPrefix(".It Fl") { chosen.append(line) }
            } else if line.hasPrefix(".It Fl") && section == "OPTIONS" {
                chosen.append(line)
            }
        }
        var out = Set<String>()
        for line in chosen {
            let words = line.split(separator: " ").map(String.init)
            for (i, w) in words.enumerated() where (w == "Fl" || w == ".Fl") && i + 1 < words.count {
                let arg = words[i + 1]
                if arg.hasPrefix("-") {
                    out.insert("-" + arg)  // Fl -level: --level
                } else if arg.count > 1 && arg.allSatisfy({ $0.isLetter }) && words.first == ".Op" {
                    for c in arg { out.insert("-\(c)") }  // Op Fl fpq: -f -p -q
                } else {
                    out.insert("-" + arg)  // Fl b: -b
                }
                // ".It Fl b , -block-size": the long form after the comma.
                if i + 3 < words.count, words[i + 2] == ",", words[i + 3].hasPrefix("-") {
                    out.insert("-" + words[i + 3])
                }
            }
        }
        return out
    }
}
