// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDVolume

/// Pass 3: data that no entry names. Pass 2 finds pblks marked in use that no entry claims;
/// those that hold only zeros are freed there, the others are orphans, handled here: data
/// is never freed before it is accounted for or saved.
///
/// A lost entry (a table pblk zeroed, an entry cleared as malformed) leaves its block's data
/// orphaned between the data of its surviving neighbours, because every writer lays a zone
/// out in lblk order. Where the orphans of such a gap split into exactly as many blocks as
/// the gap has lblks whose entries were lost (they read as zero in a table pblk that is all
/// zeros, or were cleared by this run), each block goes back to its lblk, in order (Relink).
/// Every other orphan is saved to the lost+found folder, one file per block, and then freed
/// (Save); the lblks that may have held it are named (those whose entries were lost, and those
/// pass 1B found sharing pblks). Without a folder it stays in use.
extension Checker {
    /// A run of orphaned data pblks, and the pieces it splits into.
    struct Gap {
        /// The live lblks around the gap, in pblk order (nil: the start or end of the zone).
        var before: Int?, after: Int?
        var runs: [Range<Int>] = []
        var pieces: [OrphanPiece] = []
    }

    func pass3() throws {
        let zones = Dictionary(grouping: orphanRuns) { geometry.dataZone(ofPblk: $0.lowerBound) ?? -1 }
        // Its buffer is two blocks (2 GiB with 1 GiB blocks): made only for a device with orphans.
        lazy var parser = OrphanParser(device: device, geometry: geometry)
        for (i, z) in zones.keys.sorted().enumerated() where z >= 0 && !stop {
            options.progress?(.orphans, i + 1, zones.count)
            let live = try liveBlocks(ofZone: z)
            // A block's place is certain only in a zone laid out in lblk order (a sequential
            // writer's: convert, resize, a sequential Volume); elsewhere orphans are saved.
            let inOrder = zip(live, live.dropFirst()).allSatisfy { $0.lblk < $1.lblk }
            for var gap in gaps(zones[z] ?? [], live: live) where !stop {
                gap.pieces = try gap.runs.flatMap { try parser.pieces(of: $0) }
                let lost = try lostLblks(
                    zone: z, between: inOrder ? gap.before : nil, inOrder ? gap.after : nil,
                    wholeZone: !inOrder)
                if try !(inOrder && relink(gap, lost: lost, zone: z)) { save(gap, lost: lost, zone: z) }
            }
        }
    }

    /// Zone `z`'s allocated lblks whose data lies in its own data area, as they will be once
    /// the repairs are written: (first pblk, lblk), sorted by pblk.
    private func liveBlocks(ofZone z: Int) throws -> [(pblk: Int, lblk: Int)] {
        let area = geometry.dataStart(z)..<geometry.dataEnd(z)
        var live: [(pblk: Int, lblk: Int)] = []
        let scanner = TableScanner(device: device, geometry: geometry)
        try scanner.forEachEntry(zone: z, buffer: scanner.makeBuffer()) { n, p in
            guard newEntries[n] == nil, let e = try? codec.decode(p) else { return }
            if let first = e.pblks.first, area.contains(Int(first)) { live.append((Int(first), n)) }
        }
        for (n, r) in newEntries where geometry.zone(ofLblk: n) == z {
            if let first = r.entry.pblks.first, area.contains(Int(first)) { live.append((Int(first), n)) }
        }
        return live.sorted { $0.pblk < $1.pblk }
    }

