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
/// then new entries (sync), then the old pblks' bits are cleared (sync). The header's DIRTY
/// flag is set and synced before the first change and cleared by `close()`.
public final class Volume {
    public let device: BlockDevice
    public private(set) var header: Header
    public let geometry: Geometry
    let codec: EntryCodec
    let meta: MetadataCache
    private var blocks: LRU<Int, CachedBlock>
    private var markedDirty = false
    /// Next data index to try in each zone, so allocation does not rescan from 0.
    private var allocHint: [Int: Int] = [:]
    private var scratch: [UInt8]

    final class CachedBlock {
        var data: [UInt8]
        var dirty = false
        init(_ data: [UInt8]) { self.data = data }
    }

    /// Opens the CBD on `device`. `cacheBytes` bounds the logical block cache (at least one block).
    public init(device: BlockDevice, cacheBytes: Int = 32 << 20) throws {
        self.device = device
        (header, geometry) = try device.readHeader()
        codec = EntryCodec(geometry)
        meta = MetadataCache(device: device, geometry: geometry)
        blocks = LRU(capacity: max(1, cacheBytes / geometry.lblkSize))
        scratch = [UInt8](repeating: 0, count: geometry.lblkSize)
    }

    public var logicalSize: Int { geometry.logicalBytes }
    public var cacheCapacity: Int { blocks.capacity }

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

    /// Commits every dirty block; the device stays marked DIRTY until `close()`.
    public func flush() throws {
        let dirty = blocks.keys.filter { blocks.peek($0)?.dirty == true }.sorted()
        try commit(dirty)
    }

    /// Commits everything and clears DIRTY: the device is clean again.
    public func close() throws {
        try flush()
        if markedDirty {
            header.isDirty = false
            try device.writeHeader(header)
            try device.sync()
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
        header.isDirty = true
        try device.writeHeader(header)
        try device.sync()
        markedDirty = true
    }

    // MARK: Block cache

    /// The cached block `n`, loading it from disk when `load` (else zero-filled, for a full overwrite).
    private func block(_ n: Int, load: Bool) throws -> CachedBlock {
        if let b = blocks[n] { return b }
        if blocks.count >= blocks.capacity {
            // Commit before any slot is reused: no block is ever read while its write is pending.
            try flush()
            if let victim = blocks.oldestKey() { blocks.remove(victim) }
        }
        let b = CachedBlock(load ? try loadBlock(n) : [UInt8](repeating: 0, count: geometry.lblkSize))
        _ = blocks.insert(n, b)
        return b
    }

    /// The entry of lblk `n`, validated: well formed, slots naming data pblks.
    func entry(_ n: Int) throws -> AllocationEntry {
        let bytes = try meta.entryBytes(n)
        let e: AllocationEntry
        do { e = try codec.decode(bytes) } catch {
            throw CBDError("\(device.path): logical block \(n): corrupt entry: \(error)")
        }
        for p in e.pblks where p >= UInt64(geometry.nrPblk) || geometry.dataZone(ofPblk: Int(p)) == nil {
            throw CBDError("\(device.path): logical block \(n): entry names pblk \(p) outside the data area")
        }
        return e
    }

    /// Reads and decompresses lblk `n` from disk.
    func loadBlock(_ n: Int) throws -> [UInt8] {
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
        for n in lblks {
            guard let b = blocks.peek(n) else { continue }
            let old = (try? entry(n)) ?? .unallocated
            let e = try store(b.data, lblk: n)
            newEntries.append((n, e, old))
        }
        try meta.writeDirtyBitmaps()
        try device.sync()
        // 2. The entries now point to the new data.
        for (n, e, _) in newEntries { try meta.setEntryBytes(n, codec.encode(e)) }
        try meta.writeDirtyTables()
        try device.sync()
        // 3. Only then are the old pblks free.
        for (_, _, old) in newEntries { try free(old.pblks) }
        try meta.writeDirtyBitmaps()
        try device.sync()
        for n in lblks { blocks.peek(n)?.dirty = false }
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
        let pblks = try allocate(count, near: geometry.zone(ofLblk: n))
        try (len == nil ? data : scratch).withUnsafeBytes { src in
            for (i, p) in pblks.enumerated() {
                let piece = UnsafeRawBufferPointer(rebasing: src[i * Units.pblkSize ..< (i + 1) * Units.pblkSize])
                try device.write(piece, at: Int(p) * Units.pblkSize)
            }
        }
        if let l = len { return .compressed(length: l, pblks: pblks) }
        return .raw(pblks: pblks)
    }

    /// Takes `count` free data pblks, from zone `home` first, then the following zones.
    private func allocate(_ count: Int, near home: Int) throws -> [Pblk] {
        var out: [Pblk] = []
        for step in 0..<geometry.nrZones where out.count < count {
            let z = (home + step) % geometry.nrZones
            let limit = geometry.dataPblkCount(z)
            var bm = try meta.bitmap(z)
            var k = allocHint[z] ?? 0
            var taken: [Int] = []
            while out.count + taken.count < count {
                guard let f = bm.firstClear(from: k, below: limit) ?? (k > 0 ? bm.firstClear(from: 0, below: limit) : nil)
                else { break }
                bm.set(f)
                taken.append(f)
                k = f + 1
            }
            allocHint[z] = k
            if !taken.isEmpty {
                try meta.updateBitmap(z) { b in for f in taken { b.set(f) } }
                out += taken.map { Pblk(geometry.dataStart(z) + $0) }
            }
        }
        guard out.count == count else {
            // Give back what was taken; the device is full.
            try free(out)
            throw CBDError("\(device.path): no space left on the device")
        }
        return out
    }

    private func free(_ pblks: [Pblk]) throws {
        for p in pblks {
            guard case .data(let z, let k) = geometry.place(ofPblk: Int(p)) else { continue }
            try meta.updateBitmap(z) { $0.clear(k) }
            allocHint[z] = min(allocHint[z] ?? k, k)
        }
    }
}
