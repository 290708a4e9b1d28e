// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume
/// Writes an empty CBD device: zeroed tables, fresh bitmaps, and the header last, so an
/// interrupted format never leaves something that looks like a valid device.
public enum Formatter {
    /// The header a freshly formatted device with geometry `g` carries.
    public static func header(for g: Geometry) -> Header {
        Header(
            nrPhysicalSectors: UInt64(g.nrPblk * Units.sectorsPerPblk),
            nrLogicalSectors: UInt64(g.nrLblk * (Units.sectorsPerPblk << g.lblkShift)),
            lblkShift: UInt16(g.lblkShift), lblkPerZoneShift: UInt16(g.lblkPerZoneShift))
    }

    /// Formats `device` with `g`. Data pblks are left as they are: a clear bitmap makes them free.
    /// `progress` is called with (zones done, zones) now and then.
    public static func format(
        _ device: BlockDevice, geometry g: Geometry,
        progress: ((Int, Int) -> Void)? = nil
    ) throws {
        guard g.physicalBytes <= device.size else {
            throw CBDError("\(device.path): device has \(device.size) bytes, geometry needs \(g.physicalBytes)")
        }
        // 1. Invalidate any old header first.
        try device.zero(0..<Units.pblkSize)
        try device.sync()
        // 2. Bitmap and table of every zone read as zeros (holes in a file, discards on a disk).
        // Zones whose metadata is a hole already are skipped, found with one seek each: a new
        // sparse image of any size costs nothing here (a block device: every zone).
        let zones = TableScanner(device: device, geometry: g).zonesWithMetadata()
        for (i, z) in zones.enumerated() {
            try device.zero(g.metadataBytes(zone: z))
            if i & 1023 == 0 { progress?(z, g.nrZones) }
        }
        // 3. A short last zone marks the pblks it does not have as used.
        let last = g.nrZones - 1
        if g.dataPblkCount(last) < Units.pblksPerBitmap {
            try device.writePblks(Bitmap(dataPblks: g.dataPblkCount(last)).bytes, at: g.bitmapPblk(last))
        }
        try device.sync()
        // 4. The header, last.
        try device.writeHeader(header(for: g))
        try device.sync()
        progress?(g.nrZones, g.nrZones)
    }

    /// Refuses to write a header alone (`writeHeaderOnly`) over a valid one, unless `replace`,
    /// or for a geometry larger than the device.
    public static func checkHeaderOnly(_ device: BlockDevice, geometry g: Geometry, replace: Bool) throws {
        if !replace, (try? OpenedDevice(device, allowing: .interruptedUpdate)) != nil {
            throw CBDError("\(device.path): already holds a valid CBD header (use -f to replace it)")
        }
        guard g.physicalBytes <= device.size else {
            throw CBDError("\(device.path): has \(device.size) bytes, the geometry needs \(g.physicalBytes)")
        }
    }

    /// `mkfs.cbd -S` (as `mke2fs -S`): the header of `g` alone, DIRTY, over whatever pblk 0
    /// holds; the zones are left as they are for fsck.cbd to check against it.
    public static func writeHeaderOnly(_ device: BlockDevice, geometry g: Geometry, replace: Bool) throws {
        try checkHeaderOnly(device, geometry: g, replace: replace)
        var h = header(for: g)
        h.isDirty = true
        try device.writeHeader(h)
        try device.sync()
    }
}