    /// The orphan runs of one zone grouped by the live blocks around them.
    private func gaps(_ runs: [Range<Int>], live: [(pblk: Int, lblk: Int)]) -> [Gap] {
        var out: [Gap] = []
        for r in runs.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            // The first live block at or after the run (binary search on pblk).
            var lo = 0, hi = live.count
            while lo < hi { let m = (lo + hi) / 2; if live[m].pblk < r.lowerBound { lo = m + 1 } else { hi = m } }
            let before = lo > 0 ? live[lo - 1].lblk : nil, after = lo < live.count ? live[lo].lblk : nil
            if let last = out.last, last.before == before, last.after == after {
                out[out.count - 1].runs.append(r)
            } else {
                out.append(Gap(before: before, after: after, runs: [r]))
            }
        }
        return out
    }

    /// The lblks of zone `z` between `before` and `after` (the whole zone when those are not
    /// in lblk order, or with `wholeZone`) whose entries were lost: cleared by this run, or
    /// zero with a table pblk of theirs all zeros. In lblk order.
    private func lostLblks(zone z: Int, between before: Int?, _ after: Int?, wholeZone: Bool) throws -> [Int] {
        let zone = geometry.lblks(inZone: z)
        var range = zone
        if !wholeZone && (before ?? Int.min) < (after ?? Int.max) {
            range = max(zone.lowerBound, (before ?? -1) + 1)..<min(zone.upperBound, after ?? zone.upperBound)
        }
        guard !range.isEmpty else { return [] }
        var lost = Set(newEntries.compactMap { n, r in range.contains(n) && r.entry == .unallocated ? n : nil })
        let entryLen = geometry.entryLen, pblk = Units.pblkSize
        let firstByte = geometry.entryOffset(ofLblk: range.lowerBound)
        let endByte = geometry.entryOffset(ofLblk: range.upperBound - 1) + entryLen
        let buffer = ByteBuffer(count: 256 * pblk)
        let tableStart = geometry.entryOffset(zone: z, index: 0)
        var t = firstByte / pblk
        while t * pblk < endByte {
            let count = min(256, (endByte + pblk - 1) / pblk - t)
            try device.read(into: buffer[0..<count * pblk], at: t * pblk)
            for j in 0..<count where isAllZero(buffer.base + j * pblk, pblk) {
                // The entries that touch table pblk t + j.
                let start = (t + j) * pblk - tableStart, end = start + pblk
                let i0 = max(0, start / entryLen), i1 = min(geometry.lblkPerZone, (end + entryLen - 1) / entryLen)
                for i in i0..<i1 {
                    let n = z << geometry.lblkPerZoneShift + i
                    // An entry inside the zero pblk is zero; only one that straddles it is read.
                    let inside = i * entryLen >= start && (i + 1) * entryLen <= end
                    if range.contains(n) && !keptBad.contains(n) && newEntries[n] == nil && (inside || isZeroEntry(n)) {
                        lost.insert(n)
                    }
                }
            }
            t += count
        }
        return lost.sorted()
    }

    /// Whether lblk `n`'s entry reads as all zeros on the device.
    private func isZeroEntry(_ n: Int) -> Bool {
        var bytes = [UInt8](repeating: 0, count: geometry.entryLen)
        let ok = (try? bytes.withUnsafeMutableBytes { try device.read(into: $0, at: geometry.entryOffset(ofLblk: n)) })
        return ok != nil && bytes.allSatisfy { $0 == 0 }
    }

    /// Puts each block of `gap` back in its lblk when that is certain: the zone is laid out in
    /// lblk order (the caller asks), the gap's neighbours too, and it holds only whole blocks,
    /// as many as `lost`. True when relinked.
    private func relink(_ gap: Gap, lost: [Int], zone z: Int) throws -> Bool {
        let inOrder = (gap.before ?? Int.min) < (gap.after ?? Int.max)
        let blocks: [AllocationEntry] = gap.pieces.compactMap {
            if case .block(let e) = $0 { return e } else { return nil }
        }
        guard inOrder, !lost.isEmpty, blocks.count == gap.pieces.count, blocks.count == lost.count else { return false }
        var f = facts(zone: z)
        f.pblks = gap.runs.flatMap { Array($0) }
        f.others = lost
        f.detail = Self.pblkRanges(gap.runs)
        guard decide(Problem(.orphansRelinked, f, suspectLblks: lost)) else { return false }
        for (n, e) in zip(lost, blocks) {
            newEntries[n] = .rewrite(e)
            for p in e.pblks { if let i = claims.index(Int(p)) { claims.claim(i) } }
            count(e)
        }
        return true
    }

    /// Saves the pieces of `gap` to lost+found and frees their pblks, or (no folder) keeps them.
    private func save(_ gap: Gap, lost: [Int], zone z: Int) {
        var f = facts(zone: z)
        f.pblks = gap.runs.flatMap { Array($0) }
        f.others = lost
        f.detail = Self.pblkRanges(gap.runs)
        f.blocks = gap.pieces.count
        let lostSet = Set(lost)
        f.crossLinked = crossLinkedLblks.filter { geometry.zone(ofLblk: $0) == z && !lostSet.contains($0) }.sorted()
        let problem = Problem(.orphanedData, f, suspectLblks: (lost + f.crossLinked).sorted())
        guard options.lostFound != nil || options.mode == .readOnly else { return keep(problem) }
        guard decide(problem) else { return }
        orphansToSave.append(contentsOf: gap.pieces)
        for r in gap.runs {
            for p in r {
                guard let i = claims.index(p), case .data(let zone, let k) = geometry.place(ofPblk: p) else { continue }
                claims.reserve(i)
                if bitmaps[zone].isSet(k) { bitmaps[zone].clear(k); changedBitmaps.insert(zone) }
            }
        }
    }

    /// Records a problem left as it is without asking (orphans with nowhere to save them).
    private func keep(_ p: Problem) {
        problems.append(p)
        options.report?(p)
    }

    /// Writes the orphans decided to lost+found, each file synced, before any pblk is freed.
    func saveOrphans() throws {
        guard !orphansToSave.isEmpty, let lostFound = options.lostFound else { return }
        let parser = OrphanParser(device: device, geometry: geometry)
        for piece in orphansToSave {
            let r = piece.pblks
            let name = r.count == 1 ? "pblk-\(r.lowerBound)" : "pblks-\(r.lowerBound)-\(r.upperBound - 1)"
            let what: String
            switch piece {
            case .block(.compressed(let len, _)):
                what = "compressed \(len) bytes, decoded to \(geometry.lblkSize) bytes"
            case .block: what = "raw block of \(geometry.lblkSize) bytes, as stored"
            case .fragment: what = "\(r.count * Units.pblkSize) bytes as stored (not a whole block)"
            }
            try parser.withSavedBytes(of: piece) { bytes in
                try lostFound.save(bytes, name: name, description: "pblks \(r.lowerBound)-\(r.upperBound - 1)\t\(what)")
            }
        }
        try lostFound.finish()
        orphansToSave.removeAll()
    }

    /// "70-136,140" for runs of pblks.
    static func pblkRanges(_ runs: [Range<Int>]) -> String {
        let shown = runs.prefix(8).map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound - 1)" }
        return shown.joined(separator: ",") + (runs.count > 8 ? " and \(runs.count - 8) more ranges" : "")
    }
}
