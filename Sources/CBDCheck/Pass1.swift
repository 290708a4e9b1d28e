// SPDX-License-Identifier: Apache-2.0
import Dispatch
import CBDFormat
import CBDVolume
/// Pass 1: every zone's table, on all cores, in large sequential reads.
extension Checker {
    /// Finds the zones that hold metadata and reads their bitmaps (see `ZoneBitmaps`).
    func readBitmaps() throws {
        try bitmaps.load(from: device)
    }

    /// What a worker found in one zone's table.
    struct ZoneScan {
        /// Claims on the zone's own data pblks, gathered here (nil with -c, which reads every
        /// entry's data and goes entry by entry).
        var claims: ZoneClaims?
        /// What the entries in `claims` add to the statistics.
        var gathered = CheckStats()
        /// Good entries that are not in `claims`: they name another zone's pblks (or -c).
        var ok: [(lblk: Int, entry: AllocationEntry)] = []
        var bad: [(problem: Problem, keptPblks: [Int])] = []
        var paddingDirty = false
    }

    /// Zones scanned ahead of the merge, per worker: enough that a worker seldom waits for
    /// the merging thread to wake up (see `Parallel.pipeline`).
    static let zonesAheadPerWorker = 8

    func pass1() throws {
        // Per-worker buffers, allocated once: a table chunk, and for -c the compressed input
        // and output of a block (two blocks: with 1 GiB blocks no more workers than the memory
        // budget holds; without -c none is allocated).
        let blockBuffers = options.verifyData ? 2 * geometry.lblkSize : 0
        let workers =
            options.verifyData
            ? max(1, min(Parallel.workers, MemoryBudget.standard.bytes / blockBuffers)) : Parallel.workers
        let scratch = (0..<workers).map { _ in ByteBuffer(count: blockBuffers) }
        let tables = (0..<workers).map { _ in TableScanner(device: device, geometry: geometry).makeBuffer() }
        // Only zones that hold metadata have entries (the others' tables are holes).
        let zones = bitmaps.active
        let me = UncheckedBox(self)
        // Scans on all cores; merging (this thread, in zone order) overlaps them.
        try Parallel.pipeline(
            count: zones.count, workers: workers, window: workers * Self.zonesAheadPerWorker,
            produce: { w, i in try me.value.scanZone(zones[i], scratch: scratch[w], table: tables[w]) },
            consume: { i, scan in
                guard !stop else { return false }
                try merge(zone: zones[i], scan)
                options.progress?(.tables, i + 1, zones.count)
                return !stop
            })
    }

    /// Checks every entry of zone `z`, and its table padding. With `gather`, entries that stay
    /// in their zone are claimed in the scan's `ZoneClaims` (see there), not listed one by one.
    private func scanZone(
        _ z: Int, scratch: ByteBuffer, table: ByteBuffer,
        gather: Bool = true
    ) throws -> ZoneScan {
        var scan = ZoneScan()
        let claims =
            gather && options.gatherClaims && !options.verifyData && truncatedAt == nil ? ZoneClaims(zone: z) : nil
        scan.claims = claims
        let first = Pblk(geometry.dataStart(z)), count = Pblk(geometry.dataPblkCount(z)), nrLblk = geometry.nrLblk
        let scanner = TableScanner(device: device, geometry: geometry)
        if let claims {
            let codec = self.codec
            var gathered = CheckStats()
            try scanner.forEachChunk(zone: z, buffer: table) { lblk, entries, n in
                // Entries past the device's last lblk take the general path (it reports them).
                let inDevice = max(0, min(n, nrLblk - lblk))
                var acc = ZoneClaims.Accumulator(claims)
                defer { acc.flush() }
                func general(_ i: Int, _ p: UnsafeRawPointer) throws {
                    try checkEntry(lblk: lblk + i, at: p, zone: z, into: &scan, scratch: scratch)
                }
                // Literal widths for the common variants, so that the loop is specialized.
                switch (codec.lenBytes, codec.pblkBytes) {
                case (2, 4):
                    try Self.gather(
                        entries, n, inDevice, codec, lenBytes: 2, pblkBytes: 4, first: first, count: count,
                        &acc, &gathered, general)
                case (4, 4):
                    try Self.gather(
                        entries, n, inDevice, codec, lenBytes: 4, pblkBytes: 4, first: first, count: count,
                        &acc, &gathered, general)
                default:
                    try Self.gather(
                        entries, n, inDevice, codec, lenBytes: codec.lenBytes, pblkBytes: codec.pblkBytes,
                        first: first, count: count, &acc, &gathered, general)
                }
            }
            claims.claims = gathered.usedPblks
            scan.gathered = gathered
        } else {
            try scanner.forEachEntry(zone: z, buffer: table) { n, p in
                try checkEntry(lblk: n, at: p, zone: z, into: &scan, scratch: scratch)
            }
        }
        let padding = geometry.tablePadding(zone: z)
        if !padding.isEmpty {
            try device.read(into: table[0..<padding.count], at: padding.lowerBound)
            scan.paddingDirty = !isAllZero(table.base, padding.count)
        }
        return scan
    }

