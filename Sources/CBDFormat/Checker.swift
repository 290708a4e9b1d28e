/// fsck for CBD devices: verifies every consistency rule of format-v1 and repairs what it
/// finds, keeping every byte that can be kept.
///
/// Pass 1 reads each zone's table in large sequential reads on all cores, checks every
/// entry and records which data pblks are claimed; pass 1B finds the owners of pblks
/// claimed twice and clones them; pass 2 compares each zone's bitmap with the claims.
/// Repairs are decided as problems are found and written at the end in copy-on-write order:
/// cloned data, then entries, then bitmaps, then the header's DIRTY flag.
public final class Checker {
    public enum Mode: Sendable { case readOnly, fixAll, preen, interactive }
    public enum Answer: Sendable { case yes, no, all, quit }

    public struct Options {
        public var mode: Mode = .readOnly
        /// -c: decompress every compressed block.
        public var verifyData = false
        /// Asked per problem in interactive mode.
        public var ask: ((Problem) -> Answer)?
        /// Called with each problem as it is decided (for printing as it goes).
        public var report: ((Problem) -> Void)?
        /// (pass, done, total)
        public var progress: ((Int, Int, Int) -> Void)?
        public init() {}
    }

    public let device: BlockDevice
    public private(set) var header: Header
    public let geometry: Geometry
    let codec: EntryCodec
    var options: Options
    private var fixEverything = false

    public private(set) var problems: [Problem] = []
    public private(set) var stats = CheckStats()
    public private(set) var cancelled = false
    public private(set) var stoppedForPerson = false
    public private(set) var modified = false

    private var bitmaps: [Bitmap] = []
    private var claims: ClaimMap
    /// Entries to rewrite, by lblk: nil clears the entry.
    private var newEntries: [Int: AllocationEntry?] = [:]
    private var clonedData: [(from: Int, to: Int)] = []
    private var clearPadding: Set<Int> = []
    private var duplicates: Set<Int> = []
    /// Lblks whose bad entry was reported but not cleared (answered no).
    private var keptBad: Set<Int> = []

    /// Reads and validates the header; a device whose header cannot be trusted throws.
    public init(device: BlockDevice, options: Options) throws {
        self.device = device
        (header, geometry) = try device.readHeader()
        codec = EntryCodec(geometry)
        claims = ClaimMap(geometry)
        self.options = options
    }

    public var isDirty: Bool { header.isDirty }

    /// Runs every pass and, unless read-only, writes the accepted repairs.
    public func run() throws {
        try readBitmaps()
        try pass1()
        if !stop { try pass1B() }
        if !stop { pass2() }
        guard !stop else {
            // Stopped for a person or cancelled: nothing is written, so nothing was fixed.
            for i in problems.indices { problems[i].fixed = false }
            return
        }
        if options.mode != .readOnly { try writeRepairs() }
    }

    private var stop: Bool { cancelled || stoppedForPerson }

    // MARK: Decisions

    /// Records a problem and decides whether to fix it; returns true to fix.
    @discardableResult
    private func decide(_ p: Problem) -> Bool {
        var p = p
        switch options.mode {
        case .readOnly: p.fixed = false
        case .fixAll: p.fixed = true
        case .preen:
            if p.preenSafe { p.fixed = true } else { p.fixed = false; stoppedForPerson = true }
        case .interactive:
            if fixEverything { p.fixed = true } else {
                switch options.ask?(p) ?? .no {
                case .yes: p.fixed = true
                case .all: p.fixed = true; fixEverything = true
                case .no: p.fixed = false
                case .quit: p.fixed = false; cancelled = true
                }
            }
        }
        problems.append(p)
        options.report?(p)
        return p.fixed
    }

    func byteRange(_ n: Int) -> String { "bytes \(n * geometry.lblkSize)-\((n + 1) * geometry.lblkSize - 1)" }

    // MARK: Pass 0: bitmaps into memory (4 KiB per zone)

    private func readBitmaps() throws {
        bitmaps.reserveCapacity(geometry.nrZones)
        for z in 0..<geometry.nrZones {
            bitmaps.append(Bitmap(bytes: try device.readPblks(geometry.bitmapPblk(z))))
        }
    }

    // MARK: Pass 1: tables

