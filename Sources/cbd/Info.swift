// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import CBDDevice
import CBDLayout
import CBDCheck
import CBDInspect

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show sizes, usage, compression and contents of a CBD device (like qemu-img info).")
    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        try ToolRunner.run("cbd") {
            do {
                let report: Report
                do {
                    report = try DeviceInfo.report(try FileDevice(path: device, mode: .readOnly))
                } catch let e as CBDError where e.kind == .busy {
                    // Held by cbd serve: what the server publishes, live.
                    guard let live = ServeStatus.read(for: device) else { throw e }
                    report = DeviceInfo.liveReport(device, live)
                }
                print(json ? report.json() : report.text(), terminator: json ? "\n" : "")
            } catch where json {
                // A script asked for JSON: it gets JSON, an error object, as from fsck.cbd --json.
                let line = ToolRunner.message(for: error) ?? "\(error)"
                print(JSON.line(["device": device, "error": line, "exit_code": 1]))
                throw error
            }
        }
    }
}
