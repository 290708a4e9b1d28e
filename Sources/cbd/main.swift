// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import Glibc
import CBDCLI

/// cbd: the umbrella for everything but mkfs, fsck and dump.
struct Cbd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cbd",
        abstract: "Work with compressed block devices (CBD).",
        discussion: "Exit status: 0 on success, 1 on failure, 64 on a usage error.",
        version: ToolVersion.line("cbd"),
        subcommands: [
            Convert.self, Measure.self, Compare.self, MapCommand.self, ImageCommand.self, Info.self, Resize.self,
            UndoCommand.self, Read.self, Write.self, Discard.self,
            Serve.self
        ])
}

// No subcommand is a usage error, as is a word that names none (with the nearest one offered).
StandardOutputCheck.install(tool: "cbd")
let arguments = ToolVersion.arguments()
let names = Cbd.configuration.subcommands.map { $0._commandName } + ["help"]
if arguments.isEmpty {
    FileHandleStderr.write("Usage: " + Cbd.usageString() + "\n  See 'cbd --help'.\n")
    exit(64)
}
if let word = arguments.first, !word.hasPrefix("-"), !names.contains(word) {
    let hint = Suggestion.nearest(word, among: names).map { "; did you mean '\($0)'?" } ?? ""
    FileHandleStderr.write("cbd: unknown command '\(word)'\(hint)\n  See 'cbd --help'.\n")
    exit(64)
}
Cbd.main(arguments)