    /// What a worker found in one zone's table.
    struct ZoneScan {
        var ok: [(lblk: Int, entry: AllocationEntry)] = []
        var bad: [(problem: Problem, keptPblks: [Int])] = []
        var paddingDirty = false
    }

    private func pass1() throws {
        let workers = Parallel.workers
        let window = workers * 2
        // Per-worker buffers, allocated once: compressed input and output for -c, a table chunk.
        let scratch = (0..<workers).map { _ in ByteBuffer(count: 2 * geometry.lblkSize) }
        let tables = (0..<workers).map { _ in TableScanner(device: device, geometry: geometry).makeBuffer() }
        var z0 = 0
        while z0 < geometry.nrZones && !stop {
            let count = min(window, geometry.nrZones - z0)
            var scans = [ZoneScan](repeating: ZoneScan(), count: count)
            let first = z0
            try scans.withUnsafeMutableBufferPointer { buf in
                let out = UncheckedBox(buf)
                try Parallel.forEachSlice(count: count, parts: workers) { w, slice in
                    for i in slice { out.value[i] = try scanZone(first + i, scratch: scratch[w], table: tables[w]) }
                }
            }
            for (i, scan) in scans.enumerated() where !stop { merge(zone: first + i, scan) }
            z0 += count
            options.progress?(1, z0, geometry.nrZones)
        }
    }

    /// Checks every entry of zone `z`.
    private func scanZone(_ z: Int, scratch: ByteBuffer, table: ByteBuffer) throws -> ZoneScan {
        var scan = ZoneScan()
        let g = geometry
        let tableStart = g.tablePblks(z).lowerBound
        try TableScanner(device: device, geometry: g).forEachEntry(zone: z, buffer: table) { n, p in
            try checkEntry(lblk: n, at: p, zone: z, into: &scan, scratch: scratch)
        }
        // Padding after the last entry, up to the end of the last table pblk.
        let used = g.lblkPerZone * g.entryLen
        if used % Units.pblkSize != 0 {
            let last = try device.readPblks(tableStart + used / Units.pblkSize)
            scan.paddingDirty = !last[(used % Units.pblkSize)...].allSatisfy { $0 == 0 }
        }
        return scan
    }

    private func checkEntry(lblk n: Int, at p: UnsafeRawPointer, zone z: Int, into scan: inout ZoneScan,
                            scratch: ByteBuffer) throws {
        let g = geometry
        func bad(_ kind: Problem.Kind, _ what: String, safe: Bool = false) {
            // Slots that name data pblks: what a kept (not cleared) bad entry still holds.
            let named = (0..<codec.slots).map { Int(codec.slot($0, at: p)) }.filter { $0 != 0 && g.dataZone(ofPblk: $0) != nil }
            let inRange = n < g.nrLblk
            let msg = inRange ? "Logical block \(n) (\(byteRange(n))) \(what)"
                              : "Logical block \(n), beyond the logical size (\(g.nrLblk) blocks), \(what)"
            scan.bad.append((Problem(kind: kind, message: msg, action: "Clear", preenSafe: safe, zone: z, lblk: n,
                                     pblks: named, suspectLblks: inRange ? [n] : []), named))
        }
        guard n < g.nrLblk else {
            bad(.entryBeyondSize, "has a non-zero entry", safe: true)
            return
        }
        let entry: AllocationEntry
        do { entry = try codec.decode(p) } catch {
            bad(.malformedEntry, "has a malformed entry: \(error)")
            return
        }
        if let outside = entry.pblks.first(where: { g.dataZone(ofPblk: Int($0)) == nil }) {
            bad(.slotOutsideData, "names pblk \(outside), which is not a data pblk")
            return
        }
        if options.verifyData, case .compressed(let len, let pblks) = entry,
           try !decompresses(length: len, pblks: pblks, scratch: scratch) {
            bad(.corruptData, "does not decompress to \(g.lblkSize) bytes")
            return
        }
        scan.ok.append((n, entry))
    }

