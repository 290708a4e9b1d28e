// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice

/// Writers never trust a bitmap blindly: before a writer takes a free pblk from a zone, or
/// changes a block of that zone, the zone's own entries are read once and every pblk they
/// name must be marked in its bitmap. A bitmap that lies (a zeroed bitmap pblk, a bit flipped
/// by a failing disk) would otherwise hand out pblks that hold other blocks' data. A zone
/// that fails is refused with `.corrupt` and the advice to run fsck.cbd, before anything is
/// written.
///
/// What it does not see: entries of *other* zones that name this zone's pblks (writers put a
/// block's data in its own zone first, so these are the spill-over of full zones); each of
/// those zones is checked in turn when it is written. The cost is one read of a zone's table
/// the first time the zone is used (nothing for a zone whose table is a hole), and memory of
/// one bit per zone used.
package final class BitmapTrust {
    let device: BlockDevice
    let geometry: Geometry
    let meta: MetadataCache
    private var trusted: Set<Int> = []

    package init(device: BlockDevice, geometry: Geometry, meta: MetadataCache) {
        self.device = device
        self.geometry = geometry
        self.meta = meta
    }

    /// Throws unless every pblk that zone `z`'s entries name is marked in its zone's bitmap.
    package func require(zone z: Int) throws {
        guard !trusted.contains(z) else { return }
        let codec = EntryCodec(geometry)
        let scanner = TableScanner(device: device, geometry: geometry)
        var problem: CBDError?
        try scanner.forEachEntry(zone: z, buffer: scanner.makeBuffer()) { n, p in
            guard problem == nil else { return }
            let e: AllocationEntry
            do { e = try codec.decodeChecked(p) } catch {
                problem = CBDError(
                    "\(device.path): logical block \(n) has a malformed entry (\(error)); "
                        + "nothing was written", hint: .check, kind: .corrupt)
                return
            }
            for pblk in e.pblks {
                guard case .data(let zone, let k) = geometry.place(ofPblk: Int(pblk)) else { continue }
                if try !meta.bitmap(zone).isSet(k) {
                    problem = CBDError(
                        "\(device.path): zone \(zone)'s bitmap does not mark pblk \(pblk), which "
                            + "logical block \(n) uses; nothing was written", hint: .check, kind: .corrupt)
                    return
                }
            }
        }
        if let problem { throw problem }
        trusted.insert(z)
    }
}
