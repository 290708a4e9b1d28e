/// The logical device of a CBD: read, write and discard any byte range, as the kernel target
/// does (look up the entry, read and decompress the block, modify it, compress it, allocate,
/// write), in user space.
///
/// Logical blocks are cached (write-back) in a bounded cache. When a dirty block must leave
/// the cache, every dirty block is committed *synchronously* before its cache slot is reused,
/// so a block read again always comes from a committed entry: the stale read of the seed's
/// kernel target (object flushed, reused, the old block read while its write is in flight)
/// cannot happen.
///
/// Commits follow format-v1's copy-on-write order: new data and new bitmap bits (sync),
/// then new entries (sync; entries that straddle two table pblks go through the
/// `EntryJournal`), then the old pblks' bits are cleared (sync). The header's DIRTY flag is
/// set and synced before the first change and cleared by `close()`.
///
/// A device that was not closed cleanly (DIRTY) is not written unless `force` is given:
/// its bitmaps may be wrong, and a write could reuse a pblk that a block still needs.
public final class Volume {
    public let device: BlockDevice
    public private(set) var header: Header
    public let geometry: Geometry
    let codec: EntryCodec
    let meta: MetadataCache
    private let allocator: PblkAllocator
    private var blocks: LRU<Int, CachedBlock>
    private var markedDirty = false
    /// Write even though the device was found DIRTY.
    private let force: Bool
    private var scratch: [UInt8]

    final class CachedBlock {
        var data: [UInt8]
        var dirty = false
        init(_ data: [UInt8]) { self.data = data }
    }

    /// Opens the CBD on `device`. `cacheBytes` bounds the logical block cache (at least one
    /// block); `force` allows writing a device found DIRTY (after completing an interrupted
    /// entry write, if the header holds one).
    public init(device: BlockDevice, cacheBytes: Int = 32 << 20, force: Bool = false) throws {
        self.device = device
        self.force = force
        (header, geometry) = try device.readHeader()
        codec = EntryCodec(geometry)
        meta = MetadataCache(device: device, geometry: geometry)
        allocator = PblkAllocator(meta: meta, layout: geometry)
        blocks = LRU(capacity: max(1, cacheBytes / geometry.lblkSize))
        scratch = [UInt8](repeating: 0, count: geometry.lblkSize)
    }

    public var logicalSize: Int { geometry.logicalBytes }
    var cacheCapacity: Int { blocks.capacity }

    // MARK: Byte ranges

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try checkRange(offset, buffer.count)
        try forEachBlock(offset, buffer.count) { n, inner, done, len in
            let b = try block(n, load: true)
            b.data.withUnsafeBytes { src in
                (buffer.baseAddress! + done).copyMemory(from: src.baseAddress! + inner, byteCount: len)
            }
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        try checkRange(offset, buffer.count)
        try beginChanges()
        try forEachBlock(offset, buffer.count) { n, inner, done, len in
            let b = try block(n, load: len < geometry.lblkSize)
            b.data.withUnsafeMutableBytes { dst in
                (dst.baseAddress! + inner).copyMemory(from: buffer.baseAddress! + done, byteCount: len)
            }
            b.dirty = true
        }
    }

    /// Makes the range read as zeros; whole blocks become unallocated at the next commit.
    public func discard(offset: Int, length: Int) throws {
        try checkRange(offset, length)
        try beginChanges()
        try forEachBlock(offset, length) { n, inner, _, len in
            let b = try block(n, load: len < geometry.lblkSize)
            b.data.withUnsafeMutableBytes { dst in
                _ = (dst.baseAddress! + inner).initializeMemory(as: UInt8.self, repeating: 0, count: len)
            }
            b.dirty = true
        }
    }

    /// Whether lblk `n` holds data: a block waiting in the cache, or an allocated entry (an
    /// unallocated block reads as zeros and takes no space: a hole to NBD clients).
    public func isAllocated(_ n: Int) throws -> Bool {
        if let b = blocks.peek(n), b.dirty { return true }
        return try entry(n) != .unallocated
    }

    /// Commits every dirty block; the device stays marked DIRTY until `close()`.
    public func flush() throws {
        let dirty = blocks.keys.filter { blocks.peek($0)?.dirty == true }.sorted()
        try commit(dirty)
    }

    /// Commits everything and clears DIRTY: the device is clean again.
    public func close() throws {
        try flush()
        if markedDirty {
            try device.setDirty(false, in: &header)
            markedDirty = false
        }
    }

    private func checkRange(_ offset: Int, _ length: Int) throws {
        guard offset >= 0, length >= 0, offset <= logicalSize, length <= logicalSize - offset else {
            throw CBDError("\(device.path): range \(offset)+\(length) is outside the logical size \(logicalSize)")
        }
    }

    /// Calls `body(lblk, offset in block, offset in buffer, length)` for each block of a range.
    private func forEachBlock(_ offset: Int, _ length: Int,
                              _ body: (Int, Int, Int, Int) throws -> Void) throws {
        var done = 0
        while done < length {
            let pos = offset + done
            let n = pos / geometry.lblkSize, inner = pos % geometry.lblkSize
            let len = min(geometry.lblkSize - inner, length - done)
            try body(n, inner, done, len)
            done += len
        }
    }

    private func beginChanges() throws {
        guard !markedDirty else { return }
        guard device.isWritable else { throw CBDError("\(device.path): opened read-only") }
        if header.isDirty {
            guard force else { throw CBDError("\(device.path): not cleanly closed (DIRTY)", hint: .checkOrForce) }
            _ = try EntryJournal(device: device, geometry: geometry).replay(header: &header)
        }
        try device.setDirty(true, in: &header)
        markedDirty = true
    }

