// SPDX-License-Identifier: Apache-2.0
/// Everything format-v1 derives from the header: zone layout, entry size, data ranges.
///
/// All numbers are plain `Int` (64-bit); they are computed only from a header that passed
/// `Header.validate()`, which bounds every factor so that no product can overflow.
public struct Geometry: Equatable, Sendable {
    public let nrPblk: Int
    public let lblkShift: Int
    public let lblkPerZoneShift: Int
    public let nrLblk: Int

    public var lblkSize: Int { Units.pblkSize << lblkShift }
    public var pblkPerLblk: Int { 1 << lblkShift }
    public var lblkPerZone: Int { 1 << lblkPerZoneShift }
    /// Width of an entry's `len` field: 2 bytes when a block is at most 64 KiB, else 4.
    public var lenBytes: Int { lblkSize <= 65536 ? 2 : 4 }
    /// Width of a pblk slot: the smallest of 2, 4, 6 bytes that can name every pblk.
    public var pblkBytes: Int { Geometry.pblkBytes(forPblkCount: nrPblk) }
    public var entryLen: Int { lenBytes + pblkBytes * pblkPerLblk }
    public let tableBlocks: Int
    public var zoneSpan: Int { 1 + tableBlocks + Units.pblksPerBitmap }
    public let nrZones: Int

    /// The seed's name for the entry layout, e.g. `lblk_alloc_16_32`.
    public var variantName: String { "lblk_alloc_\(lenBytes * 8)_\(pblkBytes * 8)" }
    /// The `len` value that marks a raw (uncompressed) block: all ones.
    public var rawLength: Int { lenBytes == 2 ? 0xFFFF : 0xFFFF_FFFF }
    public var logicalBytes: Int { nrLblk * lblkSize }
    public var physicalBytes: Int { nrPblk * Units.pblkSize }

    /// Data pblks over all zones.
    public var totalDataPblks: Int {
        nrZones == 0 ? 0 : (nrZones - 1) * Units.pblksPerBitmap + dataPblkCount(nrZones - 1)
    }

    public static func pblkBytes(forPblkCount n: Int) -> Int {
        n <= 1 << 16 ? 2 : n <= 1 << 32 ? 4 : 6
    }

    /// The geometry of a validated header; throws when the zones cannot hold what it claims.
    public init(header h: Header) throws(GeometryError) {
        try self.init(
            nrPblk: Int(h.nrPhysicalSectors / UInt64(Units.sectorsPerPblk)),
            lblkShift: Int(h.lblkShift), lblkPerZoneShift: Int(h.lblkPerZoneShift),
            nrLblk: Int(h.nrLogicalSectors / (UInt64(Units.sectorsPerPblk) << UInt64(h.lblkShift))))
    }

    /// Derives the layout and checks the validity rules of format-v1.
    /// Callers pass values already bounded: nrPblk <= 2^48, shifts in range.
    public init(nrPblk: Int, lblkShift: Int, lblkPerZoneShift: Int, nrLblk: Int) throws(GeometryError) {
        try self.init(unchecked: nrPblk, lblkShift: lblkShift, lblkPerZoneShift: lblkPerZoneShift, nrLblk: nrLblk)
        guard nrZones >= 1 else { throw .noZone(nrPblk: nrPblk) }
        guard dataEnd(nrZones - 1) > dataStart(nrZones - 1) else {
            throw .lastZoneTooSmall(
                zone: nrZones - 1, pblks: nrPblk - zoneStart(nrZones - 1),
                needs: 2 + tableBlocks)
        }
        guard nrLblk <= nrZones << lblkPerZoneShift else {
            throw .logicalTooLarge(nrLblk: nrLblk, capacity: nrZones << lblkPerZoneShift)
        }
    }

    /// The derived numbers without the validity rules (mkfs probes candidates with it).
    public init(unchecked nrPblk: Int, lblkShift: Int, lblkPerZoneShift: Int, nrLblk: Int) throws(GeometryError) {
        guard nrPblk >= 0, nrPblk <= Int(Units.maxPblks), (0...Units.maxLblkShift).contains(lblkShift),
            (0...Units.maxLblkPerZoneShift).contains(lblkPerZoneShift), nrLblk > 0
        else { throw .outOfRange }
        self.nrPblk = nrPblk
        self.lblkShift = lblkShift
        self.lblkPerZoneShift = lblkPerZoneShift
        self.nrLblk = nrLblk
        let entry =
            (Units.pblkSize << lblkShift <= 65536 ? 2 : 4)
            + Geometry.pblkBytes(forPblkCount: nrPblk) << lblkShift
        tableBlocks = ((entry << lblkPerZoneShift) + Units.pblkSize - 1) / Units.pblkSize
        let span = 1 + tableBlocks + Units.pblksPerBitmap
        nrZones = nrPblk <= 1 ? 0 : (nrPblk - 1 + span - 1) / span
    }

    // MARK: Zone layout

