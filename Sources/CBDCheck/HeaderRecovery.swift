// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// What can be done when pblk 0 cannot be used as it is. The header is the only place the
/// device describes itself, but every zone repeats the geometry in its layout: a bitmap at
/// each zone's start, a table of well-formed entries after it, padding bits set past the last
/// zone's data. As e2fsck falls back on a backup superblock and vdoregenerategeometry scans
/// for its geometry, fsck.cbd finds the header again from the zones (`search`).
public enum HeaderRecovery {
    /// What pblk 0 holds.
    public enum Diagnosis: Sendable {
        /// A valid header, and a device as large as it says.
        case usable
        /// A header of a known version whose fields are all valid, but with reserved bytes that
        /// are not zero: the fields are kept and the bytes cleared.
        case reservedBytes(Header, offset: Int)
        /// A valid header on a device shorter than it says (a truncated image file).
        case deviceShort(Header, Geometry, deviceBytes: Int)
        /// The resize marker: `cbd undo` finishes the job, not a repair.
        case resizeMarker
        /// The magic is right but the version, flags or algorithm are unknown: a newer writer's
        /// device, never overwritten (the reason).
        case foreign(String)
        /// Not a usable header (the reason): the geometry must be found from the zones.
        case unusable(String)
    }

    /// Looks at pblk 0 without throwing for what it finds (only for I/O errors).
    public static func diagnose(_ device: BlockDevice) throws -> Diagnosis {
        guard device.size >= Units.pblkSize else { return .unusable("the device is smaller than one pblk") }
        let b = try device.readPblks(0)
        if ResizeMarker.undoPath(in: b) != nil { return .resizeMarker }
        do {
            let h = try Header.decode(b)
            let g = try Geometry(header: h)
            if g.physicalBytes <= device.size { return .usable }
            // A truncated image keeps its entry variant; a size field that is wrong (far larger)
            // gives another one: that header's size is not to be believed, the zones are.
            let short = Geometry.pblkBytes(forPblkCount: device.size / Units.pblkSize) == g.pblkBytes
            return short ? .deviceShort(h, g, deviceBytes: device.size)
                : .unusable("header claims \(g.physicalBytes) bytes, far more than the device's \(device.size)")
        } catch let e as HeaderError where e.mustNotBeRewritten {
            return .foreign(e.description)
        } catch HeaderError.reservedNotZero(let offset) {
            // Version 1.0's fields with the reserved bytes cleared (a 1.1 intent record lies in
            // them: such a header is not guessed at, the zones decide).
            var clean = b
            for i in Header.fieldBytes ..< Units.pblkSize { clean[i] = 0 }
            let reason = HeaderError.reservedNotZero(offset: offset).description
            guard let h = try? Header.decode(clean), let g = try? Geometry(header: h) else { return .unusable(reason) }
            // Reserved bytes and a size past the device: two fields wrong, the zones decide.
            guard g.physicalBytes <= device.size else {
                return .unusable("\(reason), and the header claims more than the device")
            }
            return .reservedBytes(h, offset: offset)
        } catch {
            return .unusable("\(error)")
        }
    }

    /// The layout of `device` for a read-only tool that must get past a damaged pblk 0 (`cbd
    /// image --metadata`, whose report is about that damage): the header when it is valid,
    /// its fields when only its reserved bytes or the device's length are wrong, else the one
    /// layout the zones show (`choose`).
    public static func layout(of device: BlockDevice) throws -> (Header, Geometry) {
        switch try diagnose(device) {
        case .usable, .resizeMarker, .foreign: return try device.readHeader()
        case .reservedBytes(let h, _): return (h, try Geometry(header: h))
        case .deviceShort(let h, let g, _): return (h, g)
        case .unusable(let why):
            let c = try choose(device, reason: why)
            return (c.header, c.geometry)
        }
    }

    /// A geometry that fits what the zones hold, and how well.
    public struct Candidate: Sendable {
        public let header: Header
        public let geometry: Geometry
        /// Allocated entries found in the tables where this geometry puts them.
        public let entries: Int
        /// Problems a read-only check finds with this header (0: every rule holds).
        public let problems: Int

        /// One line: the layout and its evidence.
        public var evidence: String {
            let g = geometry
            return "\(g.lblkSize >> 10) KiB blocks, \(g.nrPblk) pblks, \(g.nrZones) zone\(g.nrZones == 1 ? "" : "s") of "
                + "\(g.lblkPerZone) lblks (\(g.variantName)): \(entries) allocated entries, "
                + (problems == 0 ? "every rule holds" : "\(problems) problem\(problems == 1 ? "" : "s") found")
        }
    }

    /// At most this many layouts that pass the quick look are checked in full.
    static let fullChecks = 8

