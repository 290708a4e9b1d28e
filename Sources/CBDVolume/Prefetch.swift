// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// The blocks a write changes only in part, read and decompressed ahead of it by the calling
/// thread while other requests go on (the nbdkit plugin takes them under its shared lock, as
/// reads): a small random write then holds the exclusive lock only to copy its bytes into the
/// cache, and the decompression of the blocks it lands in runs on every core.
///
/// A prefetched block is used only when nothing published an entry since it was read (the
/// volume's `entryGeneration`) and the block is still not in the cache: it is then exactly
/// what `loadBlock` would read. Otherwise it is dropped and the write loads the block itself.
public final class Prefetch {
    let generation: Int
    var blocks: [Int: [UInt8]]

    init(generation: Int, blocks: [Int: [UInt8]]) {
        self.generation = generation
        self.blocks = blocks
    }
}

extension Volume {
    /// Reads ahead the blocks of the range that a write would load (changed in part, not in the
    /// cache); nil when there are none, or when anything goes wrong (the write then reports
    /// it). Many threads may call this at once, under the same rule as `readShared`.
    public func prefetch(offset: Int, length: Int) -> Prefetch? {
        guard (try? checkRange(offset, length)) != nil, (try? requireNoIntent()) != nil else { return nil }
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
        return out.isEmpty ? nil : Prefetch(generation: generation, blocks: out)
    }

    /// Writes a byte range as `write` does, taking the blocks `prefetched` holds where they are
    /// still what the device holds.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int, prefetched: Prefetch?) throws {
        guard let p = prefetched, p.generation == entryGeneration else { return try write(buffer, at: offset) }
        ready = p
        defer { ready = nil }
        try write(buffer, at: offset)
    }

    /// The prefetched contents of lblk `n`, taken once, if still valid (see `Prefetch`).
    func takePrefetched(_ n: Int) -> [UInt8]? {
        guard let p = ready, p.generation == entryGeneration else { return nil }
        return p.blocks.removeValue(forKey: n)
    }
}
