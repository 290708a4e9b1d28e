// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// The work a write needs that can be done by the calling thread before it takes the writer's
/// lock, while other requests go on, so that the exclusive section only puts blocks in the
/// cache. The nbdkit plugin does it in two steps:
///
/// - `packAhead`, holding no lock: each block the write covers whole is packed (compressed) as
///   a commit will store it. It depends on the request's bytes only, so it is always valid.
///   A sequential writer's compression so runs on every nbdkit thread at once, and a commit
///   stores those blocks as they are.
/// - `prefetch`, under the shared lock as reads: each block the write changes only in part is
///   read and decompressed. Such a block is used only when nothing published an entry since
///   (the volume's `entryGeneration`) and the block is still not in the cache: it is then
///   exactly what `loadBlock` would read. Otherwise it is dropped and the write loads it.
public final class WriteAhead {
    /// Blocks written whole, packed.
    var packed: [Int: CachedBlock] = [:]
    /// Blocks changed in part, as read ahead, and the `entryGeneration` they were read at.
    var loaded: [Int: [UInt8]] = [:]
    var generation = 0

    init() {}
}

extension Volume {
    /// Packs the blocks that `buffer`, written at `offset`, covers whole; nil when there are
    /// none (or the range is wrong: the write reports it). Needs no lock: it reads only the
    /// request and the volume's fixed geometry and level.
    public func packAhead(_ buffer: UnsafeRawBufferPointer, at offset: Int) -> WriteAhead? {
        guard (try? checkRange(offset, buffer.count)) != nil, let base = buffer.baseAddress else { return nil }
        let size = geometry.lblkSize
        guard size <= 1 << 20 else { return nil }  // huge blocks: one copy in memory is enough
        let capacity = PackedBlock.maxCompressedLength(lblkSize: size)
        let ahead = WriteAhead()
        var scratch: ByteBuffer?
        forEachBlock(offset, buffer.count) { n, _, done, len in
            guard len == size else { return }
            let out = scratch ?? ByteBuffer(uninitializedCount: capacity)  // pack writes and pads what is used
            scratch = out
            let form = PackedBlock.pack(base + done, lblkSize: size, into: out.base, level: level)
            let bytes: [UInt8]
            switch form {
            case .zero: bytes = []
            case .raw: bytes = [UInt8](UnsafeRawBufferPointer(start: base + done, count: size))
            case .compressed:
                bytes = [UInt8](UnsafeRawBufferPointer(start: out.base, count: form.bytes(lblkSize: size)))
            }
            ahead.packed[n] = CachedBlock(packed: form, bytes: bytes)
        }
        return ahead.packed.isEmpty ? nil : ahead
    }

    /// Reads ahead the blocks of the range that a write would load (changed in part, not in the
    /// cache), into `ahead` (or a new one); nil when there is nothing ahead, or when anything
    /// goes wrong (the write then reports it). Many threads may call this at once, under the
    /// same rule as `readShared`.
    public func prefetch(offset: Int, length: Int, adding ahead: WriteAhead? = nil) -> WriteAhead? {
        guard (try? checkRange(offset, length)) != nil, (try? requireNoIntent()) != nil else { return ahead }
        let size = geometry.lblkSize
        let generation = sharedLock.withLock { entryGeneration }
        var out: [Int: [UInt8]] = [:]
        var scratch: [UInt8]?
        forEachBlock(offset, length) { n, _, _, len in
            guard len < size else { return }
            let e: AllocationEntry? = sharedLock.withLock { blocks.peek(n) == nil ? try? entry(n) : nil }
            guard let e else { return }
            guard e != .unallocated else { out[n] = [UInt8](repeating: 0, count: size); return }
            // Every byte is written by the read (a compressed block decompresses to exactly one
            // block, a raw one is read whole): no zero-fill first.
            var data = [UInt8](unsafeUninitializedCapacity: size) { _, count in count = size }
            var s = scratch ?? [UInt8](unsafeUninitializedCapacity: size) { _, count in count = size }
            let ok = data.withUnsafeMutableBytes { dst in
                s.withUnsafeMutableBytes { (try? load(n, e, into: dst.baseAddress!, scratch: $0.baseAddress!)) != nil }
            }
            scratch = s
            guard ok else { return }
            out[n] = data
        }
        guard !out.isEmpty else { return ahead }
        let result = ahead ?? WriteAhead()
        (result.loaded, result.generation) = (out, generation)
        return result
    }

    /// Writes a byte range as `write` does, taking from `ahead` the blocks packed and the
    /// blocks read ahead that are still what the device holds.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int, ahead: WriteAhead?) throws {
        ready = ahead
        defer { ready = nil }
        try write(buffer, at: offset)
    }

    /// The prefetched contents of lblk `n`, taken once, if still valid (see `WriteAhead`).
    func takePrefetched(_ n: Int) -> [UInt8]? {
        guard let p = ready, p.generation == entryGeneration else { return nil }
        return p.loaded.removeValue(forKey: n)
    }

    /// Lblk `n` packed ahead, if it was.
    func packedAhead(_ n: Int) -> CachedBlock? { ready?.packed[n] }
}
