// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
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
/// A write is accepted only when the space to store it is certain (`SpaceLedger`): every
/// dirty block holds a reservation of pblks, so a commit never runs out of room and no
/// acknowledged write is dropped. A request that does not fit is refused whole, changing
/// nothing (`CBDError.Kind.noSpace`); one that makes whole blocks zero needs no space.
///
/// A device that was not closed cleanly (DIRTY) is not written unless `force` is given:
/// its bitmaps may be wrong, and a write could reuse a pblk that a block still needs.
public final class Volume {
    public let device: BlockDevice
    public private(set) var header: Header
    public let geometry: Geometry
    let codec: EntryCodec
    package let meta: MetadataCache
    /// Where entries that straddle two table pblks are written first (format-v1.1's intent).
    private let journal: EntryJournal
    private let allocator: PblkAllocator
    /// Each zone's bitmap checked against its entries before the zone is written.
    private let trust: BitmapTrust
    private let ledger: SpaceLedger
    var blocks: LRU<Int, CachedBlock>
    private var markedDirty = false
    /// Write even though the device was found DIRTY.
    private let force: Bool
    /// How hard written blocks are compressed (LZ4HC from 2): a writer's choice, read the same.
    public var level = CompressionLevel.fast
    /// Compressed input of a block being loaded (made at the first load: a volume that is only
    /// read in parts never holds a whole block of it).
    /// (A buffer object, not a lazy array: a lazy property's in-place access copies it.)
    private lazy var scratch = ByteBuffer(count: geometry.lblkSize)
    /// Guards the caches for `readShared` callers, who run at once.
    let sharedLock = Lock()
    /// Counts the publications of entries (commits, replays): a block read ahead of a write
    /// (`prefetch`) is still what the device holds while this has not moved.
    var entryGeneration = 0
    /// What was done ahead for the write in progress (`write(_:at:ahead:)`).
    var ready: WriteAhead?

    /// Opens the CBD on `device`. `cacheBytes` bounds the logical block cache (at least one
    /// block); `force` allows writing a device found DIRTY (after completing an interrupted
    /// entry write, if the header holds one).
    public convenience init(device: BlockDevice, cacheBytes: Int = 32 << 20, force: Bool = false) throws {
        try self.init(try OpenedDevice(device, allowing: .interruptedUpdate), cacheBytes: cacheBytes, force: force)
    }

    /// The Volume of a device already opened (an interrupted update is replayed before the
    /// first write, with `force`; until then reads refuse it).
    public init(_ opened: OpenedDevice, cacheBytes: Int = 32 << 20, force: Bool = false) throws {
        device = opened.device
        self.force = force
        (header, geometry) = (opened.header, opened.geometry)
        codec = opened.codec
        meta = opened.metadataCache()
        journal = opened.journal
        allocator = PblkAllocator(meta: meta, layout: geometry)
        trust = BitmapTrust(device: device, geometry: geometry, meta: meta)
        allocator.beforeTaking = { [trust] z in try trust.require(zone: z) }
        ledger = SpaceLedger(allocator: allocator, keep: journal.pblksPerRecord)
        blocks = LRU(capacity: max(1, cacheBytes / geometry.lblkSize))
    }

    public var logicalSize: Int { geometry.logicalBytes }
    var cacheCapacity: Int { blocks.capacity }

