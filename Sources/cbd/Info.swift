import ArgumentParser
import CBDCLI
import CBDFormat

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show sizes, usage, compression and contents of a CBD device (like qemu-img info).")
    @Argument(help: "CBD device or image.") var device: String
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        try ToolRunner.run("cbd") {
            let dev = try FileDevice(path: device, mode: .readOnly)
            let report = try DeviceInfo.report(dev)
            print(json ? report.json() : report.text(), terminator: json ? "\n" : "")
        }
    }
}
