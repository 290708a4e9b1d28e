// SPDX-License-Identifier: Apache-2.0
import CBDFormat

/// A logical block in the volume's cache: its bytes as they are (`lblkSize` of them, ready to
/// change in part), or packed as a commit stores it.
///
/// A block that a request wrote whole was packed by the request's own thread before it took
/// the writer's lock (`WriteAhead`); it stays packed until a change in part needs its bytes.
/// A commit then stores it as it is, with no compression under the lock, and the cache holds
/// its compressed bytes, not a whole block.
final class CachedBlock {
    /// `form == nil` or `.raw`: the block's `lblkSize` bytes. `.compressed`: the packed bytes
    /// (whole pblks, zero-padded), `.zero`: nothing.
    package private(set) var data: [UInt8]
    /// How a commit stores the block, when known: nil for bytes changed since they were packed.
    private(set) var form: PackedBlock?
    var dirty = false
    /// Moves at every change of the block's bytes: a commit planned with an older snapshot
    /// (`CommitPlan`) leaves the block dirty.
    private(set) var version = 0
    /// `Volume.changes` when the block last became dirty: a flush leaves the blocks that
    /// became dirty after it came (`Volume.flush(dirtyBy:)`).
    var dirtiedAt = 0

    /// Whether a flush that came when `Volume.changes` was `mark` must commit this block.
    func isOwed(toFlushAt mark: Int) -> Bool { dirty && dirtiedAt <= mark }
    /// Pblks promised to this block's next commit (`SpaceLedger`).
    var reserved = 0

    /// A block of plain bytes (`lblkSize` of them).
    init(_ data: [UInt8]) { self.data = data }

    /// A block written whole and packed ahead: `bytes` as `form` says (see `data`).
    init(packed form: PackedBlock, bytes: [UInt8]) {
        self.form = form
        data = bytes
    }

    /// Whether `data` is the block's bytes as they are.
    var isPlain: Bool { form == nil || form == .raw }

    /// The whole block packed ahead replaces what the block held.
    func replace(with other: CachedBlock) {
        (form, data) = (other.form, other.data)
        version &+= 1
    }

    /// Changes the block's bytes in place (`body` gets them), which forgets its packed form. A
    /// packed block is decompressed first, unless the change is `whole` (it writes every byte);
    /// its bytes were made here, so they decompress (a failure is a bug: thrown).
    func changePlain(lblkSize: Int, whole: Bool, _ body: (UnsafeMutableRawPointer) -> Void) throws {
        if !isPlain {
            data =
                whole
                ? [UInt8](unsafeUninitializedCapacity: lblkSize) { _, n in n = lblkSize }
                : try plainCopy(lblkSize: lblkSize)
        }
        form = nil
        version &+= 1
        data.withUnsafeMutableBytes { body($0.baseAddress!) }
    }

    /// Whether every byte of the block is zero.
    var readsAsZeros: Bool {
        form == .zero || (isPlain && data.withUnsafeBytes { isAllZero($0.baseAddress!, $0.count) })
    }

    /// Copies bytes `part` of the block to `dst`, decoding a packed block only as far as the
    /// part's end.
    func copy(_ part: Range<Int>, to dst: UnsafeMutableRawPointer, lblkSize: Int) throws {
        try Self.copy(snapshot, part, to: dst, lblkSize: lblkSize)
    }

    /// What a reader needs to copy bytes out after it let go of the cache's lock: arrays are
    /// values, so a later change to the block does not reach them.
    var snapshot: Snapshot { Snapshot(form: form, data: data) }

    struct Snapshot {
        let form: PackedBlock?
        let data: [UInt8]
    }

    /// Calls `body` with the bytes a commit stores for block `s` as `form`: its own bytes when it
    /// was packed ahead or is stored raw (nil for `.zero`), else those `pack` made at `packed`.
    /// The one home of that rule for commits under the lock and background ones.
    static func withStoredBytes(
        of s: Snapshot, as form: PackedBlock, packed: UnsafeRawPointer,
        _ body: (UnsafeRawPointer?) throws -> Void
    ) rethrows {
        let packedHere = s.form == nil && form != .raw
        try s.data.withUnsafeBytes { try body(packedHere ? packed : $0.baseAddress) }
    }

    /// Copies bytes `part` of the block `s` to `dst`.
    static func copy(_ s: Snapshot, _ part: Range<Int>, to dst: UnsafeMutableRawPointer, lblkSize: Int) throws {
        switch s.form {
        case nil, .raw?:
            s.data.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress! + part.lowerBound, byteCount: part.count) }
        case .zero?:
            dst.initializeMemory(as: UInt8.self, repeating: 0, count: part.count)
        case .compressed(let length)?:
            let ok = s.data.withUnsafeBytes {
                LZ4Codec.decompress($0.baseAddress!, count: length, part: part, ofBlock: lblkSize, into: dst)
            }
            // Its bytes were packed here: a failure is a bug, reported as such.
            guard ok else { throw CBDError("a block packed in the cache does not decompress", kind: .corrupt) }
        }
    }

    /// The block's bytes, as a new array.
    func plainCopy(lblkSize: Int) throws -> [UInt8] {
        if isPlain { return data }
        var out = [UInt8](unsafeUninitializedCapacity: lblkSize) { _, n in n = lblkSize }
        try out.withUnsafeMutableBytes { try copy(0..<lblkSize, to: $0.baseAddress!, lblkSize: lblkSize) }
        return out
    }
}