    /// The common case, without building an entry: each valid entry of a chunk whose pblks
    /// all lie in its own zone's data area (`first ..< first + count`) is claimed in `acc` and
    /// counted in `stats`; `general` gets the others that are not all zero (unallocated but
    /// dirty, bad, naming another zone's pblks, or among the last `n - inDevice`, past the
    /// device's end). Inlined where the widths are literals: the loop is the hot path of
    /// checking a densely written device.
    @inline(__always)
    private static func gather(
        _ entries: UnsafeRawPointer, _ n: Int, _ inDevice: Int, _ codec: borrowing EntryCodec,
        lenBytes: Int, pblkBytes: Int, first: Pblk, count: Pblk,
        _ acc: inout ZoneClaims.Accumulator, _ stats: inout CheckStats,
        _ general: (Int, UnsafeRawPointer) throws -> Void
    ) rethrows {
        let entryLen = codec.entryLen
        var i = 0
        while i < n {
            i = claimWhileCommon(
                entries, from: i, to: inDevice, codec, lenBytes: lenBytes, pblkBytes: pblkBytes,
                first: first, count: count, &acc, &stats)
            guard i < n else { break }
            let p = entries + i * entryLen
            if !isAllZero(p, entryLen) { try general(i, p) }
            i += 1
        }
    }

    /// Claims the entries from `i` on that take the common path, skipping all-zero ones, and
    /// returns the index of the first that does not (or `end`). No call inside, so that the
    /// loop keeps its state in registers.
    @inline(__always)
    private static func claimWhileCommon(
        _ entries: UnsafeRawPointer, from i: Int, to end: Int,
        _ codec: borrowing EntryCodec, lenBytes: Int, pblkBytes: Int,
        first: Pblk, count: Pblk,
        _ acc: inout ZoneClaims.Accumulator, _ stats: inout CheckStats
    ) -> Int {
        let entryLen = codec.entryLen, raw = codec.rawLength
        var a = acc
        var i = i, p = entries + i * entryLen, compressed = 0, rawBlocks = 0, used = 0
        // Entries that continue each other's runs (a sequential writer's) are claimed as one.
        var runStart = 0, runEnd = 0
        defer {
            a.claim(run: runStart, runEnd &- runStart)
            acc = a
            stats.compressed += compressed
            stats.raw += rawBlocks
            stats.usedPblks += used
        }
        while i < end {
            if let r = codec.run(p, within: first, count: count, lenBytes: lenBytes, pblkBytes: pblkBytes) {
                let k = Int(truncatingIfNeeded: r.start &- first)
                if k != runEnd {
                    a.claim(run: runStart, runEnd &- runStart)
                    runStart = k
                    runEnd = k
                }
                runEnd &+= r.used
                used &+= r.used
            } else if let u = codec.usedSlots(p, within: first, count: count, lenBytes: lenBytes, pblkBytes: pblkBytes)
            {
                let q = p + lenBytes
                for s in 0..<u { a.claim(Int(truncatingIfNeeded: LE.get(q + s &* pblkBytes, pblkBytes) &- first)) }
                used &+= u
            } else if isAllZero(p, entryLen) {
                i &+= 1
                p += entryLen
                continue
            } else {
                break
            }
            if Int(LE.get(p, lenBytes)) == raw { rawBlocks &+= 1 } else { compressed &+= 1 }
            i &+= 1
            p += entryLen
        }
        return i
    }