    // MARK: Block cache

    /// The cached block `n`, loading it from disk when `load` (else zero-filled, for a full overwrite).
    private func block(_ n: Int, load: Bool) throws -> CachedBlock {
        if let b = blocks[n] { return b }
        if blocks.count >= blocks.capacity {
            // A clean block leaves first: it is on disk as it is. Only when every slot holds a
            // dirty block is the whole dirty set committed, as one batch (a few syncs for the
            // lot, not per block), before a slot is reused: no block is ever read while its
            // write is pending.
            if let clean = blocks.oldestKey(where: { !$0.dirty }) {
                blocks.remove(clean)
            } else {
                try flush()
                if let victim = blocks.oldestKey() { blocks.remove(victim) }
            }
        }
        let b = CachedBlock(load ? try loadBlock(n) : [UInt8](repeating: 0, count: geometry.lblkSize))
        _ = blocks.insert(n, b)
        return b
    }

    /// The entry of lblk `n`, validated: well formed, slots naming data pblks.
    func entry(_ n: Int) throws -> AllocationEntry {
        let bytes = try meta.entryBytes(n)
        do { return try codec.decodeChecked(bytes) } catch {
            throw error.readError(path: device.path, lblk: n)
        }
    }

    /// Reads and decompresses lblk `n` from disk.
    func loadBlock(_ n: Int) throws -> [UInt8] {
        guard header.intent == nil else {
            throw CBDError("\(device.path): an update of the allocation tables was interrupted", hint: .check)
        }
        var out = [UInt8](repeating: 0, count: geometry.lblkSize)
        switch try entry(n) {
        case .unallocated:
            break
        case .raw(let pblks):
            try out.withUnsafeMutableBytes { try device.readPblkRuns(pblks, into: $0.baseAddress!) }
        case .compressed(let len, let pblks):
            try scratch.withUnsafeMutableBytes { try device.readPblkRuns(pblks, into: $0.baseAddress!) }
            let ok = scratch.withUnsafeBytes { src in out.withUnsafeMutableBytes { dst in
                LZ4Codec.decompress(src.baseAddress!, count: len, into: dst.baseAddress!, expected: dst.count) } }
            guard ok else {
                throw CBDError("\(device.path): logical block \(n): compressed data is corrupt")
            }
        }
        return out
    }

    // MARK: Commit (copy on write)

    private func commit(_ lblks: [Int]) throws {
        guard !lblks.isEmpty else { return }
        var newEntries: [(Int, AllocationEntry, old: AllocationEntry)] = []
        // 1. New data in newly allocated pblks, and their bits.
        do {
            for n in lblks {
                guard let b = blocks.peek(n) else { continue }
                let old = (try? entry(n)) ?? .unallocated
                let e = try store(b.data, lblk: n)
                newEntries.append((n, e, old))
            }
        } catch {
            try abandon(lblks, allocated: newEntries.flatMap { $0.1.pblks })
            throw error
        }
        try meta.writeDirtyBitmaps()
        try device.sync()
        // 2. The entries now point to the new data (synced).
        try EntryJournal(device: device, geometry: geometry).write(
            newEntries.map { ($0.0, codec.encode($0.1)) }, meta: meta, header: &header,
            reserve: { try allocator.allocate($0, near: 0) }, release: { try allocator.free($0) })
        // 3. Only then are the old pblks free.
        for (_, _, old) in newEntries { try allocator.free(old.pblks) }
        try meta.writeDirtyBitmaps()
        try device.sync()
        // Their bytes no longer matter: an image file gets its space back.
        device.release(pblks: newEntries.flatMap { $0.old.pblks })
        for n in lblks { blocks.peek(n)?.dirty = false }
    }

    /// Blocks whose new contents were dropped because they could not be stored (no space):
    /// they keep their old contents. Sorted.
    public private(set) var abandonedLblks: [Int] = []

    /// Gives up a commit that failed before any entry changed: its pblks are free again and
    /// its blocks leave the cache with their old contents on disk, so that the device can
    /// still be closed clean and consistent.
    private func abandon(_ lblks: [Int], allocated: [Pblk]) throws {
        try allocator.free(allocated)
        try meta.writeDirtyBitmaps()
        try device.sync()
        for n in lblks { blocks.remove(n) }
        abandonedLblks = (abandonedLblks + lblks).sorted()
    }

    /// Compresses (or not) and writes block data to fresh pblks; returns the entry to commit.
    private func store(_ data: [UInt8], lblk n: Int) throws -> AllocationEntry {
        if data.allSatisfy({ $0 == 0 }) { return .unallocated }
        var len: Int? = nil
        if codec.maxCompressedLength > 0 {
            len = data.withUnsafeBytes { src in scratch.withUnsafeMutableBytes { dst in
                LZ4Codec.compress(src.baseAddress!, count: src.count, into: dst.baseAddress!,
                                  capacity: codec.maxCompressedLength) } }
        }
        let count = len.map { ($0 + Units.pblkSize - 1) / Units.pblkSize } ?? geometry.pblkPerLblk
        guard let pblks = try allocator.allocate(count, near: geometry.zone(ofLblk: n)) else {
            throw CBDError("\(device.path): no space left on the device")
        }
        try (len == nil ? data : scratch).withUnsafeBytes { src in
            for (i, p) in pblks.enumerated() {
                let piece = UnsafeRawBufferPointer(rebasing: src[i * Units.pblkSize ..< (i + 1) * Units.pblkSize])
                try device.write(piece, at: Int(p) * Units.pblkSize)
            }
        }
        if let l = len { return .compressed(length: l, pblks: pblks) }
        return .raw(pblks: pblks)
    }
}
