// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import CBDDevice
import CBDLayout
import CBDInspect

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show sizes, usage, compression and contents of a CBD device (like qemu-img info).")
    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        try ToolRunner.run("cbd", json: json ? device : nil) {
            let report: Report
            do {
                report = try DeviceInfo.report(try FileDevice(path: device, mode: .readOnly))
            } catch let e as CBDError where e.kind == .busy {
                // Held by cbd serve: what the server publishes, live.
                guard let live = ServeStatus.read(for: device) else { throw e }
                report = DeviceInfo.liveReport(device, live)
            }
            print(json ? report.json() : report.text(), terminator: json ? "\n" : "")
        }
    }
}
