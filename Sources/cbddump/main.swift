// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDFormat
import CBDDevice
import CBDInspect

/// cbddump: show what is inside a CBD device, in the manner of dumpe2fs and xfs_db.
struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cbddump",
        abstract: "Print the header, a zone, a logical block or a physical block of a CBD device.",
        discussion: """
            With no option, prints the header and the derived geometry. A device whose header \
            is damaged still shows its fields and why they are wrong. \
            Exit status: 0 on success, 1 on an error (unreadable device, number out of range, \
            damaged header), 64 on a usage error.
            """,
        version: ToolVersion.line("cbddump"))

    @Argument(help: "The device or image file.", completion: .file()) var device: String
    @Option(help: "Show zone N: pblk ranges, bitmap usage, free extents, entries in use.") var zone: Int?
    @Option(help: "Show logical block N: zone, entry, class, length, ratio, pblks.") var lblk: Int?
    @Option(help: "Show what physical block N is and who owns it.") var pblk: Int?
    @Flag(help: "With --pblk, also print its bytes as a hex dump.") var hex = false
    @Flag(help: "Print JSON instead of text.") var json = false

    func validate() throws {
        if [
            zone, lblk,
            pblk
        ].compactMap({ $0 }).count > 1 {
            throw ValidationError("give one of --zone, --lblk and --pblk")
        }
        if hex && pblk == nil { throw ValidationError("--hex goes with --pblk") }
    }

    func run() throws {
        try ToolRunner.run("cbddump", json: json ? device : nil) {
            let inspector = try Inspector(device: try FileDevice(path: device, mode: .readOnly))
            let report: Report
            if let z = zone {
                report = try inspector.zoneReport(z)
            } else if let n = lblk {
                report = try inspector.lblkReport(n)
            } else if let p = pblk {
                report = try inspector.pblkReport(p, hex: hex)
            } else {
                report = inspector.headerReport()
            }
            print(json ? report.json() : report.text(), terminator: json ? "\n" : "")
            // The header view of a damaged device is shown, but the exit status says it.
            if zone == nil && lblk == nil && pblk == nil, let p = inspector.problem {
                if !json { FileHandleStderr.write("cbddump: \(p)\n") }
                throw ExitCode(1)
            }
        }
    }
}

StandardOutputCheck.install(tool: "cbddump")
Dump.main(ToolVersion.arguments())
