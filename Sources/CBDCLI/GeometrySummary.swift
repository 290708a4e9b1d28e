// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// Human-readable lines describing a geometry, shared by mkfs.cbd and fsck.cbd -v.
extension Geometry {
    public func summaryLines() -> [(String, String)] {
        let lastData = dataPblkCount(nrZones - 1)
        return [
            ("physical size", "\(ByteSize.format(physicalBytes)) (\(plural(nrPblk, "pblk")) of 4096 bytes)"),
            ("logical size", "\(ByteSize.format(logicalBytes)) (\(plural(nrLblk, "block")))"),
            ("logical block size", "\(lblkSize) (lblk_shift \(lblkShift))"),
            ("provisioning ratio", "\(String(format2: provisioningRatio)) (logical / physical)"),
            (
                "zones",
                "\(nrZones) (zone span \(zoneSpan) pblks"
                    + (lastData < Units.pblksPerBitmap ? ", last zone \(lastData) data pblks)" : ")")
            ),
            ("blocks per zone", "\(lblkPerZone) (lblk_per_zone_shift \(lblkPerZoneShift))"),
            ("entry variant", "\(variantName) (\(entryLen) bytes per entry)"),
            ("table pblks per zone", "\(tableBlocks)"),
            ("data pblks", "\(totalDataPblks)"),
            ("grows in place to", inPlaceGrowthText)
        ] + reserveLine
    }

    /// What tables sized for more than the logical size (-E resize=) cost, when they are.
    var reserveLine: [(String, String)] {
        let extra = LayoutPlanner.reservePblks(of: self)
        guard extra > 0 else { return [] }
        let percent = Double(extra) * 100 / Double(nrPblk)
        return [("growth reserve", "\(plural(extra, "table pblk")) (\(String(format2: percent)) % of the device)")]
    }

    /// How far the device grows without a re-layout (`cbd resize` beyond it rewrites every
    /// zone), physically and logically.
    public var inPlaceGrowthText: String {
        let limit = LayoutPlanner.inPlaceLimit(of: self)
        return "\(ByteSize.format(limit.physicalBytes)) physical, \(ByteSize.format(limit.logicalBytes)) logical"
            + (limit.nrPblk == nrPblk ? " (no room: the largest device with \(pblkBytes)-byte pblk numbers)" : "")
    }
}

extension String {
    /// A number with two decimals, without Foundation.
    public init(format2 v: Double) {
        let cents = Int((v * 100).rounded())
        let frac = cents % 100
        self = "\(cents / 100)." + (frac < 10 ? "0\(frac)" : "\(frac)")
    }
}