    /// Folds a zone's scan into the claims, in lblk order, asking about each problem.
    private func merge(zone z: Int, _ scan: ZoneScan) {
        var bad = scan.bad[...]
        var ok = scan.ok[...]
        while !stop, let next = [bad.first?.problem.lblk, ok.first?.lblk].compactMap({ $0 }).min() {
            if let b = bad.first, b.problem.lblk == next {
                bad.removeFirst()
                if decide(b.problem) { newEntries[next] = .some(nil) } else {
                    claim(b.keptPblks, lblk: next)
                    keptBad.insert(next)
                }
            } else if let o = ok.first {
                ok.removeFirst()
                count(o.entry)
                claim(o.entry.pblks.map { Int($0) }, lblk: o.lblk)
            }
        }
        if scan.paddingDirty && !stop {
            let p = Problem(kind: .tablePadding, message: "Zone \(z): table padding after the last entry is not zero",
                            action: "Clear", preenSafe: true, zone: z)
            if decide(p) { clearPadding.insert(z) }
        }
    }

    /// Whether a compressed block's bytes decompress to exactly one logical block.
    /// `scratch` holds two logical blocks: the stored bytes, then the output.
    private func decompresses(length: Int, pblks: [Pblk], scratch: ByteBuffer) throws -> Bool {
        try device.readPblkRuns(pblks, into: scratch.base)
        return LZ4Codec.decompress(scratch.base, count: length, into: scratch.base + geometry.lblkSize,
                                   expected: geometry.lblkSize)
    }

    /// Adds an entry to the statistics (`by: -1` takes back one counted before it was cleared).
    private func count(_ e: AllocationEntry, by k: Int = 1) {
        switch e {
        case .unallocated: break
        case .compressed(_, let p): stats.compressed += k; stats.usedPblks += k * p.count
        case .raw(let p): stats.raw += k; stats.usedPblks += k * p.count
        }
    }

    private func claim(_ pblks: [Int], lblk: Int) {
        for p in pblks {
            guard let i = claims.index(p) else { continue }
            if claims.isClaimed(i) { duplicates.insert(p) } else { claims.claim(i) }
            if case .data(let z, let k) = geometry.place(ofPblk: p), !bitmaps[z].isSet(k) {
                unmarkedOwners[p, default: []].append(lblk)
            }
        }
    }

    private var unmarkedOwners: [Int: [Int]] = [:]

    // MARK: Pass 1B: pblks claimed twice

    private func pass1B() throws {
        guard !duplicates.isEmpty else { return }
        // Owners of each duplicated pblk, in lblk order (entries being cleared excluded).
        var owners: [Int: [Int]] = [:]
        var entries: [Int: AllocationEntry] = [:]
        let meta = MetadataCache(device: device, geometry: geometry)
        // A bad entry the person chose to keep is neither read nor cloned: its slots may
        // name pblks outside the data areas, even past the end of the device.
        for n in 0..<geometry.nrLblk where newEntries[n] == nil && !keptBad.contains(n) {
            guard let e = try? codec.decode(try meta.entryBytes(n)) else { continue }
            for p in e.pblks where duplicates.contains(Int(p)) {
                owners[Int(p), default: []].append(n)
                entries[n] = e
            }
        }
        try clearUndecodableClaimants(owners: &owners, entries: &entries)
        // Every owner after the first gets a copy of its own.
        var toClone: [Int: Set<Int>] = [:]   // lblk -> lblks it shares with
        for (p, list) in owners {
            for n in list.dropFirst() { toClone[n, default: []].formUnion(list.filter { $0 != n }) }
            _ = p
        }
        for n in toClone.keys.sorted() where !stop {
            guard let e = entries[n] else { continue }
            let others = toClone[n, default: []].sorted()
            let shared = e.pblks.map { Int($0) }.filter { duplicates.contains($0) }
            let problem = Problem(kind: .crossLinked,
                                  message: "Logical block \(n) (\(byteRange(n))) shares \(plural("pblk", shared)) with \(plural("logical block", others))",
                                  action: "Clone", preenSafe: false, zone: geometry.zone(ofLblk: n), lblk: n,
                                  pblks: shared, suspectLblks: ([n] + others).sorted())
            guard decide(problem) else { continue }
            guard let clone = cloneEntry(e, lblk: n) else {
                problems[problems.count - 1].fixed = false
                problems[problems.count - 1].message += " (no free pblk for a copy)"
                continue
            }
            newEntries[n] = .some(clone)
            // The old pblks lose this owner; a pblk left with none is free again. The bitmap
            // follows the clone silently: it is part of this fix, not a problem of its own.
            disown(e.pblks, by: n, owners: &owners)
        }
    }

