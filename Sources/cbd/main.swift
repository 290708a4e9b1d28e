import ArgumentParser
import CBDFormat

/// cbd: the umbrella for everything but mkfs, fsck and dump.
struct Cbd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cbd",
        abstract: "Work with compressed block devices (CBD).",
        discussion: "Exit status: 0 on success, 1 on failure, 64 on a usage error.",
        subcommands: [Convert.self, Info.self, Resize.self, UndoCommand.self, Read.self, Write.self, Discard.self])
}

/// Runs a tool body, turning a CBDError into one line on stderr and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as CBDError {
        FileHandleStderr.write("cbd: \(e)\n")
        throw ExitCode(1)
    }
}

/// Parses a size argument or fails with a usage error naming the option.
func parseSize(_ text: String, _ name: String) throws -> Int {
    guard let v = ByteSize.parse(text) else { throw ValidationError("\(name): invalid size '\(text)'") }
    return v
}

Cbd.main()
