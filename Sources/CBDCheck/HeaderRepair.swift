// SPDX-License-Identifier: Apache-2.0
import CBDFormat

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
            f.detail =
                "\(has) bytes of the \(geometry.physicalBytes) its header gives (a truncated image)"
                + (lost.isEmpty
                    ? ""
                    : "; the entries of logical blocks \(lost.lowerBound)-\(lost.upperBound - 1) "
                        + "(bytes \(lost.lowerBound * geometry.lblkSize)-\(lost.upperBound * geometry.lblkSize - 1)) were past the cut")
            let named = lost.count <= Self.namedLblksLimit ? Array(lost) : []
            let fix = decide(Problem(.deviceShort, f, suspectLblks: named))
            if !fix && options.mode != .readOnly { stoppedForPerson = true }
            growBack = fix
        }
    }

    /// The lblks whose entries lie at or past byte `end` of the device: one run to the last lblk,
    /// since zones, and the entries in each, follow each other on the device.
    private func lblksWithEntriesPast(_ end: Int) -> Range<Int> {
        let g = geometry
        for z in 0..<g.nrZones where g.tablePblks(z).upperBound * Units.pblkSize > end {
            let base = g.entryOffset(zone: z, index: 0)
            let first = max(0, (end - base) / g.entryLen)  // the first entry not wholly before `end`
            return min(g.nrLblk, (z << g.lblkPerZoneShift) + first)..<g.nrLblk
        }
        return g.nrLblk..<g.nrLblk
    }

    /// Named one by one (JSON `suspect_lblks`) up to this many; a longer run only in the message.
    static let namedLblksLimit = 1 << 20

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
