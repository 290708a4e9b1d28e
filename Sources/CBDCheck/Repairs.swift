// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDVolume
/// The repairs decided by the passes, written in format-v1's copy-on-write order: cloned data,
/// then entries and table padding, then bitmaps, each synced before the next; DIRTY is set
/// before the first change and cleared only when every problem was fixed.
extension Checker {
    func writeRepairs() throws {
        // 0. Orphaned data saved (and synced) before any pblk that holds it is freed; then the
        // header's own repairs (a truncated file grown back, a header found again).
        try saveOrphans()
        try writeHeaderRepairs()
        let changes = !clonedData.isEmpty || !newEntries.isEmpty || !clearPadding.isEmpty || !changedBitmaps.isEmpty
        modified = modified || changes
        guard changes || header.isDirty else { return }
        guard device.isWritable else { throw CBDError("\(device.path): opened read-only, cannot repair") }
        if !header.isDirty { try device.setDirty(true, in: &header) }
        // 1. Copies of cross-linked data.
        for (from, to) in clonedData { try device.writePblks(try device.readPblks(from), at: to) }
        try device.sync()
        // 2. Table padding, then entries (synced; straddling ones through the journal, in
        // pblks no entry claims).
        for z in clearPadding.sorted() { try device.zero(geometry.tablePadding(zone: z)) }
        let meta = MetadataCache(device: device, geometry: geometry)
        let entries = newEntries.sorted { $0.key < $1.key }.map { ($0.key, codec.encode($0.value.entry)) }
        try EntryJournal(device: device, geometry: geometry).write(
            entries, meta: meta, header: &header,
            reserve: { count in
                let pblks = (0..<count).compactMap { _ in claims.allocate(near: 0) }
                if pblks.count < count { unclaim(pblks); return nil }
                return pblks.map { Pblk($0) }
            },
            release: { unclaim($0.map { Int($0) }) })
        // 3. Bitmaps.
        for z in changedBitmaps.sorted() { try device.writePblks(bitmaps[z].bytes, at: geometry.bitmapPblk(z)) }
        try device.sync()
        // 4. Clean again, unless something was left unfixed.
        if problems.allSatisfy({ $0.fixed }) {
            try device.setDirty(false, in: &header)
            modified = true
        } else {
            // Left DIRTY for what is still wrong: "not closed cleanly" was not fixed either.
            for i in problems.indices where problems[i].kind == .notClosedCleanly { problems[i].fixed = false }
        }
    }

    /// Gives back pblks claimed for the journal (their bitmap bits were never set).
    private func unclaim(_ pblks: [Int]) {
        for p in pblks { if let i = claims.index(p) { claims.release(i) } }
    }
}
