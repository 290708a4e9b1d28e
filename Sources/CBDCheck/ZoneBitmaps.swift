// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume

/// The zones a check reads, and their bitmaps as found on the device.
///
/// On a sparse image, a zone whose bitmap and table pblks are all holes holds nothing: its
/// table is all zeros (no entry, no claim) and its bitmap says every pblk is free, which is
/// right unless some other zone's entry claims one of its pblks (pass 2 then looks at it).
/// Such zones are found without reading them (SEEK_DATA, one seek per zone that holds
/// metadata), so a check costs what the device holds, not its size. A block device has no
/// holes: every zone is read, in one sequential pass.
struct ZoneBitmaps {
    /// Zones whose metadata holds data on the device (and a short last zone, whose bitmap
    /// padding must be set), in order.
    private(set) var active: [Int] = []
    /// Bitmaps that are not all zeros; a missing one reads as all free.
    private var stored: [Int: Bitmap] = [:]
    private let geometry: Geometry

    init(geometry: Geometry) { self.geometry = geometry }

    /// Finds the active zones of `device` and reads their bitmaps.
    mutating func load(from device: BlockDevice) throws {
        let g = geometry
        stored = [:]
        active = TableScanner(device: device, geometry: g).zonesWithMetadata()
        let last = g.nrZones - 1
        if g.dataPblkCount(last) < Units.pblksPerBitmap && active.last != last { active.append(last) }
        for z in active {
            let b = Bitmap(bytes: try device.readPblks(g.bitmapPblk(z)))
            if b.bytes.contains(where: { $0 != 0 }) { stored[z] = b }
        }
    }

    subscript(z: Int) -> Bitmap {
        get { stored[z] ?? Bitmap(dataPblks: Units.pblksPerBitmap) }
        set { stored[z] = newValue }
    }

    /// Data pblks the bitmaps mark in use (padding bits not counted).
    var markedPblks: Int {
        stored.reduce(0) { $0 + $1.value.countSet(below: geometry.dataPblkCount($1.key)) }
    }

    /// Zones whose stored bitmap is not all free, in no order.
    var markedZones: Dictionary<Int, Bitmap>.Keys { stored.keys }

    /// Bytes the stored bitmaps take.
    var memoryBytes: Int { stored.count * Units.pblkSize + active.count * MemoryLayout<Int>.size }
}
