// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
/// Bitmaps and table pblks of a device, read on demand and kept in bounded LRU caches.
///
/// Changes are made in memory and marked dirty; `writeDirtyBitmaps()` and `writeDirtyTables()`
/// write them back, and nothing else does: a dirty page is never evicted (the caches may hold
/// more than their capacity while a commit has many dirty pages), so the writer that calls
/// them (the Volume's commit, fsck's repairs, a resize) alone decides the order in which
/// metadata reaches the device, as format-v1's copy-on-write order requires.
package final class MetadataCache {
    let device: BlockDevice
    let geometry: Geometry
    private var bitmaps = LRU<Int, Bitmap>(capacity: 1024)
    private var tablePblks = LRU<Int, [UInt8]>(capacity: 4096)
    private var dirtyBitmaps: Set<Int> = []
    private var dirtyTablePblks: Set<Int> = []

    package init(device: BlockDevice, geometry: Geometry) {
        self.device = device
        self.geometry = geometry
    }

    // MARK: Bitmaps

    /// Whether zone `z`'s bitmap is in the cache (possibly changed since it was read).
    func hasBitmap(_ z: Int) -> Bool { bitmaps.peek(z) != nil }

    /// The zones whose bitmap is cached, in no order.
    var cachedBitmapZones: [Int] { Array(bitmaps.keys) }

    package func bitmap(_ z: Int) throws -> Bitmap {
        if let b = bitmaps[z] { return b }
        let b = Bitmap(bytes: try device.readPblks(geometry.bitmapPblk(z)))
        try insertBitmap(z, b)
        return b
    }

    func updateBitmap(_ z: Int, _ change: (inout Bitmap) -> Void) throws {
        var b = try bitmap(z)
        change(&b)
        bitmaps[z] = b
        dirtyBitmaps.insert(z)
    }

    private func insertBitmap(_ z: Int, _ b: Bitmap) throws {
        let evicted = bitmaps.insert(z, b, keeping: dirtyBitmaps.contains)
        precondition(evicted.map { !dirtyBitmaps.contains($0) } ?? true, "a dirty bitmap was evicted")
    }

    // MARK: Tables

    private func tablePblk(_ p: Int) throws -> [UInt8] {
        if let b = tablePblks[p] { return b }
        let b = try device.readPblks(p)
        let evicted = tablePblks.insert(p, b, keeping: dirtyTablePblks.contains)
        precondition(evicted.map { !dirtyTablePblks.contains($0) } ?? true, "a dirty table pblk was evicted")
        return b
    }

    /// The raw bytes of lblk `n`'s entry (which may straddle table pblks).
    package func entryBytes(_ n: Int) throws -> [UInt8] {
        let offset = geometry.entryOffset(ofLblk: n)
        var out = [UInt8](repeating: 0, count: geometry.entryLen)
        var done = 0
        while done < out.count {
            let pos = offset + done
            let block = try tablePblk(pos / Units.pblkSize)
            let inner = pos % Units.pblkSize
            let n = min(Units.pblkSize - inner, out.count - done)
            out.replaceSubrange(done..<done + n, with: block[inner..<inner + n])
            done += n
        }
        return out
    }

    func setEntryBytes(_ n: Int, _ bytes: [UInt8]) throws {
        let offset = geometry.entryOffset(ofLblk: n)
        var done = 0
        while done < bytes.count {
            let pos = offset + done
            let p = pos / Units.pblkSize
            var block = try tablePblk(p)
            let inner = pos % Units.pblkSize
            let n = min(Units.pblkSize - inner, bytes.count - done)
            block.replaceSubrange(inner..<inner + n, with: bytes[done..<done + n])
            tablePblks[p] = block
            dirtyTablePblks.insert(p)
            done += n
        }
    }

    // MARK: Write-back

    package func writeDirtyBitmaps() throws {
        for z in dirtyBitmaps.sorted() {
            if let b = bitmaps[z] { try device.writePblks(b.bytes, at: geometry.bitmapPblk(z)) }
        }
        dirtyBitmaps.removeAll()
    }

    func writeDirtyTables() throws {
        for p in dirtyTablePblks.sorted() {
            if let b = tablePblks[p] { try device.writePblks(b, at: p) }
        }
        dirtyTablePblks.removeAll()
    }
}
