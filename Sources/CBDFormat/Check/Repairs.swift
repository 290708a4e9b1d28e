/// The repairs decided by the passes, written in format-v1's copy-on-write order: cloned data,
/// then entries and table padding, then bitmaps, each synced before the next; DIRTY is set
/// before the first change and cleared only when every problem was fixed.
extension Checker {
    func writeRepairs() throws {
        let changes = !clonedData.isEmpty || !newEntries.isEmpty || !clearPadding.isEmpty || !changedBitmaps.isEmpty
        guard changes || header.isDirty else { return }
        guard device.isWritable else { throw CBDError("\(device.path): opened read-only, cannot repair") }
        if !header.isDirty { try device.setDirty(true, in: &header) }
        // 1. Copies of cross-linked data.
        for (from, to) in clonedData { try device.writePblks(try device.readPblks(from), at: to) }
        try device.sync()
        // 2. Entries and table padding.
        let meta = MetadataCache(device: device, geometry: geometry)
        for (n, e) in newEntries.sorted(by: { $0.key < $1.key }) {
            try meta.setEntryBytes(n, codec.encode(e ?? .unallocated))
        }
        try meta.writeDirtyTables()
        for z in clearPadding.sorted() { try device.zero(geometry.tablePadding(zone: z)) }
        try device.sync()
        // 3. Bitmaps.
        for z in changedBitmaps.sorted() { try device.writePblks(bitmaps[z].bytes, at: geometry.bitmapPblk(z)) }
        try device.sync()
        modified = changes
        // 4. Clean again, unless something was left unfixed.
        if problems.allSatisfy({ $0.fixed }) { try device.setDirty(false, in: &header) }
    }
}