    private func checkEntry(
        lblk n: Int, at p: UnsafeRawPointer, zone z: Int, into scan: inout ZoneScan,
        scratch: ByteBuffer
    ) throws {
        let g = geometry
        func bad(_ kind: ProblemKind, _ detail: String = "") {
            // Slots that name data pblks: what a kept (not cleared) bad entry still holds.
            let named = (0..<codec.slots).map { Int(codec.slot($0, at: p)) }
                .filter { $0 != 0 && g.dataZone(ofPblk: $0) != nil }
            var f = facts(lblk: n, zone: z)
            f.detail = detail
            f.pblks = named
            let problem = Problem(kind, f, suspectLblks: n < g.nrLblk ? [n] : [])
            scan.bad.append((problem, named))
        }
        guard n < g.nrLblk else { return bad(.entryBeyondSize) }
        let entry: AllocationEntry
        do { entry = try codec.decodeChecked(p) } catch {
            if case .outsideData(let pblk) = error { return bad(.slotOutsideData, "\(pblk)") }
            return bad(.malformedEntry, "\(error)")
        }
        if let end = truncatedAt, let p = entry.pblks.first(where: { Int($0) >= end }) {
            return bad(.dataPastEnd, "\(p)")
        }
        if options.verifyData, case .compressed(let len, let pblks) = entry,
            try !device.decompresses(lblk: n, length: len, pblks: pblks, lblkSize: g.lblkSize, scratch: scratch.base)
        {
            return bad(.corruptData)
        }
        scan.ok.append((n, entry))
    }

    /// Folds a zone's scan into the claims, deciding each problem in lblk order. Gathered
    /// claims go in a word at a time; when one of them is unmarked in the zone's bitmap, pass 2
    /// must name its owner, and when a pblk is named twice in the zone, pass 1B must name both:
    /// then the zone is scanned again entry by entry (a damaged zone only).
    private func merge(zone z: Int, _ scan: ZoneScan) throws {
        var scan = scan
        if let zc = scan.claims {
            if zc.namesSomePblkTwice || zc.claimsUnmarked(in: bitmaps[z]) {
                rescannedZones += 1
                scan = try scanZone(
                    z, scratch: ByteBuffer(count: options.verifyData ? 2 * geometry.lblkSize : 0),
                    table: TableScanner(device: device, geometry: geometry).makeBuffer(), gather: false)
            } else {
                for p in claims.fold(zc) { duplicates.insert(p) }
                stats.compressed += scan.gathered.compressed
                stats.raw += scan.gathered.raw
                stats.usedPblks += scan.gathered.usedPblks
            }
        }
        // Two lists in lblk order, merged: problems and good entries.
        var b = 0, o = 0
        while !stop && (b < scan.bad.count || o < scan.ok.count) {
            if b < scan.bad.count && (o == scan.ok.count || scan.bad[b].problem.lblk ?? 0 <= scan.ok[o].lblk) {
                let (problem, kept) = scan.bad[b]
                let n = problem.lblk ?? 0
                b += 1
                if decide(problem) {
                    newEntries[n] = .clear
                    // Named on disk until the entry is cleared: not to be reused before.
                    for p in kept { if let i = claims.index(p) { claims.reserve(i) } }
                } else {
                    claim(kept, lblk: n)
                    keptBad.insert(n)
                }
            } else {
                let (n, entry) = scan.ok[o]
                o += 1
                count(entry)
                claim(entry.pblks, lblk: n)
            }
        }
        if scan.paddingDirty && !stop {
            if decide(Problem(.tablePadding, facts(zone: z))) { clearPadding.insert(z) }
        }
    }

    /// Whether a compressed block's bytes decompress to exactly one logical block.
    /// `scratch` holds two logical blocks: the stored bytes, then the output.
}
