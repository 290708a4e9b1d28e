import ArgumentParser
import CBDFormat

/// Not yet implemented: answers --help and says so.
struct Tool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cbddump", abstract: "Not yet implemented.")
    @Argument(help: "The device or image file.") var device: String?
    func run() throws {
        FileHandleStderr.write("cbddump: not yet implemented\n")
        throw ExitCode(8)
    }
}
Tool.main()
