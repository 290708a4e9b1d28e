import ArgumentParser
import CBDFormat

/// Not yet implemented: answers --help and says so.
struct Tool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck.cbd", abstract: "Not yet implemented.")
    @Argument(help: "The device or image file.") var device: String?
    func run() throws {
        FileHandleStderr.write("fsck.cbd: not yet implemented\n")
        throw ExitCode(8)
    }
}
Tool.main()
