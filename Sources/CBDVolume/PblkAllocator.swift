// SPDX-License-Identifier: Apache-2.0
import CBDFormat
/// Takes and gives back data pblks through a device's bitmaps (held in a `MetadataCache`),
/// zone by zone from the block's own zone (`Geometry.zones(from:)`), remembering where each
/// zone's last search ended so that allocation does not rescan from the start.
///
/// It also counts free pblks, lazily: zones are counted in order from zone 0 only as far as a
/// caller needs (`countFree(atLeast:)`), and the count follows every allocation and free in
/// the counted zones. A writer of a large, mostly empty device reads one bitmap, not all.
///
/// `layout` bounds the search: the device's own geometry for a `Volume`, the smaller new one
/// while a shrink moves blocks below the cut.
package final class PblkAllocator {
    let meta: MetadataCache
    let layout: Geometry
    /// Next data index to try in each zone.
    private var hint: [Int: Int] = [:]
    /// Zones searched whole without a free bit since their last free: skipped, so that
    /// allocating on a nearly full device does not rescan every full bitmap for every block.
    private var exhausted: Set<Int> = []
    /// Zones `0 ..< countedZones` are counted in `countedFree`.
    private(set) var countedZones = 0
    /// Free data pblks in the counted zones, as the cached bitmaps say now.
    private(set) var countedFree = 0

    /// Called before the first pblk is taken from a zone: a writer checks there that the
    /// zone's bitmap can be trusted (`BitmapTrust`), and throws when not.
    package var beforeTaking: ((Int) throws -> Void)?

    package init(meta: MetadataCache, layout: Geometry) {
        self.meta = meta
        self.layout = layout
    }

    /// Whether every zone is counted: `countedFree` is then the device's free pblks.
    var countedAll: Bool { countedZones >= layout.nrZones }

    /// Counts further zones until at least `k` free pblks are counted or every zone is;
    /// returns whether `k` are.
    ///
    /// Zones whose bitmap pblk is a hole on the device (and not cached) are all free: a run of
    /// them is counted at once, found with one SEEK_DATA, so counting a huge sparse device costs
    /// a seek per zone that holds metadata, not a read per zone.
    func countFree(atLeast k: Int) throws -> Bool {
        while countedFree < k && !countedAll {
            let holes = freeZones(from: countedZones)
            if holes > 0 {
                let z = countedZones, last = layout.nrZones - 1
                countedFree +=
                    holes * Units.pblksPerBitmap
                    - (z + holes > last ? Units.pblksPerBitmap - layout.dataPblkCount(last) : 0)
                countedZones += holes
                continue
            }
            let z = countedZones
            let limit = layout.dataPblkCount(z)
            countedFree += limit - (try meta.bitmap(z)).countSet(below: limit)
            countedZones += 1
        }
        return countedFree >= k
    }

    /// How many zones from `z` on have a bitmap that is a hole on the device and not cached
    /// (all free); 0 when zone `z`'s must be read.
    private func freeZones(from z: Int) -> Int {
        guard !meta.hasBitmap(z) else { return 0 }
        let g = layout
        let at = meta.device.nextData(from: g.bitmapPblk(z) * Units.pblkSize).map { $0 / Units.pblkSize }
        // Zones whose bitmap pblk lies before the next data.
        var end = at.map { g.zones(withBitmapBefore: $0) } ?? g.nrZones
        if let cached = meta.cachedBitmapZones.filter({ $0 >= z }).min() { end = min(end, cached) }
        return max(0, end - z)
    }

    /// Takes `count` free data pblks, marking them in the (cached) bitmaps; nil, with nothing
    /// taken, when the device has fewer free.
    package func allocate(_ count: Int, near home: Int) throws -> [Pblk]? {
        var out: [Pblk] = []
        for z in layout.zones(from: home) where !exhausted.contains(z) {
            // Stop as soon as enough are taken: a `where` clause alone would walk every zone.
            guard out.count < count else { break }
            let limit = layout.dataPblkCount(z)
            var bm = try meta.bitmap(z)
            var k = hint[z] ?? 0
            var taken: [Int] = []
            while out.count + taken.count < count {
                guard
                    let f = bm.firstClear(from: k, below: limit)
                        ?? (k > 0
                            ? bm.firstClear(
                                from: 0,
                                below: limit) : nil)
                else { break }
                if taken.isEmpty { try beforeTaking?(z) }
                bm.set(f)
                taken.append(f)
                k = f + 1
            }
            if out.count + taken.count < count { exhausted.insert(z) }
            hint[z] = k
            if !taken.isEmpty {
                try meta.updateBitmap(z) { b in for f in taken { b.set(f) } }
                if z < countedZones { countedFree -= taken.count }
                out += taken.map { Pblk(layout.dataStart(z) + $0) }
            }
        }
        guard out.count == count else {
            try free(out)
            return nil
        }
        return out
    }

    /// Clears the bits of `pblks` (data pblks; anything else, or a bit already clear, is ignored).
    package func free(_ pblks: [Pblk]) throws {
        for p in pblks {
            guard case .data(let z, let k) = layout.place(ofPblk: Int(p)) else { continue }
            guard (try meta.bitmap(z)).isSet(k) else { continue }
            try meta.updateBitmap(z) { $0.clear(k) }
            if z < countedZones { countedFree += 1 }
            exhausted.remove(z)
            hint[z] = min(hint[z] ?? k, k)
        }
    }
}
