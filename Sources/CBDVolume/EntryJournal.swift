// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
/// Writes new table entries so that a crash leaves each one old or new.
///
/// An entry inside one table pblk is written with that pblk, in one write. An entry that
/// straddles two table pblks would be written by two, and a crash between them would leave a
/// well-formed mix of old and new slots. Such entries are saved first (format 1.1's intent
/// record, `Intent`): in the header itself when they fit (every block size below 4 MiB: no
/// free pblk is needed, so this works on a full device), else in free data pblks (the
/// journal, synced) that the header then names. The header is synced, the tables are written
/// (synced), and the intent is cleared. A crash in between is repaired by `replay`, which
/// writes the saved entries again.
package struct EntryJournal {
    let device: BlockDevice
    let geometry: Geometry

    package init(device: BlockDevice, geometry: Geometry) {
        self.device = device
        self.geometry = geometry
    }

    /// Whether lblk `n`'s entry crosses a table pblk boundary.
    func straddles(_ n: Int) -> Bool {
        let first = geometry.entryOffset(ofLblk: n)
        return first / Units.pblkSize != (first + geometry.entryLen - 1) / Units.pblkSize
    }

    /// Whether entries of this geometry are too large for the header and need journal pblks.
    var needsJournalPblks: Bool { Intent.inlineRecords(entryLen: geometry.entryLen) == 0 }

    /// Journal pblks one record needs when it cannot go inline (0 when it can).
    package var pblksPerRecord: Int {
        needsJournalPblks ? (Intent.recordBytes(entryLen: geometry.entryLen) + Units.pblkSize - 1) / Units.pblkSize : 0
    }

    /// Writes `entries` (lblk, encoded entry) through `meta` and syncs, journaling the ones
    /// that straddle. When they do not fit inline, `reserve(k)` gives k data pblks no entry
    /// names (nil: none left), at most `roundPblks` at a time, and `release` gives them back
    /// once the intent is cleared. On return the header no longer holds an intent, but that last
    /// header write is not synced: the caller's next sync makes it durable, and no journal pblk
    /// is written again before that sync. `published` turns true just before the first write
    /// that can make any entry change (an intent, or a table pblk): a failure before it changed
    /// nothing a reader or a replay sees.
    package func write(
        _ entries: [(lblk: Int, bytes: [UInt8])], meta: MetadataCache, header: inout Header,
        roundPblks: Int = Intent.maxJournalPblks, published: UnsafeMutablePointer<Bool>? = nil,
        reserve: (Int) throws -> [Pblk]?, release: ([Pblk]) throws -> Void
    ) throws {
        let straddling = entries.filter { straddles($0.lblk) }
        var rounds = chunks(straddling, roundPblks: roundPblks)
        if rounds.isEmpty { rounds = [[]] }
        for (r, round) in rounds.enumerated() {
            var journal: [Pblk] = []
            if !round.isEmpty {
                let payload = Intent.payload(round)
                if needsJournalPblks {
                    let count = (payload.count + Units.pblkSize - 1) / Units.pblkSize
                    guard let pblks = try reserve(count) else {
                        throw CBDError(
                            "\(device.path): no space left on the device for the entry journal",
                            kind: .noSpace)
                    }
                    journal = pblks
                    try writePayload(payload, to: journal)
                    try device.sync()
                    header.intent = Intent(records: round.count, payloadBytes: payload.count, journal: journal)
                } else {
                    header.intent = Intent(records: round.count, inline: payload)
                }
                published?.pointee = true
                try device.writeHeader(header)
                try device.sync()
            }
            // The first round also carries every entry that does not straddle.
            let now = r == 0 ? entries.filter { !straddles($0.lblk) } + round : round
            published?.pointee = true
            for (n, bytes) in now { try meta.setEntryBytes(n, bytes) }
            try meta.writeDirtyTables()
            try device.sync()
            if !round.isEmpty {
                header.intent = nil
                try device.writeHeader(header)
                if r < rounds.count - 1 { try device.sync() }
                if !journal.isEmpty { try release(journal) }
            }
        }
    }

    /// Straddling entries in groups whose payload fits one intent's journal.
    private func chunks(_ entries: [(lblk: Int, bytes: [UInt8])], roundPblks: Int) -> [[(lblk: Int, bytes: [UInt8])]] {
        let record = Intent.recordBytes(entryLen: geometry.entryLen)
        let perRound =
            needsJournalPblks
            ? max(1, min(roundPblks, Intent.maxJournalPblks) * Units.pblkSize / record)
            : Intent.inlineRecords(entryLen: geometry.entryLen)
        return stride(from: 0, to: entries.count, by: perRound).map {
            Array(entries[$0..<min($0 + perRound, entries.count)])
        }
    }

    private func writePayload(_ payload: [UInt8], to journal: [Pblk]) throws {
        for (i, p) in journal.enumerated() {
            var block = [UInt8](repeating: 0, count: Units.pblkSize)
            let piece = payload[i * Units.pblkSize..<min(payload.count, (i + 1) * Units.pblkSize)]
            block.replaceSubrange(0..<piece.count, with: piece)
            try device.writePblks(block, at: Int(p))
        }
    }

    /// Completes an interrupted entry write: every saved entry is written again, synced, and
    /// the intent cleared (the device stays DIRTY for the check that follows). Returns the
    /// lblks replayed. An intent that does not fit the geometry is refused, changing nothing.
    ///
    /// The entries are written through `meta` (a fresh cache when the caller has none), the
    /// one path by which table bytes reach the device, so no cached page is left stale.
    package func replay(header: inout Header, through meta: MetadataCache? = nil) throws -> [Int] {
        guard let intent = header.intent else { return [] }
        let records = try saved(intent)
        let cache = meta ?? MetadataCache(device: device, geometry: geometry)
        for (n, bytes) in records { try cache.setEntryBytes(n, bytes) }
        try cache.writeDirtyTables()
        try device.sync()
        header.intent = nil
        try device.writeHeader(header)
        try device.sync()
        return records.map(\.lblk)
    }

    /// The entries an intent saved, read from its journal and checked against the geometry.
    package func saved(_ intent: Intent) throws -> [(lblk: Int, bytes: [UInt8])] {
        let g = geometry
        func corrupt(_ why: String) -> CBDError {
            CBDError("\(device.path): corrupt intent record in the header: \(why)", hint: .check)
        }
        if let p = intent.journal.first(where: { $0 > UInt64(Int.max) || g.dataZone(ofPblk: Int($0)) == nil }) {
            throw corrupt("journal names pblk \(p), not a data pblk")
        }
        var payload = intent.inlinePayload
        for p in intent.journal { payload += try device.readPblks(Int(p)) }
        payload.removeLast(payload.count - intent.payloadBytes)
        guard let records = Intent.records(payload, count: intent.records, entryLen: g.entryLen) else {
            throw corrupt("\(intent.records) records do not fill \(intent.payloadBytes) bytes")
        }
        if let r = records.first(where: { $0.lblk >= UInt64(g.nrLblk) }) {
            throw corrupt("a record names logical block \(r.lblk), past the end")
        }
        return records.map { (Int($0.lblk), $0.bytes) }
    }
}
