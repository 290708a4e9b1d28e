import ArgumentParser
import CBDCLI
import CBDFormat

/// cbd: the umbrella for everything but mkfs, fsck and dump.
struct Cbd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cbd",
        abstract: "Work with compressed block devices (CBD).",
        discussion: "Exit status: 0 on success, 1 on failure, 64 on a usage error.",
        subcommands: [Convert.self, Info.self, Resize.self, UndoCommand.self, Read.self, Write.self, Discard.self])
}

Cbd.main()