    public func zoneStart(_ z: Int) -> Int { 1 + z * zoneSpan }
    public func bitmapPblk(_ z: Int) -> Int { zoneStart(z) }
    public func tablePblks(_ z: Int) -> Range<Int> { zoneStart(z) + 1..<zoneStart(z) + 1 + tableBlocks }
    public func dataStart(_ z: Int) -> Int { zoneStart(z) + 1 + tableBlocks }
    public func dataEnd(_ z: Int) -> Int { min(zoneStart(z) + zoneSpan, nrPblk) }
    /// Data pblks that zone `z` really has (fewer than 32768 only in a short last zone).
    public func dataPblkCount(_ z: Int) -> Int { dataEnd(z) - dataStart(z) }

    /// Logical blocks whose entries live in zone `z` and are inside the logical size.
    public func lblks(inZone z: Int) -> Range<Int> {
        let first = z << lblkPerZoneShift
        return min(first, nrLblk)..<min(first + lblkPerZone, nrLblk)
    }

    public func zone(ofLblk n: Int) -> Int { n >> lblkPerZoneShift }
    public func entryIndex(ofLblk n: Int) -> Int { n & (lblkPerZone - 1) }

    // MARK: Where things are, in bytes from the start of the device

    /// Entry `i` of zone `z`'s table (entries are packed and may straddle table pblks).
    public func entryOffset(zone z: Int, index i: Int) -> Int {
        tablePblks(z).lowerBound * Units.pblkSize + i * entryLen
    }

    /// Lblk `n`'s entry.
    public func entryOffset(ofLblk n: Int) -> Int { entryOffset(zone: zone(ofLblk: n), index: entryIndex(ofLblk: n)) }

    /// The bytes after zone `z`'s last entry up to the end of its last table pblk: always zero.
    public func tablePadding(zone z: Int) -> Range<Int> {
        entryOffset(zone: z, index: lblkPerZone)..<tablePblks(z).upperBound * Units.pblkSize
    }

    /// Zone `z`'s bitmap and table: what must read as zeros before a fresh zone is usable.
    public func metadataBytes(zone z: Int) -> Range<Int> {
        bitmapPblk(z) * Units.pblkSize..<tablePblks(z).upperBound * Units.pblkSize
    }

    /// The data pblk of index `t` when the data areas of all zones are counted as one stream,
    /// zone after zone (how convert and resize lay data out: zones fill in order).
    public func dataPblk(streamIndex t: Int) -> Int {
        dataStart(t / Units.pblksPerBitmap) + t % Units.pblksPerBitmap
    }

    /// The zones a writer searches for free pblks: `home` first, then the following ones,
    /// wrapping around (format-v1: a block's data should sit in its own zone).
    public func zones(from home: Int) -> LazyMapSequence<Range<Int>, Int> {
        let h = min(max(home, 0), nrZones - 1), n = nrZones
        return (0..<n).lazy.map { (h + $0) % n }
    }

    /// Where a pblk lies in the layout.
    public enum Place: Equatable, Sendable {
        case header
        case bitmap(zone: Int)
        case table(zone: Int, block: Int)
        case data(zone: Int, index: Int)
        case beyondEnd
    }

    public func place(ofPblk p: Int) -> Place {
        if p == 0 { return .header }
        guard p > 0, p < nrPblk else { return .beyondEnd }
        let z = zone(spanning: p)
        let off = p - zoneStart(z)
        if off == 0 { return .bitmap(zone: z) }
        if off <= tableBlocks { return .table(zone: z, block: off - 1) }
        return .data(zone: z, index: off - 1 - tableBlocks)
    }

    /// The zone whose span holds pblk `p` (at least 1; past the last zone for a pblk beyond
    /// the end): where a search that found data at `p` (SEEK_DATA) has arrived.
    public func zone(spanning p: Int) -> Int { (p - 1) / zoneSpan }

    /// How many zones have their bitmap pblk before pblk `p` (`p` at least 1): the zones a
    /// search that found the next data at `p` has shown to have a hole for a bitmap.
    public func zones(withBitmapBefore p: Int) -> Int { min(nrZones, (p - 1 + zoneSpan - 1) / zoneSpan) }

    /// How many zones have their whole table at or before pblk `p` (at least one): the zones
    /// whose tables a search that found the next data at `p` has shown to be holes, past the
    /// one it started in.
    public func zones(withTableEndingBy p: Int) -> Int { min(nrZones, (p - 2 - tableBlocks) / zoneSpan + 1) }

    /// The zone whose data area holds `p`, or nil when `p` is not a data pblk.
    public func dataZone(ofPblk p: Int) -> Int? {
        if case .data(let z, _) = place(ofPblk: p) { return z }
        return nil
    }
}

/// Why a set of sizes does not make a valid device.
public enum GeometryError: Error, Equatable, CustomStringConvertible, Sendable {
    case outOfRange
    case noZone(nrPblk: Int)
    case lastZoneTooSmall(zone: Int, pblks: Int, needs: Int)
    case logicalTooLarge(nrLblk: Int, capacity: Int)

    public var description: String {
        switch self {
        case .outOfRange: return "geometry fields out of range"
        case .noZone(let n): return "physical size of \(n) pblks holds no zone"
        case .lastZoneTooSmall(let z, let p, let need):
            return "last zone \(z) has \(p) pblks but needs at least \(need) (bitmap, table and one data pblk)"
        case .logicalTooLarge(let n, let c):
            return "\(n) logical blocks exceed the \(c) entries the zones can hold"
        }
    }
}
