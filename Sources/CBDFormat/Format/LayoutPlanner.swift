// SPDX-License-Identifier: Apache-2.0
/// Chooses a geometry for new devices (mkfs, convert): the smallest lblk_per_zone_shift
/// whose zones hold every logical block, after trimming a last zone too small to hold its
/// bitmap, its table and one data pblk.
public enum LayoutPlanner {
    /// - Parameters:
    ///   - physicalBytes: space to use; rounded down to whole pblks and capped at 2^48 pblks.
    ///   - logicalBytes: the logical device size; must be a positive multiple of the block size.
    ///   - zoneShifts: the lblk_per_zone_shift values to try (a caller may need one).
    public static func plan(
        physicalBytes: Int, logicalBytes: Int, lblkShift: Int,
        zoneShifts: ClosedRange<Int> = 0...Units.maxLblkPerZoneShift
    ) throws -> Geometry {
        guard (0...Units.maxLblkShift).contains(lblkShift) else {
            throw CBDError("block size must be a power of two from 4 KiB to 1 GiB")
        }
        let lblkSize = Units.pblkSize << lblkShift
        let maxPblk = min(physicalBytes / Units.pblkSize, Int(Units.maxPblks))
        guard trimmed(maxPblk: maxPblk, lblkShift: lblkShift, zoneShift: 0, nrLblk: 1) != nil else {
            throw CBDError(
                "physical size of \(physicalBytes) bytes is too small for one zone "
                    + "(header, bitmap, table and one data pblk)")
        }
        guard logicalBytes >= lblkSize else {
            throw CBDError("logical size \(logicalBytes) is smaller than one block (\(lblkSize) bytes)")
        }
        guard logicalBytes % lblkSize == 0 else {
            throw CBDError("logical size \(logicalBytes) is not a multiple of the block size \(lblkSize)")
        }
        let nrLblk = logicalBytes / lblkSize
        var best: Geometry?
        for zoneShift in zoneShifts.clamped(to: 0...Units.maxLblkPerZoneShift) {
            guard let g = trimmed(maxPblk: maxPblk, lblkShift: lblkShift, zoneShift: zoneShift, nrLblk: nrLblk)
            else { continue }
            if nrLblk <= g.nrZones << zoneShift { return try validated(g) }
            best = g
        }
        if let g = best {
            throw SizeError.logicalTooLarge(
                logicalBytes: logicalBytes, physicalBytes: physicalBytes,
                maxBlocks: g.nrZones << g.lblkPerZoneShift, lblkSize: lblkSize)
        }
        throw CBDError(
            "physical size of \(physicalBytes) bytes cannot hold a table for "
                + "\(nrLblk) blocks of \(lblkSize) bytes")
    }

    /// The geometry for `maxPblk` with whole last zones only, or nil if not even one fits.
    package static func trimmed(maxPblk: Int, lblkShift: Int, zoneShift: Int, nrLblk: Int) -> Geometry? {
        var n = maxPblk
        while n > 1 {
            guard
                let g = try? Geometry(
                    unchecked: n, lblkShift: lblkShift, lblkPerZoneShift: zoneShift,
                    nrLblk: nrLblk),
                g.nrZones >= 1
            else { return nil }
            let last = g.nrZones - 1
            if g.dataEnd(last) > g.dataStart(last) { return g }
            n = g.zoneStart(last)  // drop the last zone; the entry width may shrink with it
        }
        return nil
    }

    /// `g` (planned for a logical size of at least `logicalBytes`) holding `logicalBytes`: the
    /// same zones and tables, so that the device grows in place to the size it was planned for
    /// (mke2fs's `-E resize=`). The price is the larger tables, `reserveBytes(_:_:)`.
    public static func holding(logicalBytes: Int, in g: Geometry) throws -> Geometry {
        guard logicalBytes > 0, logicalBytes % g.lblkSize == 0, logicalBytes <= g.logicalBytes else {
            throw CBDError(
                "logical size \(logicalBytes) is not a positive multiple of the block size "
                    + "\(g.lblkSize) at most \(g.logicalBytes)")
        }
        return try validated(
            Geometry(
                unchecked: g.nrPblk, lblkShift: g.lblkShift,
                lblkPerZoneShift: g.lblkPerZoneShift, nrLblk: logicalBytes / g.lblkSize))
    }

