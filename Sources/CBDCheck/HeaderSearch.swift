// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume

/// The search for a lost header (`HeaderRecovery`'s second half, which needs the checker): each
/// layout of the device's size whose zones look right, then a read-only check of the best.
extension HeaderRecovery {
    /// At most this many layouts that pass the quick look are checked in full.
    static let fullChecks = 8

    /// The layouts (block size and zone size) under which the zones read as a CBD device of
    /// `physicalBytes` (default: the whole device), best first: the fewest problems, then the
    /// most entries. The logical size is the most each layout holds (the tables cannot say
    /// more: entries past the end are zero). Empty when none fits.
    public static func search(_ device: BlockDevice, physicalBytes: Int? = nil) throws -> [Candidate] {
        let nrPblk = min((physicalBytes ?? device.size) / Units.pblkSize, Int(Units.maxPblks))
        var plausible: [(Geometry, Int)] = []
        for lblkShift in 0...Units.maxLblkShift {
            for zoneShift in 0...Units.maxLblkPerZoneShift {
                guard let g = layout(nrPblk: nrPblk, lblkShift: lblkShift, zoneShift: zoneShift),
                    let entries = try quickLook(device, g)
                else { continue }
                plausible.append((g, entries))
            }
        }
        // The most entries first: a layout that reads more of the tables as entries is likelier.
        // Among equals (an empty device fits many), the layout mkfs.cbd chooses by default.
        let usual =
            (try? LayoutPlanner.plan(
                physicalBytes: nrPblk * Units.pblkSize,
                logicalBytes: 3 * nrPblk * Units.pblkSize / 65536 * 65536, lblkShift: 4))
        func distance(_ g: Geometry) -> Int {
            abs(g.lblkShift - (usual?.lblkShift ?? 4)) * 100 + abs(g.lblkPerZoneShift - (usual?.lblkPerZoneShift ?? 0))
        }
        plausible.sort { ($0.1, -distance($0.0)) > ($1.1, -distance($1.0)) }
        var out: [Candidate] = []
        for (g, entries) in plausible.prefix(fullChecks) {
            let h = header(for: g)
            let overlay = HeaderOverlay(device, header: h)
            let checker = try Checker(device: overlay, options: Checker.Options())
            try checker.run()
            out.append(Candidate(header: h, geometry: g, entries: entries, problems: checker.problems.count))
        }
        return out.sorted {
            ($0.problems, -$0.entries, distance($0.geometry)) < ($1.problems, -$1.entries, distance($1.geometry))
        }
    }