    /// The layouts (block size and zone size) under which the zones read as a CBD device of
    /// `physicalBytes` (default: the whole device), best first: the fewest problems, then the
    /// most entries. The logical size is the most each layout holds (the tables cannot say
    /// more: entries past the end are zero). Empty when none fits.
    public static func search(_ device: BlockDevice, physicalBytes: Int? = nil) throws -> [Candidate] {
        let nrPblk = min((physicalBytes ?? device.size) / Units.pblkSize, Int(Units.maxPblks))
        var plausible: [(Geometry, Int)] = []
        for lblkShift in 0 ... Units.maxLblkShift {
            for zoneShift in 0 ... Units.maxLblkPerZoneShift {
                guard let g = layout(nrPblk: nrPblk, lblkShift: lblkShift, zoneShift: zoneShift),
                      let entries = try quickLook(device, g) else { continue }
                plausible.append((g, entries))
            }
        }
        // The most entries first: a layout that reads more of the tables as entries is likelier.
        // Among equals (an empty device fits many), the layout mkfs.cbd chooses by default.
        let usual = (try? LayoutPlanner.plan(physicalBytes: nrPblk * Units.pblkSize,
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
        return out.sorted { ($0.problems, -$0.entries, distance($0.geometry)) < ($1.problems, -$1.entries, distance($1.geometry)) }
    }

    /// Why no header could be found again: the reason pblk 0 is unusable, and the layouts
    /// that fit (none, or several equally well).
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let reason: String
        public let candidates: [Candidate]
        public var description: String {
            candidates.isEmpty ? "\(reason), and no layout fits the zones"
                : candidates.count == 1 ? "\(reason); one layout fits the zones, but no entry confirms it"
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
        guard ties.allSatisfy({ $0.geometry.lblkShift == g.lblkShift && $0.geometry.tableBlocks == g.tableBlocks
                                && $0.geometry.nrZones == g.nrZones }) else { return nil }
        return ties.max { $0.geometry.lblkPerZoneShift < $1.geometry.lblkPerZoneShift }
    }

    /// The header a recovered geometry gets: version 1.0 (the repair writes it DIRTY, so
    /// that the device stays checked until the repairs are done).
    static func header(for g: Geometry) -> Header {
        Header(nrPhysicalSectors: UInt64(g.nrPblk * Units.sectorsPerPblk),
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
        return try? Geometry(nrPblk: nrPblk, lblkShift: lblkShift, lblkPerZoneShift: zoneShift,
                             nrLblk: min(capacity, maxLblks))
    }

    /// The cheap questions, on zone 0 and the last zone: every non-zero entry of zone 0's first
    /// table pblks well formed and naming data pblks, zone 0's table padding zero, the last
    /// zone's bitmap padding set. The allocated entries seen, or nil when a rule fails.
    static func quickLook(_ device: BlockDevice, _ g: Geometry) throws -> Int? {
        let last = g.nrZones - 1, limit = g.dataPblkCount(last)
        if limit < Units.pblksPerBitmap {
            let bitmap = Bitmap(bytes: try device.readPblks(g.bitmapPblk(last)))
            guard (limit ..< Units.pblksPerBitmap).allSatisfy({ bitmap.isSet($0) }) else { return nil }
        }
        let pblks = min(g.tableBlocks, 16)
        let bytes = try device.readPblks(g.tablePblks(0).lowerBound, count: pblks)
        let codec = EntryCodec(g)
        let count = min(g.lblkPerZone, pblks * Units.pblkSize / g.entryLen)
        var entries = 0
        let ok: Bool = bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return false }
            for i in 0 ..< count {
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

/// A device that reads as zeros past its end, up to `size`: a truncated image as it will be
/// once grown back. Writes go to the device (the repair grows it first).
final class ZeroTail: BlockDevice {
    let inner: BlockDevice
    let size: Int

    init(_ inner: BlockDevice, size: Int) {
        self.inner = inner
        self.size = max(size, inner.size)
    }

    var path: String { inner.path }
    var isWritable: Bool { inner.isWritable }
    var openFile: Int32? { inner.openFile }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        let real = max(0, min(buffer.count, inner.size - offset))
        if real > 0 { try inner.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0 ..< real]), at: offset) }
        if real < buffer.count, let base = buffer.baseAddress {
            (base + real).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - real)
        }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws { try inner.write(buffer, at: offset) }
    func zero(_ range: Range<Int>) throws { try inner.zero(range) }
    func sync() throws { try inner.sync() }
    func setSize(_ bytes: Int) throws { try inner.setSize(bytes) }
    func isHole(_ range: Range<Int>) -> Bool { range.lowerBound >= inner.size || inner.isHole(range) }
    func nextData(from offset: Int) -> Int? { offset < inner.size ? inner.nextData(from: offset) : nil }
    func nextHole(from offset: Int) -> Int { offset < inner.size ? inner.nextHole(from: offset) : offset }
}

/// A device whose pblk 0 reads as a given header: how a candidate geometry is checked without
/// writing it. Reads only; everything else goes to the device beneath.
final class HeaderOverlay: BlockDevice {
    let inner: BlockDevice
    let headerBytes: [UInt8]

    init(_ inner: BlockDevice, header: Header) {
        self.inner = inner
        headerBytes = header.encoded()
    }

    var path: String { inner.path }
    var size: Int { inner.size }
    var isWritable: Bool { false }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try inner.read(into: buffer, at: offset)
        guard offset < Units.pblkSize, let base = buffer.baseAddress else { return }
        let n = min(buffer.count, Units.pblkSize - offset)
        headerBytes.withUnsafeBytes { h in
            if let hb = h.baseAddress { base.copyMemory(from: hb + offset, byteCount: n) }
        }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        throw CBDError("\(path): opened read-only", kind: .readOnly)
    }
    func zero(_ range: Range<Int>) throws { throw CBDError("\(path): opened read-only", kind: .readOnly) }
    func sync() throws {}
    func isHole(_ range: Range<Int>) -> Bool { range.lowerBound >= Units.pblkSize && inner.isHole(range) }
    func nextData(from offset: Int) -> Int? { offset < Units.pblkSize ? offset : inner.nextData(from: offset) }
    func nextHole(from offset: Int) -> Int { offset < Units.pblkSize ? Units.pblkSize : inner.nextHole(from: offset) }
}
