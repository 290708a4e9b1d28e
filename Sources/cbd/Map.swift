// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDCLI
import CBDDevice
import CBDInspect

/// cbd map: every run of lblks and where its blocks are, as `qemu-img map`.
struct MapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "Show where the device's blocks are: runs of unallocated, raw and compressed lblks.",
        discussion: """
            Each run: its logical offset and length in bytes, its state, and for allocated runs \
            the first pblk, how many pblks its blocks take and whether they follow each other. \
            Runs are merged as long as the state stays and the pblks continue. --json prints one \
            array of objects (numbers as numbers).
            """)

    @Argument(help: "CBD device or image.", completion: .file()) var device: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        try ToolRunner.run("cbd", json: json ? device : nil) {
            let map = try BlockMap(device: try FileDevice(path: device, mode: .readOnly))
            let size = map.geometry.lblkSize
            if json {
                print("[", terminator: "")
            } else {
                print("Offset              Length              State         First pblk      Pblks  Contiguous")
            }
            var first = true
            try map.forEachRun { r in
                if json {
                    var fields = [
                        "\"start\": \(r.lblk * size)", "\"length\": \(r.count * size)",
                        "\"lblk\": \(r.lblk)", "\"blocks\": \(r.count)", "\"state\": \"\(r.state.rawValue)\""
                    ]
                    if let p = r.firstPblk {
                        fields += ["\"pblk\": \(p)", "\"pblks\": \(r.pblks)", "\"contiguous\": \(r.contiguous)"]
                    }
                    print((first ? "\n" : ",\n") + "{ " + fields.joined(separator: ", ") + " }", terminator: "")
                } else {
                    let pblk = r.firstPblk.map { String($0) } ?? "-"
                    let pad = { (s: String, w: Int) in s + String(repeating: " ", count: max(1, w - s.count)) }
                    print(
                        pad("0x" + String(r.lblk * size, radix: 16), 20)
                            + pad("0x" + String(r.count * size, radix: 16), 20)
                            + pad(r.state.rawValue, 14) + pad(pblk, 16)
                            + pad(r.firstPblk == nil ? "-" : "\(r.pblks)", 7)
                            + (r.firstPblk == nil ? "-" : r.contiguous ? "yes" : "no"))
                }
                first = false
            }
            if json { print("\n]") }
        }
    }
}