    /// Why no header could be found again: the reason pblk 0 is unusable, and the layouts
    /// that fit (none, or several equally well).
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let reason: String
        public let candidates: [Candidate]
        public var description: String {
            candidates.isEmpty
                ? "\(reason), and no layout fits the zones"
                : candidates.count == 1
                    ? "\(reason); one layout fits the zones, but no entry confirms it"
                    : "\(reason); \(candidates.count) layouts fit the zones equally well"
        }
    }

    /// The one layout the zones show without doubt, or `Failure` listing what fits.
    public static func choose(_ device: BlockDevice, reason: String) throws -> Candidate {
        let found = try search(device)
        if let c = certain(found) { return c }
        throw Failure(reason: reason, candidates: found.filter { $0.problems == (found.first?.problems ?? 0) })
    }

    /// The candidates a repair may take without being told: the best one alone, with every rule
    /// holding and at least one entry (an empty device fits many layouts equally).
    public static func certain(_ candidates: [Candidate]) -> Candidate? {
        guard let best = candidates.first, best.problems == 0, best.entries > 0 else { return nil }
        let ties = candidates.filter { $0.problems == 0 && $0.entries == best.entries }
        // Zone sizes whose tables take the same pblks lay the device out the same: they differ
        // only in how many lblks they hold. The largest is taken, so that the logical size is
        // never smaller than the one lost (entries past a device's end are zero).
        let g = best.geometry
        guard
            ties.allSatisfy({
                $0.geometry.lblkShift == g.lblkShift && $0.geometry.tableBlocks == g.tableBlocks
                    && $0.geometry.nrZones == g.nrZones
            })
        else { return nil }
        return ties.max { $0.geometry.lblkPerZoneShift < $1.geometry.lblkPerZoneShift }
    }

    /// The header a recovered geometry gets: version 1.0 (the repair writes it DIRTY, so
    /// that the device stays checked until the repairs are done).
    static func header(for g: Geometry) -> Header {
        Header(
            nrPhysicalSectors: UInt64(g.nrPblk * Units.sectorsPerPblk),
            nrLogicalSectors: UInt64(g.nrLblk) * UInt64(Units.sectorsPerPblk << g.lblkShift),
            lblkShift: UInt16(g.lblkShift), lblkPerZoneShift: UInt16(g.lblkPerZoneShift))
    }

    /// The geometry of `nrPblk` pblks with these shifts and the most lblks its zones hold;
    /// nil when it is not a valid layout.
    static func layout(nrPblk: Int, lblkShift: Int, zoneShift: Int) -> Geometry? {
        guard let probe = try? Geometry(unchecked: nrPblk, lblkShift: lblkShift, lblkPerZoneShift: zoneShift, nrLblk: 1)
        else { return nil }
        let (capacity, over) = probe.nrZones.multipliedReportingOverflow(by: probe.lblkPerZone)
        guard !over else { return nil }
        let maxLblks = Int(Header.maxLogicalSectors) / (Units.sectorsPerPblk << lblkShift)
        return try? Geometry(
            nrPblk: nrPblk, lblkShift: lblkShift, lblkPerZoneShift: zoneShift,
            nrLblk: min(capacity, maxLblks))
    }

    /// The cheap questions, on zone 0 and the last zone: every non-zero entry of zone 0's first
    /// table pblks well formed and naming data pblks, zone 0's table padding zero, the last
    /// zone's bitmap padding set. The allocated entries seen, or nil when a rule fails.
    static func quickLook(_ device: BlockDevice, _ g: Geometry) throws -> Int? {
        let last = g.nrZones - 1, limit = g.dataPblkCount(last)
        if limit < Units.pblksPerBitmap {
            let bitmap = Bitmap(bytes: try device.readPblks(g.bitmapPblk(last)))
            guard (limit..<Units.pblksPerBitmap).allSatisfy({ bitmap.isSet($0) }) else { return nil }
        }
        let pblks = min(g.tableBlocks, 16)
        let bytes = try device.readPblks(g.tablePblks(0).lowerBound, count: pblks)
        let codec = EntryCodec(g)
        let count = min(g.lblkPerZone, pblks * Units.pblkSize / g.entryLen)
        var entries = 0
        let ok: Bool = bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return false }
            for i in 0..<count {
                let p = base + i * g.entryLen
                if isAllZero(p, g.entryLen) { continue }
                guard i < g.nrLblk, (try? codec.decodeChecked(p)) != nil else { return false }
                entries += 1
            }
            return true
        }
        guard ok else { return nil }
        if pblks == g.tableBlocks {
            let padding = g.tablePadding(zone: 0)
            let start = padding.lowerBound - g.tablePblks(0).lowerBound * Units.pblkSize
            guard bytes[start...].allSatisfy({ $0 == 0 }) else { return nil }
        }
        return entries
    }
}

extension OpenedDevice {
    /// Opens `device` as fsck.cbd does: past an interrupted update and any damage of pblk 0
    /// the zones can answer for (the one layout they show, else `HeaderRecovery.Failure`).
    public static func recovering(_ device: any BlockDevice) throws -> OpenedDevice {
        try OpenedDevice(device, allowing: [.interruptedUpdate, .damagedHeader], search: HeaderRecovery.choose)
    }
}