    /// The table pblks a layout `g` takes beyond the one planned for its own logical size at
    /// the same physical size (what room to grow costs), 0 when none.
    public static func reservePblks(of g: Geometry) -> Int {
        guard let base = try? plan(physicalBytes: g.physicalBytes, logicalBytes: g.logicalBytes, lblkShift: g.lblkShift)
        else { return 0 }
        return max(0, g.nrZones * g.tableBlocks - base.nrZones * base.tableBlocks)
    }

    /// The largest device `g` grows into without moving a zone: the same entry variant (the
    /// pblk width is fixed by the pblk count: 2 bytes up to 2^16 pblks, 4 up to 2^32, 6
    /// beyond) and the same zones, the last one filled; its logical size is every entry of
    /// every zone. Beyond it every table changes (a re-layout).
    public static func inPlaceLimit(of g: Geometry) -> Geometry {
        let classEnd = g.pblkBytes == 2 ? 1 << 16 : g.pblkBytes == 4 ? 1 << 32 : Int(Units.maxPblks)
        guard
            let full = trimmed(
                maxPblk: classEnd, lblkShift: g.lblkShift, zoneShift: g.lblkPerZoneShift,
                nrLblk: g.nrLblk),
            full.pblkBytes == g.pblkBytes, full.nrPblk >= g.nrPblk
        else { return g }
        let (entries, overflow) = full.nrZones.multipliedReportingOverflow(by: g.lblkPerZone)
        let lblks = overflow ? Int.max / g.lblkSize : min(entries, Int.max / g.lblkSize)
        return
            (try? Geometry(
                unchecked: full.nrPblk, lblkShift: g.lblkShift, lblkPerZoneShift: g.lblkPerZoneShift,
                nrLblk: max(lblks, g.nrLblk))) ?? full
    }

    static func validated(_ g: Geometry) throws -> Geometry {
        do {
            return try Geometry(
                nrPblk: g.nrPblk, lblkShift: g.lblkShift,
                lblkPerZoneShift: g.lblkPerZoneShift, nrLblk: g.nrLblk)
        } catch { throw CBDError("\(error)") }
    }

    /// The smallest geometry (found by growing from the data size) with at least `need`
    /// data pblks for `logicalBytes` of blocks of `4096 << lblkShift`.
    public static func compact(
        dataPblks need: Int, logicalBytes: Int, lblkShift: Int,
        zoneShifts: ClosedRange<Int> = 0...Units.maxLblkPerZoneShift
    ) throws -> Geometry {
        var pblks = need + 3
        for _ in 0..<400 {
            if let g = try? plan(
                physicalBytes: pblks * Units.pblkSize, logicalBytes: logicalBytes,
                lblkShift: lblkShift, zoneShifts: zoneShifts)
            {
                if g.totalDataPblks >= need { return g }
                pblks += need - g.totalDataPblks + g.tableBlocks + 2
            } else {
                pblks = pblks * 5 / 4 + 64  // too few zones for the tables: grow
            }
            guard pblks <= Int(Units.maxPblks) else { break }
        }
        throw CBDError(
            "no geometry holds \(logicalBytes / (Units.pblkSize << lblkShift)) blocks of "
                + "\(Units.pblkSize << lblkShift) bytes")
    }

    /// Block size in bytes to lblk_shift, if it is a power of two in range.
    public static func lblkShift(forBlockSize size: Int) -> Int? {
        guard size >= Units.pblkSize, size <= Units.pblkSize << Units.maxLblkShift,
            size & (size - 1) == 0
        else { return nil }
        return size.trailingZeroBitCount - Units.pblkSize.trailingZeroBitCount
    }
}
