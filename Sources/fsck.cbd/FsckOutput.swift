// SPDX-License-Identifier: Apache-2.0
import CBDCLI
import CBDFormat
import CBDCheck

/// What fsck.cbd prints: e2fsck-style lines as it goes, or one JSON object at the end.
struct FsckOutput {
    let device: String
    let json: Bool
    private var problems: [Problem] = []
    private var lastPass: CheckPass?
    /// The problem just decided was asked on the terminal: its line is already there.
    var asked = false

    init(device: String, json: Bool) {
        self.device = device
        self.json = json
    }

    func line(_ s: String) { if !json { print(s) } }

    mutating func problem(_ p: Problem) {
        problems.append(p)
        defer { asked = false }
        guard !json, !asked else { return }
        heading(for: p)
        print("\(p.message).  \(p.action)? \(p.fixed ? "yes" : "no")")
    }

    /// Prints the pass heading when a problem of a new pass comes up.
    mutating func heading(for p: Problem) { heading(for: p.kind.pass) }

    /// Prints a pass heading once (with -v every pass is shown as it starts).
    mutating func heading(for pass: CheckPass) {
        guard !json, pass != lastPass else { return }
        print(pass.heading)
        lastPass = pass
    }

    /// A line of advice on standard error (so that --json output stays one object).
    func note(_ message: String) { FileHandleStderr.write("fsck.cbd: \(message)\n") }

    func fatal(_ message: String) {
        if json {
            emit(["device": device, "error": message, "exit_code": 8])
        } else {
            FileHandleStderr.write("fsck.cbd: \(message)\n")
        }
    }

    func finishClean() {
        if json { emit(["device": device, "clean": true, "checked": false, "problems": [], "exit_code": 0]) }
    }

    func finish(_ c: Checker) {
        let g = c.geometry
        let s = c.stats
        let unallocated = g.nrLblk - s.compressed - s.raw
        let found = c.problems.count, fixed = c.problems.filter(\.fixed).count
        let ratio = s.compressionRatio(lblkSize: g.lblkSize)
        if json {
            emit([
                "device": device,
                "checked": true,
                "problems": c.problems.map(describe),
                "summary": [
                    "data_pblks": g.totalDataPblks, "used_pblks": s.usedPblks,
                    "blocks": g.nrLblk, "compressed": s.compressed, "raw": s.raw, "unallocated": unallocated,
                    "compression_ratio": (ratio * 100).rounded() / 100,
                    "problems_found": found, "problems_fixed": fixed
                ] as [String: Any],
                "modified": c.modified,
                "cancelled": c.cancelled,
                "exit_code": Int(c.exitCode)
            ])
            return
        }
        if c.stoppedForPerson {
            print("\n\(device): UNEXPECTED INCONSISTENCY; RUN fsck.cbd MANUALLY.\n\t(i.e., without -a or -p options)")
        }
        if c.cancelled { print("\(device): cancelled; nothing was written") }
        guard !c.stoppedForPerson && !c.cancelled else { return }
        if c.modified { print("\n\(device): ***** DEVICE WAS MODIFIED *****") }
        print(
            "\(device): \(s.usedPblks)/\(g.totalDataPblks) data pblks used, \(g.nrLblk) blocks "
                + "(\(s.compressed) compressed, \(s.raw) raw, \(unallocated) unallocated), compression ratio "
                + "\(String(format2: ratio))")
        print("\(device): \(found) problem\(found == 1 ? "" : "s") found, \(fixed) fixed")
        // Pblk 0's problems leave every other tool refusing the device: say what repairs it.
        let header = c.problems.filter { !$0.fixed && [.headerLost, .deviceShort, .headerReserved].contains($0.kind) }
        if !header.isEmpty { print("\(device): to repair the header, run: fsck.cbd -fy \(device)") }
    }

    func describe(_ p: Problem) -> [String: Any] {
        var d: [String: Any] = ["kind": p.kind.rawValue, "message": p.message, "fixed": p.fixed]
        if let z = p.zone { d["zone"] = z }
        if let n = p.lblk { d["lblk"] = n }
        if !p.pblks.isEmpty { d["pblks"] = p.pblks }
        if !p.suspectLblks.isEmpty { d["suspect_lblks"] = p.suspectLblks }
        return d
    }

    func emit(_ object: [String: Any]) { print(JSON.line(object)) }
}
