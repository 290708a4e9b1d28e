// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// Pass 0's repairs of pblk 0 itself (found by `Checker.init` through `HeaderRecovery`): a
/// header found again from the zones is written, reserved bytes are cleared, a truncated
/// image is grown back to the size its header gives and the blocks whose entries or data lay
/// past the cut are named. Written first of all the repairs, before DIRTY is ever cleared.
extension Checker {
    func checkHeaderFinding() throws {
        guard let finding = headerFinding else { return }
        var f = facts()
        switch finding {
        case .reservedBytes(let offset):
            f.detail = "\(offset)"
            headerNeedsWrite = decide(Problem(.headerReserved, f))
        case .lost(let reason, let c):
            f.detail = "\(reason); the zones fit \(c.evidence)"
            headerNeedsWrite = decide(Problem(.headerLost, f))
            if !headerNeedsWrite && options.mode != .readOnly { stoppedForPerson = true }
        case .deviceShort(let has):
            // Entries that lay past the cut read as zeros now: their blocks are lost.
            let lost = lblksWithEntriesPast(has)
            f.detail = "\(has) bytes of the \(geometry.physicalBytes)"
            f.others = lost
            f.pblks = []
            let fix = decide(Problem(.deviceShort, f, suspectLblks: lost))
            if !fix && options.mode != .readOnly { stoppedForPerson = true }
            growBack = fix
        }
    }

    /// The lblks whose entries lie at or past byte `end` of the device.
    private func lblksWithEntriesPast(_ end: Int) -> [Int] {
        let g = geometry
        var out: [Int] = []
        for z in 0 ..< g.nrZones where g.tablePblks(z).upperBound * Units.pblkSize > end {
            for n in g.lblks(inZone: z) where g.entryOffset(ofLblk: n) + g.entryLen > end { out.append(n) }
        }
        return out
    }

    /// The header's own repairs, first: the file grown back, the header written (DIRTY).
    func writeHeaderRepairs() throws {
        if growBack { try device.setSize(geometry.physicalBytes); modified = true }
        if headerNeedsWrite {
            header.isDirty = true
            try device.writeHeader(header)
            try device.sync()
            modified = true
        }
    }
}