    /// A compressed claimant of a shared pblk whose bytes do not decompress has lost its data
    /// to the other claimant: it is cleared rather than given a copy of someone else's bytes.
    /// (With -c, pass 1 already cleared every such block.)
    private func clearUndecodableClaimants(owners: inout [Int: [Int]], entries: inout [Int: AllocationEntry]) throws {
        guard !options.verifyData else { return }
        let g = geometry
        let scratch = ByteBuffer(count: 2 * g.lblkSize)
        for n in entries.keys.sorted() where !stop {
            guard let e = entries[n], case .compressed(let len, let pblks) = e,
                  try !decompresses(length: len, pblks: pblks, scratch: scratch) else { continue }
            let shared = pblks.map { Int($0) }.filter { duplicates.contains($0) }
            let others = Set(shared.flatMap { owners[$0] ?? [] }).subtracting([n]).sorted()
            let problem = Problem(kind: .crossLinked,
                                  message: "Logical block \(n) (\(byteRange(n))) shares \(plural("pblk", shared)) with "
                                      + "\(plural("logical block", others)) and does not decompress to \(g.lblkSize) bytes",
                                  action: "Clear", preenSafe: false, zone: g.zone(ofLblk: n), lblk: n,
                                  pblks: shared, suspectLblks: ([n] + others).sorted())
            // Declined: it keeps its entry, and is not offered a clone of bytes it cannot use.
            entries[n] = nil
            guard decide(problem) else { continue }
            newEntries[n] = .some(nil)
            count(e, by: -1)
            disown(pblks, by: n, owners: &owners)
        }
    }

    /// Takes lblk `n` off the owners of `pblks`; a pblk left with no owner is free again.
    private func disown(_ pblks: [Pblk], by n: Int, owners: inout [Int: [Int]]) {
        for p in pblks.map({ Int($0) }) {
            if var list = owners[p] {
                list.removeAll { $0 == n }
                owners[p] = list
                if list.isEmpty { release(p) }
            } else {
                release(p)
            }
        }
    }

    /// "pblk 5" or "pblks 5,6".
    private func plural(_ noun: String, _ numbers: [Int]) -> String {
        "\(noun)\(numbers.count == 1 ? "" : "s") \(numbers.map(String.init).joined(separator: ","))"
    }

    private func release(_ p: Int) {
        guard let i = claims.index(p), case .data(let z, let k) = geometry.place(ofPblk: p) else { return }
        claims.release(i)
        if bitmaps[z].isSet(k) { bitmaps[z].clear(k); changedBitmaps.insert(z) }
    }

    /// The same entry on newly claimed pblks; the data copies are written with the repairs.
    private func cloneEntry(_ e: AllocationEntry, lblk n: Int) -> AllocationEntry? {
        var fresh: [Pblk] = []
        for old in e.pblks {
            guard let p = claims.allocate(near: geometry.zone(ofLblk: n)) else { return nil }
            if case .data(let z, let k) = geometry.place(ofPblk: p) { bitmaps[z].set(k); changedBitmaps.insert(z) }
            fresh.append(Pblk(p))
            clonedData.append((Int(old), p))
        }
        switch e {
        case .compressed(let len, _): return .compressed(length: len, pblks: fresh)
        case .raw: return .raw(pblks: fresh)
        case .unallocated: return .unallocated
        }
    }

    // MARK: Pass 2: bitmaps

