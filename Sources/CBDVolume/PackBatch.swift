// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// Dirty blocks packed outside the writer's lock, before a commit needs them, as the kernel's
/// writeback starts at its background ratio: once more than a quarter of the cache holds dirty
/// blocks that are not packed, a write takes the oldest few (`takePackBatch`, under the lock),
/// compresses them after it let go of the lock (`pack`, beside other requests, on whichever
/// core is free), and gives them back (`install`, under the lock). A commit then stores them as
/// they are: its time under the lock is I/O, not compression, and a client write that finds the
/// cache full carries much less.
///
/// Nothing here reaches the device: a block takes its packed form only when its bytes did not
/// change since they were taken (`CachedBlock.version`), so the form is always that of its
/// bytes, and any order of commits, evictions and writes meanwhile stays as it was.
public final class PackBatch {
    struct Item {
        let block: CachedBlock
        let version: Int
        let data: [UInt8]
    }
    let items: [Item]
    var results: [(form: PackedBlock, bytes: [UInt8])] = []

    init(_ items: [Item]) { self.items = items }
}

extension Volume {
    /// Blocks a batch takes at most.
    static let packBatchBlocks = 8

    /// The oldest dirty blocks held plain (up to `packBatchBlocks`), when they are more than a
    /// quarter of the cache; nil otherwise. Call holding the writer's lock.
    public func takePackBatch() -> PackBatch? {
        // The cache is counted once in a batch's worth of calls.
        packCalls &+= 1
        guard readOnlyAfter == nil, packsAhead, packCalls % Self.packBatchBlocks == 0 else { return nil }
        let waiting = blocks.keys.reduce(0) { n, k in
            guard let b = blocks.peek(k), b.dirty, b.form == nil, !b.packing else { return n }
            return n + 1
        }
        guard waiting > blocks.capacity / 4 else { return nil }
        let keys = blocks.oldestKeys(Self.packBatchBlocks) { $0.dirty && $0.form == nil && !$0.packing }
        let items = keys.compactMap { k -> PackBatch.Item? in
            guard let b = blocks.peek(k) else { return nil }
            b.packing = true
            return PackBatch.Item(block: b, version: b.version, data: b.data)
        }
        return items.isEmpty ? nil : PackBatch(items)
    }

    /// Packs the batch's blocks. Needs no lock: it reads only the batch (its arrays are values)
    /// and the volume's fixed geometry and level.
    public func pack(_ batch: PackBatch) {
        let size = geometry.lblkSize, level = level
        let out = ByteBuffer(count: max(1, PackedBlock.maxCompressedLength(lblkSize: size)))
        batch.results = batch.items.map { item in
            item.data.withUnsafeBytes { src in
                let form = PackedBlock.pack(src.baseAddress!, lblkSize: size, into: out.base, level: level)
                guard case .compressed = form else { return (form, []) }
                return (form, [UInt8](UnsafeRawBufferPointer(start: out.base, count: form.bytes(lblkSize: size))))
            }
        }
    }

    /// Gives each block of the batch its packed form, if its bytes did not change since the
    /// batch took them. Call holding the writer's lock.
    public func install(_ batch: PackBatch) {
        for (i, item) in batch.items.enumerated() {
            item.block.packing = false
            guard i < batch.results.count else { continue }
            let r = batch.results[i]
            _ = item.block.adopt(r.form, bytes: r.bytes, packedAt: item.version)
        }
    }
}
