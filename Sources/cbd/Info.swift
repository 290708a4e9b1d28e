// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import CBDDevice
import CBDLayout
import CBDInspect
import CBDCheck

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show sizes, usage, compression and contents of a CBD device (like qemu-img info).")
    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @Flag(help: "Print JSON instead of text.") var json = false
    @Flag(help: "Also run a read-only check (as fsck.cbd -n) and say whether the device is consistent.")
    var check = false

    func run() throws {
        try ToolRunner.run("cbd", json: json ? device : nil) {
            let report: Report
            do {
                let verdict: DeviceInfo.Check? = check ? { try Checker.findsConsistent($0) } : nil
                report = try DeviceInfo.report(try FileDevice(path: device, mode: .readOnly), check: verdict)
            } catch let e as CBDError where e.kind == .busy {
                // Held by cbd serve: what the server publishes, live.
                guard let live = ServeStatus.read(for: device) else { throw e }
                report = DeviceInfo.liveReport(device, live)
            }
            print(json ? report.json() : report.text(), terminator: json ? "\n" : "")
        }
    }
}