    // MARK: Byte ranges

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try checkRange(offset, buffer.count)
        let size = geometry.lblkSize
        try forEachBlock(offset, buffer.count) { n, inner, done, len in
            try block(n, load: true).copy(inner..<inner + len, to: buffer.baseAddress! + done, lblkSize: size)
        }
    }

    /// Writes a byte range. Refused whole, with nothing changed, when the device has no room
    /// for it (`.noSpace`); once it returns, the bytes are stored at the next commit for certain.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        try checkRange(offset, buffer.count)
        try change(offset, buffer.count, from: buffer.baseAddress)
    }

    /// Reads a byte range; many threads may call this at once, as long as nothing that changes
    /// the volume (write, discard, flush, close, `isAllocated`) runs meanwhile: the nbdkit
    /// plugin holds a reader-writer lock for that. A block waiting in the cache is copied under
    /// `sharedLock`; any other is read and decompressed by the calling thread into buffers of
    /// its own, without entering the cache, so readers share nothing else. A block that is not
    /// in the cache is committed, so this reads what a `read` would.
    public func readShared(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try checkRange(offset, buffer.count)
        try requireNoIntent()
        let size = geometry.lblkSize
        // A block of buffer (compressed input) for whole blocks, made only when one must come
        // from disk: a read served from the cache allocates nothing; part of a block is read
        // alone (`readBlock(part:)`).
        var buffers: ByteBuffer?
        try forEachBlock(offset, buffer.count) { n, inner, done, len in
            let dst = buffer.baseAddress! + done
            // A cached block is copied out after the lock (a packed one decodes outside it).
            let (cached, e): (CachedBlock.Snapshot?, AllocationEntry?) = try sharedLock.withLock {
                if let b = blocks.peek(n) { return (b.snapshot, nil) }
                return (nil, try entry(n))
            }
            if let cached { return try CachedBlock.copy(cached, inner..<inner + len, to: dst, lblkSize: size) }
            guard let e else { return }
            if e == .unallocated {
                dst.initializeMemory(as: UInt8.self, repeating: 0, count: len)
                return
            }
            if len == size {
                let b = buffers ?? ByteBuffer(uninitializedCount: size)  // each use reads into it first
                buffers = b
                try load(n, e, into: dst, scratch: b.base)
            } else {
                try device.readBlock(e, lblk: n, lblkSize: size, part: inner..<inner + len, into: dst)
            }
        }
    }

    /// Makes the range read as zeros; whole blocks become unallocated at the next commit and
    /// need no space, so this works on a full device. Zeroing part of a block that keeps data
    /// rewrites it, and needs room as a write does.
    public func discard(offset: Int, length: Int) throws {
        try checkRange(offset, length)
        try change(offset, length, from: nil)
    }

    /// Makes the whole blocks inside the range unallocated; the parts of blocks at its ends are
    /// left as they are (an NBD trim is advisory). Never needs space.
    public func trim(offset: Int, length: Int) throws {
        try checkRange(offset, length)
        let size = geometry.lblkSize
        let first = (offset + size - 1) / size * size, end = (offset + length) / size * size
        guard end > first else { return }
        try change(first, end - first, from: nil)
    }

    /// Data pblks of the device, how many are free (the cache's blocks not yet counted), and how
    /// many of those are promised to the cache's dirty blocks or kept for the entry journal.
    /// The first call reads every zone's bitmap once; later ones cost nothing.
    public func usage() throws -> (dataPblks: Int, free: Int, promised: Int) {
        let (free, promised) = try ledger.usage()
        return (geometry.totalDataPblks, free, promised)
    }

    /// Whether lblk `n` holds data: a block waiting in the cache, or an allocated entry (an
    /// unallocated block reads as zeros and takes no space: a hole to NBD clients).
    public func isAllocated(_ n: Int) throws -> Bool {
        if let b = blocks.peek(n), b.dirty { return true }
        return try entry(n) != .unallocated
    }

    /// The run of lblks from `n` (below `end`) that are all allocated or all not: whether they
    /// are, and the first lblk after the run. A run of zones whose tables are holes on the
    /// device (and that hold no block waiting in the cache) is passed whole, with one SEEK_DATA:
    /// mapping a huge, mostly empty device costs a seek per zone that holds metadata.
    public func allocationRun(from n: Int, below end: Int) throws -> (allocated: Bool, end: Int) {
        let allocated = try isAllocated(n)
        let waiting = Set(blocks.keys.filter { blocks.peek($0)?.dirty == true }.map { geometry.zone(ofLblk: $0) })
        var m = n + 1
        while m < end {
            if !allocated, let next = lblkAfterHoleTables(from: m, waiting: waiting), next > m {
                m = min(next, end)
                continue
            }
            guard try isAllocated(m) == allocated else { break }
            m += 1
        }
        return (allocated, m)
    }

    /// The first lblk past a run of unallocated lblks from `m` that the device's holes show
    /// (nil when `m`'s entry may hold data): entries that lie wholly in a hole of `m`'s table,
    /// or, when the rest of that table is a hole, every zone up to the next one whose table
    /// holds data. Zones in `waiting` (blocks waiting in the cache) are never passed.
    private func lblkAfterHoleTables(from m: Int, waiting: Set<Int>) -> Int? {
        let g = geometry, z = g.zone(ofLblk: m)
        guard !waiting.contains(z) else { return nil }
        let off = g.entryOffset(ofLblk: m)
        let at = device.nextData(from: off)
        let tableEnd = g.tablePblks(z).upperBound * Units.pblkSize
        if let at, at < tableEnd {
            // Data further on in this zone's table: the entries before it are zeros.
            let count = (at - off) / g.entryLen
            return count > 0 ? min(m + count, g.lblks(inZone: z).upperBound) : nil
        }
        // The rest of zone z's table is a hole, and so is that of every zone whose table ends
        // at or before the next data.
        var zEnd = at.map { max(z + 1, g.zones(withTableEndingBy: $0 / Units.pblkSize)) } ?? g.nrZones
        if let w = waiting.filter({ $0 > z }).min() { zEnd = min(zEnd, w) }
        return min(g.nrLblk, zEnd << g.lblkPerZoneShift)
    }

    /// Commits every dirty block (but those a background commit is storing, which it
    /// publishes: `isBeingStored`); the device stays marked DIRTY until `close()`.
    public func flush() throws { try flush(dirtyBy: .max) }

    /// Commits the blocks that were dirty when `changes` was `mark`, as they are now; those
    /// that became dirty after wait. An NBD flush promises the writes acknowledged before it
    /// came, no more: committing under the writer's lock the writes that raced it made the
    /// flush, and the reads behind it, wait for them.
    public func flush(dirtyBy mark: Int) throws {
        try publishStoredPlan()
        let dirty = blocks.keys.filter { n in blocks.peek(n)?.isOwed(toFlushAt: mark) ?? false }
        try commit(dirty.sorted())
    }

    /// Counts the changes (writes, zeroes, trims) the volume took: a flush's mark.
    public private(set) var changes = 0

    /// Commits the blocks that hold the range (NBD's FUA): once it returns, the range's bytes are
    /// on the device. Other dirty blocks wait: FUA promises that request only, and a flush of
    /// the whole cache there made each FUA write carry every other write's commit.
    public func flush(offset: Int, length: Int) throws {
        try checkRange(offset, length)
        try publishStoredPlan()
        var dirty: [Int] = []
        forEachBlock(offset, length) { n, _, _, _ in
            if blocks.peek(n)?.dirty == true { dirty.append(n) }
        }
        try commit(dirty)
    }

    /// Commits everything and clears DIRTY: the device is clean again. While a background
    /// commit stores its data, its blocks are not published yet, so DIRTY stays (the plugin
    /// closes only between plans).
    public func close() throws {
        try flush()
        if markedDirty && storingPlan == nil {
            try device.setDirty(false, in: &header)
            markedDirty = false
        }
    }

    func checkRange(_ offset: Int, _ length: Int) throws {
        guard offset >= 0, length >= 0, offset <= logicalSize, length <= logicalSize - offset else {
            throw CBDError(
                "\(device.path): range \(offset)+\(length) is outside the logical size \(logicalSize)",
                kind: .outOfRange)
        }
    }

    /// Calls `body(lblk, offset in block, offset in buffer, length)` for each block of a range.
    func forEachBlock(
        _ offset: Int, _ length: Int,
        _ body: (Int, Int, Int, Int) throws -> Void
    ) rethrows {
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
        try requireWritable()
        if header.isDirty {
            try OpenedDevice.requireClean(header, of: device, unless: force)
            entryGeneration += 1
            _ = try journal.replay(header: &header, through: meta)
        }
        try device.setDirty(true, in: &header)
        markedDirty = true
    }

    private func requireWritable() throws {
        guard device.isWritable else { throw CBDError("\(device.path): opened read-only", kind: .readOnly) }
    }

    // MARK: Changes

    /// Writes `length` bytes from `source` at `offset`, or zeros when `source` is nil: the
    /// room the new contents need is reserved first (`reserveRoom`), then the blocks change in
    /// the cache, each holding its share of the reservation.
    private func change(_ offset: Int, _ length: Int, from source: UnsafeRawPointer?) throws {
        try requireWritable()
        if let readOnlyAfter { throw readOnlyAfter }
        try publishStoredPlan()
        try requireSound(offset, length)
        var pending = try reserveRoom(offset, length, source)
        defer { ledger.release(pending.reduce(0, +)) }
        try beginChanges()
        changes += 1
        var i = 0
        try forEachBlock(offset, length) { n, inner, done, len in
            let b: CachedBlock
            if let packed = packedAhead(n) {
                b = try block(n, replacedBy: packed)
            } else {
                b = try block(n, load: len < geometry.lblkSize)
                try b.changePlain(lblkSize: geometry.lblkSize, whole: len == geometry.lblkSize) {
                    put(source.map { $0 + done }, into: $0 + inner, len)
                }
            }
            if !b.dirty {
                dirtyBlocks += 1
                b.dirtiedAt = changes
            }
            b.dirty = true
            // The block's earlier promise is replaced by the one made for this request.
            ledger.release(b.reserved)
            b.reserved = pending[i]
            pending[i] = 0
            if b.reserved > 0 && b.readsAsZeros {
                ledger.release(b.reserved)
                b.reserved = 0
            }
            i += 1
        }
    }

    /// Refuses a change, before anything is written, where the device cannot be trusted: a
    /// block whose entry does not decode (its old pblks could not be freed, nor its contents
    /// read), or a zone whose bitmap does not mark what its entries use (`BitmapTrust`).
    private func requireSound(_ offset: Int, _ length: Int) throws {
        var zones = Set<Int>()
        try forEachBlock(offset, length) { n, _, _, _ in
            if blocks.peek(n) == nil {
                do { _ = try entry(n) } catch let e as CBDError {
                    throw CBDError(e.message + "; nothing was written", hint: .check, kind: .corrupt)
                }
            }
            zones.insert(geometry.zone(ofLblk: n))
        }
        for z in zones.sorted() { try trust.require(zone: z) }
    }

    /// The one change a block's bytes undergo: `len` bytes from `source`, or zeros when nil.
    private func put(_ source: UnsafeRawPointer?, into to: UnsafeMutableRawPointer, _ len: Int) {
        if let source {
            to.copyMemory(from: source, byteCount: len)
        } else {
            to.initializeMemory(as: UInt8.self, repeating: 0, count: len)
        }
    }

    /// Reserves the room the range's new contents need; returns each block's share. First the
    /// worst case (a whole block raw, none for a block made all zeros); when that is short, the
    /// cache is committed (its promises become real, smaller sizes) and the worst case tried
    /// again; then the exact packed size of each new block. Throws `.noSpace`, having
    /// reserved nothing and changed no block, when even that does not fit.
    private func reserveRoom(_ offset: Int, _ length: Int, _ source: UnsafeRawPointer?) throws -> [Int] {
        var worst: [Int] = []
        forEachBlock(offset, length) { n, _, done, len in
            if let packed = packedAhead(n)?.form { return worst.append(packed.pblks(lblkSize: geometry.lblkSize)) }
            let zeros = len == geometry.lblkSize && (source.map { isAllZero($0 + done, len) } ?? true)
            worst.append(zeros ? 0 : geometry.pblkPerLblk)
        }
        if try ledger.reserve(worst.reduce(0, +)) { return worst }
        try flush()
        if try ledger.reserve(worst.reduce(0, +)) { return worst }
        let exact = try exactNeeds(offset, length, source)
        if try ledger.reserve(exact.reduce(0, +)) { return exact }
        throw CBDError(
            "\(device.path): no space left on the device for \(length) bytes at offset \(offset)",
            kind: .noSpace)
    }

    /// The pblks each block of the range would take with its new contents, packed by the rule
    /// commits use (`pack`), a chunk of blocks at a time.
    private func exactNeeds(_ offset: Int, _ length: Int, _ source: UnsafeRawPointer?) throws -> [Int] {
        var pieces: [(n: Int, inner: Int, done: Int, len: Int)] = []
        forEachBlock(offset, length) { pieces.append(($0, $1, $2, $3)) }
        var needs: [Int] = []
        var first = 0
        while first < pieces.count {
            let chunk = try pieces[first..<min(first + packBlocks, pieces.count)].map { p in
                var data =
                    p.len == geometry.lblkSize
                    ? [UInt8](repeating: 0, count: p.len)
                    : try blocks.peek(p.n)?.plainCopy(lblkSize: geometry.lblkSize) ?? loadBlock(p.n)
                data.withUnsafeMutableBytes { put(source.map { $0 + p.done }, into: $0.baseAddress! + p.inner, p.len) }
                return (p.n, CachedBlock(data))
            }
            needs += pack(chunk).map { $0.pblks(lblkSize: geometry.lblkSize) }
            first += chunk.count
        }
        return needs
    }

    // MARK: Block cache

    /// The cached block `n`, loading it from disk when `load` (else with bytes left to a full
    /// overwrite: no zero-fill first).
    private func block(_ n: Int, load: Bool) throws -> CachedBlock {
        if let b = blocks[n] { return b }
        try makeRoom()
        let size = geometry.lblkSize
        let b = CachedBlock(
            load
                ? try takePrefetched(n) ?? loadBlock(n)
                : [UInt8](unsafeUninitializedCapacity: size) { _, count in count = size })
        insert(n, b)
        return b
    }

    /// Block `n` in the cache with the contents of `packed` (a block written whole, packed ahead).
    private func block(_ n: Int, replacedBy packed: CachedBlock) throws -> CachedBlock {
        if let b = blocks[n] {
            b.replace(with: packed)
            return b
        }
        try makeRoom()
        insert(n, packed)
        return packed
    }

    /// Puts block `n` in the cache after `makeRoom`, which chose what leaves (the LRU's own
    /// choice could be a dirty block).
    private func insert(_ n: Int, _ b: CachedBlock) {
        _ = blocks.insert(n, b, keeping: { _ in true })
    }

    /// Frees a slot of the cache when it is full.
    private func makeRoom() throws {
        guard blocks.count >= blocks.capacity else { return }
        // A clean block leaves first: it is on disk as it is. Only when every slot holds a
        // dirty block is the whole dirty set committed, as one batch (a few syncs for the lot,
        // not per block), before a slot is reused: no block is ever read while its write is
        // pending. A dirty block never leaves: when every block is one a background commit is
        // storing (a cache of a block or two), the cache holds one more until it is published.
        if blocks.oldestKey(where: { !$0.dirty }) == nil { try flush() }
        while blocks.count >= blocks.capacity, let clean = blocks.oldestKey(where: { !$0.dirty }) {
            blocks.remove(clean)
        }
    }

    /// The entry of lblk `n`, validated: well formed, slots naming data pblks.
    package func entry(_ n: Int) throws -> AllocationEntry {
        let bytes = try meta.entryBytes(n)
        do { return try codec.decodeChecked(bytes) } catch {
            throw error.readError(path: device.path, lblk: n)
        }
    }

    /// Reads and decompresses lblk `n` from disk.
    func loadBlock(_ n: Int) throws -> [UInt8] {
        try requireNoIntent()
        var out = [UInt8](repeating: 0, count: geometry.lblkSize)
        let e = try entry(n)
        try out.withUnsafeMutableBytes { dst in
            try load(n, e, into: dst.baseAddress!, scratch: scratch.base)
        }
        return out
    }

    /// Reads the block that entry `e` of lblk `n` names into `out` (lblkSize bytes; left as it
    /// is for an unallocated block), through `scratch` (lblkSize bytes) when compressed.
    func load(
        _ n: Int, _ e: AllocationEntry, into out: UnsafeMutableRawPointer,
        scratch: UnsafeMutableRawPointer
    ) throws {
        try device.readBlock(e, lblk: n, lblkSize: geometry.lblkSize, into: out, scratch: scratch)
    }

    func requireNoIntent() throws {
        // After a failed commit the interrupted entries belong to blocks still dirty in the
        // cache, which reads take from there; every other entry on disk is whole.
        if failed == nil { try OpenedDevice.requireWholeEntries(header, of: device) }
    }

    // MARK: Commit (copy on write)

    /// One batch's copy-on-write commit, in format-v1's three steps: write the new data,
    /// publish the entries that name it, release the old pblks. A failure before the entries
    /// are published abandons the batch (its new pblks are free again; its blocks stay dirty,
    /// with their reservations, for a later commit); after, what is on disk is no longer known
    /// here, and every later commit is refused (the device stays DIRTY for fsck.cbd).
    /// Blocks a background commit is storing are left to it (`isBeingStored`): every commit by
    /// a change (a flush, FUA, a full cache, a write short of room) comes here.
    private func commit(_ all: [Int]) throws {
        let lblks = all.filter { !isBeingStored($0) }
        guard !lblks.isEmpty else { return }
        if let failed { throw failed }
        var batch: [Committed] = []
        try readOnlyOnFailure { batch = try writeData { emit in try packAndEmit(lblks, emit) } }
        try publish(batch)
    }

    /// Stores one block of a batch: its lblk, how it is stored, and its bytes (nil for `.zero`),
    /// valid during the call.
    typealias Emit = (Int, PackedBlock, UnsafeRawPointer?) throws -> Void

    /// Steps 2 and 3 of a batch whose data is written (read-only when they fail); its blocks
    /// are then clean.
    func publish(_ batch: [Committed]) throws {
        try readOnlyOnFailure {
            try publishEntries(batch)
            try releaseOld(batch)
        }
        markCommitted(batch.map(\.lblk))
    }

    /// Runs one step of a commit; when it fails, the device failed under acknowledged writes:
    /// no new one is taken (dm-vdo's read-only mode); what is in the cache stays readable, and
    /// a later commit may still store it where nothing was published yet.
    func readOnlyOnFailure(_ step: () throws -> Void) throws {
        do { try step() } catch {
            if readOnlyAfter == nil {
                readOnlyAfter = CBDError(
                    "\(device.path): read-only after a failed write to the device (\(error))",
                    hint: .check)
            }
            throw error
        }
    }

    /// The blocks `lblks` are on the device as they are in the cache: clean, their promises kept.
    private func markCommitted(_ lblks: [Int]) {
        for n in lblks {
            guard let b = blocks.peek(n) else { continue }
            if b.dirty { dirtyBlocks -= 1 }
            b.dirty = false
            ledger.release(b.reserved)
            b.reserved = 0
        }
    }

    /// A block of a batch: its lblk, its new entry and the one it replaces.
    typealias Committed = (lblk: Int, new: AllocationEntry, old: AllocationEntry)

    /// Step 1: the new data in freshly allocated pblks, and their bits (synced): each block
    /// `produce` gives is allocated and written as it comes. (A background commit does these
    /// in parts, some with no lock: `store(_:shared:)`.)
    private func writeData(_ produce: (Emit) throws -> Void) throws -> [Committed] {
        var out: [Committed] = []
        do {
            try produce { n, form, bytes in
                let old = try replacedEntry(n)  // first: a failure leaves no pblk taken
                out.append((n, try store(form, lblk: n, from: bytes), old))
            }
            try meta.writeDirtyBitmaps()
            try device.sync()
        } catch {
            abandon(out)
            throw error
        }
        return out
    }

    /// The blocks `lblks` as a commit under the lock stores them: compressed on all cores a
    /// chunk at a time, emitted in lblk order.
    private func packAndEmit(_ lblks: [Int], _ emit: Emit) throws {
        let batch = lblks.compactMap { n in blocks.peek(n).map { (n, $0) } }
        var first = 0
        while first < batch.count {
            let chunk = Array(batch[first..<min(first + packBlocks, batch.count)])
            let packed = pack(chunk)
            for (j, (n, b)) in chunk.enumerated() {
                let form = b.form ?? packed[j]
                try CachedBlock.withStoredBytes(
                    of: b.snapshot, as: form, packed: packBuffer.base + j * codec.maxCompressedLength
                ) { try emit(n, form, $0) }
            }
            first += chunk.count
        }
    }

    /// Step 2: the entries now name the new data (synced; straddling ones through the journal).
    private func publishEntries(_ batch: [Committed]) throws {
        entryGeneration += 1
        var published = false
        do {
            try journal.write(
                batch.map { ($0.lblk, codec.encode($0.new)) }, meta: meta, header: &header,
                roundPblks: max(1, ledger.keep), published: &published,
                reserve: { try allocator.allocate($0, near: 0) }, release: { try allocator.free($0) })
        } catch {
            if published { fail(error) } else { abandon(batch) }
            throw error
        }
    }

    /// Step 3: only then are the old pblks free (synced). An image file gets back the space of
    /// blocks that became zero (a discard, a trim, zeros written): the old pblks of a block
    /// written again are taken by the next commits (the allocator reuses the lowest freed pblk
    /// first), and a hole there would cost the file system a deallocation and a fresh
    /// allocation per block (4K random writes on tmpfs took 13 % less time without).
    private func releaseOld(_ batch: [Committed]) throws {
        do {
            for c in batch { try allocator.free(c.old.pblks) }
            try meta.writeDirtyBitmaps()
            try device.sync()
        } catch {
            fail(error)
            throw error
        }
        device.release(pblks: batch.filter { $0.new == .unallocated }.flatMap { $0.old.pblks })
    }

    /// The entry a commit of lblk `n` replaces, read under `sharedLock`, as readers read it.
    /// Checked when the block was first changed (`requireSound`): a failure here is damage
    /// since, and the commit stops rather than guess what the block held.
    func replacedEntry(_ n: Int) throws -> AllocationEntry {
        try sharedLock.withLock { try entry(n) }
    }

    /// Nothing names a batch's new pblks: they are free again.
    func abandon(_ batch: [Committed]) {
        freeUnnamed(batch.flatMap { $0.new.pblks })
    }

    /// Pblks that were taken and that no entry names are free again.
    func freeUnnamed(_ pblks: [Pblk]) {
        try? allocator.free(pblks)
    }

    private func fail(_ error: Error) {
        failed = CBDError("\(device.path): a commit failed (\(error)); the device needs a check", hint: .check)
    }

    /// Set when a commit failed after its data was written: every later commit is refused.
    private(set) var failed: CBDError?

    /// Set by the first failed commit: every later write, discard and trim is refused with it
    /// at once (EIO), before the cache takes it, so that nothing is acknowledged that the
    /// device may not store. Reads go on.
    public private(set) var readOnlyAfter: CBDError?

    /// Acknowledged blocks that are not on the device yet (dirty in the cache): after a failed
    /// commit, what a stop would lose.
    public var unstoredBlocks: Int { dirtyBlocks }
    /// How many cached blocks are dirty.
    var dirtyBlocks = 0

    /// Blocks compressed at once: about 4 MiB of input per core (a few ms of work each; its
    /// buffer counts in the server's peak memory), at most a cache's worth.
    private var packBlocks: Int { max(1, min(blocks.capacity, (4 << 20) * Parallel.workers / geometry.lblkSize)) }
    /// The background commit's plan in flight (`CommitPlan`), and its buffer: `planBlocks`
    /// packed blocks, made at the first plan.
    var planInFlight = false
    /// A background commit whose data is written and synced and whose entries are not yet
    /// published (`store(_:)`): the next change publishes it first (`publishStoredPlan`).
    var storedPlan: CommitPlan?
    /// The plan whose data is being written with no lock (`store(_:shared:)`), from the moment
    /// it takes its pblks to its outcome: commits by changes leave its blocks to it.
    var storingPlan: CommitPlan?
    /// Whether a background commit is writing its data: a write refused for want of room now
    /// may fit once it is published (the plugin waits for it and tries again).
    public var isStoringPlan: Bool { storingPlan != nil }
    lazy var planBuffer = ByteBuffer(count: planBlocks * max(1, codec.maxCompressedLength))
    /// Where `pack` puts each block's compressed bytes (maxCompressedLength apart).
    private lazy var packBuffer = ByteBuffer(count: packBlocks * max(1, codec.maxCompressedLength))

    /// Packs the blocks of `chunk` on all cores (`PackedBlock.pack`: block i's compressed bytes
    /// at `packBuffer` + i * maxCompressedLength), but for blocks packed ahead (left `.raw` here).
    private func pack(_ chunk: [(Int, CachedBlock)]) -> [PackedBlock] {
        var packed = [PackedBlock](repeating: .raw, count: chunk.count)
        let size = geometry.lblkSize, stride = codec.maxCompressedLength, out = packBuffer, level = level
        packed.withUnsafeMutableBufferPointer { l in
            let result = UncheckedBox(l)
            try? Parallel.forEachSlice(count: chunk.count, parts: Parallel.workers) { _, slice in
                for i in slice where chunk[i].1.form == nil {
                    chunk[i].1.data.withUnsafeBytes { src in
                        guard let base = src.baseAddress else { return }
                        result.value[i] = PackedBlock.pack(
                            base, lblkSize: size, into: out.base + i * stride, level: level)
                    }
                }
            }
        }
        return packed
    }

    /// Writes a packed block to fresh pblks (contiguous ones in one write) from `bytes` (the
    /// compressed bytes, padded, or the raw block); returns its entry.
    private func store(_ block: PackedBlock, lblk n: Int, from bytes: UnsafeRawPointer?) throws -> AllocationEntry {
        let pblks = try allocate(for: block, lblk: n)
        do {
            return try write(block, lblk: n, from: bytes, to: pblks)
        } catch {
            freeUnnamed(pblks)  // named by no entry, not even the batch's list yet
            throw error
        }
    }

    /// Fresh pblks for a packed block (none for `.zero`), their bits set in the cache. Its
    /// reservation guarantees them: running out here is a bug in the accounting.
    func allocate(for block: PackedBlock, lblk n: Int) throws -> [Pblk] {
        if block == .zero { return [] }
        let count = block.pblks(lblkSize: geometry.lblkSize)
        guard let pblks = try allocator.allocate(count, near: geometry.zone(ofLblk: n)) else {
            throw CBDError("\(device.path): no space left on the device for a reserved block", kind: .noSpace)
        }
        return pblks
    }

    /// Writes a packed block from `bytes` to `pblks` (from `allocate(for:lblk:)`); returns its
    /// entry. It touches those pblks and nothing else of the volume, so a background commit
    /// runs it with no lock, beside requests (`store(_:shared:)`).
    func write(
        _ block: PackedBlock, lblk n: Int, from bytes: UnsafeRawPointer?, to pblks: [Pblk]
    ) throws -> AllocationEntry {
        if block == .zero { return .unallocated }
        guard let bytes else { throw CBDError("\(device.path): no bytes for logical block \(n)", kind: .corrupt) }
        try writeRuns(bytes, pblks)  // compressed bytes are padded with zeros by pack
        if case .compressed(let length) = block { return .compressed(length: length, pblks: pblks) }
        return .raw(pblks: pblks)
    }

    /// Writes consecutive pblk-sized pieces of `src` to `pblks`, one write per contiguous run.
    private func writeRuns(_ src: UnsafeRawPointer, _ pblks: [Pblk]) throws {
        for run in PblkRuns(pblks) {
            try device.write(
                UnsafeRawBufferPointer(
                    start: src + run.slots.lowerBound * Units.pblkSize,
                    count: run.slots.count * Units.pblkSize),
                at: run.first * Units.pblkSize)
        }
    }
}