    private func pass2() {
        for z in 0..<geometry.nrZones where !stop {
            options.progress?(2, z + 1, geometry.nrZones)
            let want = claims.expectedBitmap(z)
            let have = bitmaps[z]
            guard want != have else { continue }
            let limit = geometry.dataPblkCount(z)
            var leaks: [Range<Int>] = [], unmarked: [Range<Int>] = []
            var k = 0
            while k < limit {
                guard want.isSet(k) != have.isSet(k) else { k += 1; continue }
                var e = k + 1
                while e < limit && want.isSet(e) != have.isSet(e) && want.isSet(e) == want.isSet(k) { e += 1 }
                if want.isSet(k) { unmarked.append(k..<e) } else { leaks.append(k..<e) }
                k = e
            }
            var fixed = have
            let start = geometry.dataStart(z)
            if !leaks.isEmpty {
                let p = Problem(kind: .leakedPblks,
                                message: "Zone \(z): pblks marked in use but used by no entry: \(ranges(leaks, start))",
                                action: "Free", preenSafe: true, zone: z, pblks: leaks.flatMap { $0 }.map { $0 + start })
                if decide(p) { for r in leaks { for k in r { fixed.clear(k) } } }
            }
            if !unmarked.isEmpty && !stop {
                let pblks = unmarked.flatMap { $0 }.map { $0 + start }
                let owners = Set(pblks.flatMap { unmarkedOwners[$0] ?? [] }).sorted()
                let p = Problem(kind: .unmarkedPblks,
                                message: "Zone \(z): pblks in use but not marked: \(ranges(unmarked, start)) (logical block\(owners.count == 1 ? "" : "s") \(owners.map(String.init).joined(separator: ",")))",
                                action: "Mark", preenSafe: true, zone: z, pblks: pblks, suspectLblks: owners)
                if decide(p) { for r in unmarked { for k in r { fixed.set(k) } } }
            }
            if !stop, (limit..<Units.pblksPerBitmap).contains(where: { !have.isSet($0) }) {
                let p = Problem(kind: .bitmapPadding,
                                message: "Zone \(z): padding bits past its \(limit) data pblks are not set",
                                action: "Set", preenSafe: true, zone: z)
                if decide(p) { for k in limit..<Units.pblksPerBitmap { fixed.set(k) } }
            }
            if fixed != have { bitmaps[z] = fixed; changedBitmaps.insert(z) }
        }
    }

    private var changedBitmaps: Set<Int> = []

    private func ranges(_ rs: [Range<Int>], _ base: Int) -> String {
        let shown = rs.prefix(8).map { $0.count == 1 ? "\($0.lowerBound + base)" : "\($0.lowerBound + base)-\($0.upperBound - 1 + base)" }
        return shown.joined(separator: ",") + (rs.count > 8 ? " and \(rs.count - 8) more ranges" : "")
    }

    // MARK: Repairs

    private func writeRepairs() throws {
        let needsHeader = header.isDirty
        guard !clonedData.isEmpty || !newEntries.isEmpty || !clearPadding.isEmpty || !changedBitmaps.isEmpty || needsHeader
        else { return }
        guard device.isWritable else { throw CBDError("\(device.path): opened read-only, cannot repair") }
        // Mark DIRTY while repairing.
        if !needsHeader {
            header.isDirty = true
            try device.writeHeader(header)
            try device.sync()
        }
        // 1. Copies of cross-linked data.
        for (from, to) in clonedData { try device.writePblks(try device.readPblks(from), at: to) }
        try device.sync()
        // 2. Entries and table padding.
        let meta = MetadataCache(device: device, geometry: geometry)
        for (n, e) in newEntries.sorted(by: { $0.key < $1.key }) {
            try meta.setEntryBytes(n, codec.encode(e ?? .unallocated))
        }
        try meta.writeDirtyTables()
        for z in clearPadding.sorted() {
            let used = geometry.lblkPerZone * geometry.entryLen
            let p = geometry.tablePblks(z).lowerBound + used / Units.pblkSize
            var b = try device.readPblks(p)
            for i in (used % Units.pblkSize)..<Units.pblkSize { b[i] = 0 }
            try device.writePblks(b, at: p)
        }
        try device.sync()
        // 3. Bitmaps.
        for z in changedBitmaps.sorted() { try device.writePblks(bitmaps[z].bytes, at: geometry.bitmapPblk(z)) }
        try device.sync()
        modified = !clonedData.isEmpty || !newEntries.isEmpty || !clearPadding.isEmpty || !changedBitmaps.isEmpty
        // 4. Clean again, unless something was left unfixed.
        if problems.allSatisfy({ $0.fixed }) {
            header.isDirty = false
            try device.writeHeader(header)
            try device.sync()
        }
    }

    /// fsck(8) exit status for this run: 0 clean, 1 corrected, 4 left uncorrected, 32 cancelled.
    public var exitCode: Int32 {
        var code: Int32 = 0
        if problems.contains(where: { $0.fixed }) && options.mode != .readOnly { code |= 1 }
        if problems.contains(where: { !$0.fixed }) || stoppedForPerson { code |= 4 }
        if cancelled { code |= 32 }
        return code
    }
}

/// Totals for the summary line.
public struct CheckStats: Sendable, Codable {
    public var compressed = 0
    public var raw = 0
    public var usedPblks = 0
}
